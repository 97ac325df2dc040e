"""Faults named and recoverable: writes that skip when nothing changed (a finished run in a read-only folder),
reports built aside and moved into place file by file, and OS errors turned into one-line messages.

- :func:`write_if_changed`: a file whose content is already there is not rewritten (no write, no error in a
  read-only folder).
- :func:`table_unchanged`: the run's tables already hold this table (byte-identical parquet, CSVs present).
- :func:`build_report_atomic`: the report is built in a private staging folder (unique name per process, so two
  writers never share a temporary file), each file is moved into place with an atomic rename, then the stamp
  ``report/.built-from`` (table digest + report code digest + the list of files) is written. The report is rebuilt
  when the stamp is absent or differs, or when any file it lists is missing or empty.
- :func:`describe_os_error`: ``ENOSPC`` -> "disk full writing X", ``EACCES``/``EROFS`` -> "not writable", ...
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codecbench.bench.core.cache import atomic_write_bytes, atomic_write_json

STAMP = ".built-from"
READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def describe_os_error(error: OSError) -> str:
    """One line saying what went wrong and where (the CLI prints it; exit code 3)."""
    where = error.filename or "(unknown path)"
    if error.filename2:
        where = f"{where} -> {error.filename2}"
    if error.errno == errno.ENOSPC:
        return f"disk full (no space left on the device) while writing {where}; free space and rerun to resume"
    if error.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing {where}; free space and rerun to resume"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {where}"
    if error.errno == errno.EROFS:
        return f"read-only file system: {where}"
    if error.errno == errno.ENOENT:
        return f"no such file or folder: {where}"
    if error.errno == errno.EIO:
        return f"input/output error (failing disk or network filesystem): {where}"
    return f"{error.strerror or type(error).__name__}: {where}"


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless the file already holds exactly it; returns whether it wrote."""
    try:
        if path.is_file() and path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write_bytes(path, data)
    return True


def _parquet_bytes(table: Any) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def table_unchanged(table: Any, run_dir: Path) -> bool:
    """Whether results.parquet already holds ``table`` (byte-identical) and both CSVs are present and non-empty."""
    parquet = run_dir / "results.parquet"
    try:
        same = parquet.is_file() and parquet.read_bytes() == _parquet_bytes(table)
        csvs = all((run_dir / name).is_file() and (run_dir / name).stat().st_size > 0
                   for name in ("results.csv", "failures.csv"))
    except OSError:
        return False
    return same and csvs


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest; in a read-only run folder whose run computed nothing, keep the existing one (note)."""
    counts = manifest.get("counts", {})
    computed = counts.get("codec_calls", 0) or counts.get("metric_computations", 0)
    try:
        atomic_write_json(path, manifest)
    except OSError as error:
        if error.errno in READ_ONLY and not computed and path.is_file():
            print(f"codecbench: {path.parent} is read-only; nothing was recomputed, its manifest is kept as it was",
                  file=sys.stderr)
            return
        raise


def report_digest(run_dir: Path) -> str:
    from importlib import metadata

    digest = hashlib.sha256((run_dir / "results.parquet").read_bytes())
    digest.update(metadata.version("codecbench").encode())
    for module in sorted((Path(__file__).parent / "report").glob("*.py")):  # the report code itself
        digest.update(module.read_bytes())
    return digest.hexdigest()


def report_is_current(out: Path, digest: str) -> bool:
    """The stamp matches and every file it lists is present and non-empty."""
    try:
        stamp = json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(stamp, dict) or stamp.get("digest") != digest or not isinstance(stamp.get("files"), list):
        return False
    try:
        return all(isinstance(f, str) and (out / f).is_file() and (out / f).stat().st_size > 0
                   for f in stamp["files"]) and bool(stamp["files"])
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _staging(out: Path) -> Path:
    """A private staging folder next to ``out``; stale ones of dead processes are removed."""
    for old in out.parent.glob(f".{out.name}.*.building"):
        parts = old.name.split(".")
        if len(parts) >= 4 and parts[-3].isdigit() and not _alive(int(parts[-3])):
            shutil.rmtree(old, ignore_errors=True)
    return out.parent / f".{out.name}.{os.getpid()}.{os.urandom(4).hex()}.building"


def build_atomic(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *args: Any,
                 digest: str | None = None, **kwargs: Any):
    """:func:`~codecbench.bench.report.build_report` into a staging folder, then each file moved into ``out``
    by an atomic rename, then the stamp (with ``digest``, when given). Returns the build's result (paths in
    ``out``)."""
    from codecbench.bench.report import build_report

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging(out)
    try:
        result = build_report(list(run_dirs), staging, *args, **kwargs)
        (out / STAMP).unlink(missing_ok=True)  # a kill while moving leaves no stamp: the next run rebuilds
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        for rel in files:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, target)
        if digest is not None:
            atomic_write_json(out / STAMP, {"digest": digest, "files": [f for f in files if f != STAMP]})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _relocate(result, staging, out)


def _relocate(result: Any, staging: Path, out: Path) -> Any:
    """The build result with its paths pointing into ``out`` instead of the staging folder."""
    import dataclasses

    def move(value: Any) -> Any:
        if isinstance(value, Path):
            try:
                return out / value.relative_to(staging)
            except ValueError:
                return value
        if isinstance(value, tuple):
            return tuple(move(v) for v in value)
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    if dataclasses.is_dataclass(result):
        return dataclasses.replace(result, **{f.name: move(getattr(result, f.name)) for f in dataclasses.fields(result)})
    return result


def build_report_atomic(run_dir: Path) -> bool:
    """The run's report (``<run>/report``), rebuilt only when it is not current (returns whether it built)."""
    out = run_dir / "report"
    digest = report_digest(run_dir)
    if report_is_current(out, digest):
        return False
    build_atomic([run_dir], out, digest=digest)
    return True


