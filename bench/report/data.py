"""Reading finished run folders for the reports: the results table, the manifest and the decoded-audio cache.

A report reads nothing else (architecture.md). Rows whose ``status`` is ``failed`` (or ``unreliable``: a FAD-inf fit that fails its checks) are set aside and counted;
every number in a report is computed from the ``ok`` rows only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from codecbench.bench.core.errors import CodecbenchError

REQUIRED_COLUMNS: tuple[str, ...] = (
    "run",
    "codec",
    "codec_kind",
    "is_anchor",
    "weights",
    "point",
    "bitrate_kbps",
    "frame_rate_hz",
    "compression_ratio",
    "item_id",
    "level",
    "metric",
    "unit",
    "higher_is_better",
    "value",
    "status",
)
"""Columns of the results table (architecture.md) a report cannot do without."""


class ReportInputError(CodecbenchError):
    """A run folder cannot be reported: the message names the folder or file, the problem and what is expected."""


@dataclass(frozen=True)
class RunData:
    """One run folder as the reports see it.

    Args:
        run_dir: the folder.
        name: the run name (the table's ``run`` column).
        ok: the ``ok`` rows of the results table.
        failed: the ``failed`` rows (load, codec or metric failures), kept to be counted in notes.
        manifest: ``manifest.json`` as a dict ({} when the file is absent).
        cache_dir: the decoded-audio cache folder, or None when it cannot be found.
    """

    run_dir: Path
    name: str
    ok: pd.DataFrame
    failed: pd.DataFrame
    manifest: dict = field(default_factory=dict)
    cache_dir: Path | None = None


def _read_table(run_dir: Path) -> pd.DataFrame:
    parquet, csv = run_dir / "results.parquet", run_dir / "results.csv"
    from codecbench.bench.validate import read_table

    if parquet.is_file():
        return read_table(parquet)
    if csv.is_file():
        return read_table(csv)
    raise ReportInputError(f"{run_dir}: no results table (expected results.parquet or results.csv in the run folder)")


def _normalise(table: pd.DataFrame, source: Path) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ReportInputError(
            f"{source}: the results table lacks the column(s) {', '.join(missing)}; "
            f"expected the columns of docs/architecture.md ({', '.join(REQUIRED_COLUMNS)})"
        )
    table = table.copy()
    for col in ("run", "codec", "codec_kind", "weights", "point", "item_id", "level", "metric", "unit", "status"):
        table[col] = table[col].fillna("").astype(str)
    for col in ("bitrate_kbps", "frame_rate_hz", "compression_ratio", "value"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    for col in ("is_anchor", "higher_is_better"):
        table[col] = table[col].map(_as_bool)
    for col in ("clip_hash", "decoded_key", "stage", "error"):  # optional text columns: absent or NaN -> ""
        table[col] = table[col].fillna("").astype(str) if col in table.columns else ""
    if "point_params" not in table.columns:
        table["point_params"] = "{}"
    table["point_params"] = table["point_params"].fillna("{}").astype(str)
    ok_values = table.loc[table["status"] == "ok", "value"]
    if not np.isfinite(ok_values.to_numpy(dtype=float)).all():
        raise ReportInputError(f"{source}: {int((~np.isfinite(ok_values.to_numpy(dtype=float))).sum())} row(s) with "
                               "status 'ok' have a NaN or infinite value (a damaged or hand-edited table; rerun the run)")
    bad_status = sorted(set(table["status"]) - {"ok", "failed", "unreliable"})
    if bad_status:
        raise ReportInputError(f"{source}: unknown status value(s) {bad_status}; valid: 'ok', 'failed', 'unreliable'")
    bad_level = sorted(set(table.loc[table["status"] == "ok", "level"]) - {"item", "set"})
    if bad_level:
        raise ReportInputError(f"{source}: unknown level value(s) {bad_level}; valid: 'item', 'set'")
    return table


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if value is not None and value == value else False


def _find_cache_dir(run_dir: Path, manifest: dict) -> Path | None:
    raw = manifest.get("cache_dir")
    candidates = []
    if raw:
        raw_path = Path(os.path.expanduser(str(raw)))
        if raw_path.is_absolute():
            candidates.append(raw_path)
        else:  # relative paths are written relative to where the run was started: try the usual places
            candidates += [run_dir / raw_path, run_dir.parent.parent / raw_path, Path.cwd() / raw_path]
    candidates.append(run_dir.parent / ".cache")  # the default: results/.cache
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return None


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read one run folder; :class:`ReportInputError` names the folder and the problem when it cannot be used."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportInputError(f"{run_dir}: not a folder (expected a run folder such as results/<run-name>)")
    table = _normalise(_read_table(run_dir), run_dir)
    manifest_path = run_dir / "manifest.json"
    manifest: dict = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ReportInputError(f"{manifest_path}: not valid JSON ({error})") from None
        if not isinstance(manifest, dict):
            raise ReportInputError(f"{manifest_path}: expected a JSON object (a run manifest), got a {type(manifest).__name__}")
    names = sorted(set(table["run"]) - {""})
    name = names[0] if len(names) == 1 else str(manifest.get("run", run_dir.name))
    if len(names) > 1:  # a table holding several runs keeps them apart through the run column
        name = run_dir.name
    table.loc[table["run"] == "", "run"] = name
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    failed = table[table["status"] != "ok"].reset_index(drop=True)  # failed, or unreliable (FAD-inf): set aside
    if ok.empty:
        raise ReportInputError(f"{run_dir}: the results table has no 'ok' rows ({len(failed)} failed rows)")
    return RunData(run_dir, name, ok, failed, manifest, _find_cache_dir(run_dir, manifest))


def combine(runs: list[RunData]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``ok`` and ``failed`` rows of several runs in one table each; run names must differ."""
    names = [r.name for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ReportInputError(
            f"several run folders carry the same run name {dupes}: "
            f"{', '.join(str(r.run_dir) for r in runs)}; give each run its own name"
        )
    ok = pd.concat([r.ok for r in runs], ignore_index=True)
    failed = pd.concat([r.failed for r in runs], ignore_index=True)
    return ok, failed


def dataset_mismatch(runs: list[RunData]) -> str | None:
    """A warning when several runs did not score the same items (item ids and content hashes, else the
    manifests' dataset paths): their numbers are then not comparable item for item."""
    if len(runs) < 2:
        return None
    def items(run: RunData) -> frozenset:
        part = run.ok[run.ok["level"] == "item"] if "level" in run.ok else run.ok
        if "clip_hash" in part and part["clip_hash"].astype(str).ne("").any():
            return frozenset(zip(part["item_id"].astype(str), part["clip_hash"].astype(str)))
        return frozenset([str(run.manifest.get("config", {}).get("dataset", {}).get("path", ""))])
    sets = {run.name: items(run) for run in runs}
    if len(set(sets.values())) == 1:
        return None
    paths = {run.name: run.manifest.get("config", {}).get("dataset", {}).get("path", "?") for run in runs}
    listed = "; ".join(f"{name}: {len(found)} items from {paths[name]}" for name, found in sets.items())
    return f"The runs used different datasets (items or their content differ), so they are not compared item for item: {listed}."
