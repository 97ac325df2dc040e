"""The run store: one JSON record per finished unit under ``<run>/units/``, written atomically.

Many writers (local workers, Slurm jobs on a shared filesystem) each write only their own units' records; the
driver merges by reading the store. A unit whose record exists is done and is never recomputed; a unit killed
mid-way has no record and is simply run again (its finished decodes come from the content-addressed cache).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codecbench.bench.core.cache import atomic_write_json

STORE_FORMAT = 1


class RunStore:
    def __init__(self, run_dir: str | Path):
        self.folder = Path(run_dir) / "units"

    def path(self, unit_id: str) -> Path:
        return self.folder / f"{unit_id}.json"

    def write(self, unit_id: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.path(unit_id), {"format": STORE_FORMAT, "unit_id": unit_id, **record})

    def read(self, unit_id: str) -> dict[str, Any] | None:
        path = self.path(unit_id)
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return record if record.get("format") == STORE_FORMAT else None

    def done(self, unit_id: str) -> bool:
        record = self.read(unit_id)
        return record is not None and record.get("status") == "done"

    def records(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.folder.glob("*.json")):
            record = self.read(path.stem)
            if record is not None:
                yield record