def reopen_units_with_new_metrics(store: Any, units: Sequence[Any], cfg: Any, device: str) -> int:
    """Done units whose record lists a metric as unavailable (e.g. absent weights) that is available now are
    marked ``stale``, so the run computes them again (codec output and other metrics come from the cache).
    Returns how many were reopened. Only records with such a list cost anything (no model is built otherwise)."""
    from codecbench.bench.runner import metric_instance

    available: dict[str, bool] = {}
    reopened = 0
    for unit in units:
        record = store.read(unit.unit_id)
        if record is None or record.get("status") != "done" or not record.get("metrics_unavailable"):
            continue
        for spec in cfg.metrics:
            if spec.name in record["metrics_unavailable"]:
                if spec.name not in available:
                    available[spec.name] = not metric_instance(spec, str(cfg.cache_root), device).availability()
                if available[spec.name]:
                    store.write(unit.unit_id, {**record, "status": "stale"})
                    reopened += 1
                    break
    return reopened


CLIPS_SEEN = "clips_seen.json"


def vanished_clips(run_dir: Path, items: Sequence[Any], failures: Sequence[Any]) -> list[Any]:
    """Clips an earlier run of this folder used that are gone from disk now: one failed (load) row each, so their
    rows do not silently vanish from the table. ``<run>/clips_seen.json`` keeps every clip path the folder has used
    (rewritten only when it grows); restore the file, or start a new run folder for a changed dataset."""
    from codecbench.bench.datasets import ItemFailure

    path = Path(run_dir) / CLIPS_SEEN
    try:
        seen = json.loads(path.read_text())
        seen = seen if isinstance(seen, list) and all(isinstance(p, str) for p in seen) else []
    except (OSError, ValueError):
        seen = []
    current = {item.clip_path for item in items} | {failure.clip_path for failure in failures}
    gone = sorted(p for p in set(seen) - current if not Path(p).exists())
    write_if_changed(path, json.dumps(sorted(set(seen) | current), indent=0).encode())
    return [ItemFailure(f"{Path(p).stem}#0", p, f"{p}: used by an earlier run of this folder, now missing "
                        "(deleted or moved); restore it or use a new run folder") for p in gone]
