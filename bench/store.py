"""The run store: one JSON record per finished unit under ``<run>/units/``, written atomically.

Many writers (local workers, Slurm jobs on a shared filesystem) each write only their own units' records; the
driver merges by reading the store. A unit whose record exists is done and is never recomputed; a unit killed
mid-way has no record and is simply run again (its finished decodes come from the content-addressed cache).

Records are verified on read: a record names its unit (``unit_id``, compared with the file name) and carries the
digest of its content (``digest``); a record that fails either check (truncated, edited, swapped in from another
unit, older format) is not done, so its unit is computed again, and the first such record is reported on stderr.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codecbench.bench.core.cache import atomic_write_json, digest_of, mismatch

STORE_FORMAT = 2


class RunStore:
    def __init__(self, run_dir: str | Path):
        self.folder = Path(run_dir) / "units"

    def path(self, unit_id: str) -> Path:
        return self.folder / f"{unit_id}.json"

    def write(self, unit_id: str, record: dict[str, Any]) -> None:
        body = json.loads(json.dumps({**record, "format": STORE_FORMAT, "unit_id": unit_id}, default=str))
        body.pop("digest", None)
        atomic_write_json(self.path(unit_id), {**body, "digest": digest_of(body)})

    def read(self, unit_id: str) -> dict[str, Any] | None:
        """The unit's record, or None when absent or when it fails verification (then the unit runs again)."""
        path = self.path(unit_id)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            mismatch(path, "unit record unreadable or not JSON")
            return None
        if not isinstance(record, dict) or record.get("format") != STORE_FORMAT:
            mismatch(path, "unit record of another format")
            return None
        if record.get("unit_id") != unit_id:
            mismatch(path, f"unit record names unit {str(record.get('unit_id'))[:80]!r}, not {unit_id!r}")
            return None
        body = {k: v for k, v in record.items() if k != "digest"}
        if record.get("digest") != digest_of(body):
            mismatch(path, "unit record does not match its digest")
            return None
        rows = record.get("rows", [])
        if not isinstance(rows, list) or any(not isinstance(r, dict) for r in rows):
            mismatch(path, "unit record rows are not a list of rows")
            return None
        return record

    def done(self, unit_id: str) -> bool:
        record = self.read(unit_id)
        return record is not None and record.get("status") == "done"

    def records(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.folder.glob("*.json")):
            record = self.read(path.stem)
            if record is not None:
                yield record
