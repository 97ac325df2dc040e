"""The fast path of a finished run: a rerun that would compute nothing is answered from the run folder.

A run that finished with no failure leaves ``<run>/rerun_stamp.json``, which records three things:

- what was asked: the config file's bytes and path, the command line's overrides, the working directory and the
  environment variables that change a run (``CODECBENCH_*``, the Hugging Face and torch switches);
- what the answer depends on: the codecbench sources (size and mtime of every file), the installed packages
  (every ``*.dist-info`` name on ``sys.path``), the dataset folder and every clip used, the weights folder and
  the unit records (each file's size and mtime);
- the sha256 of every output (results table and CSVs, manifest, plan, config copy) and, with a report, the
  report's own stamp (its digest of the table and the report code, and its files present).

A rerun whose request, dependencies and outputs all match returns the table from disk, after rewriting the
manifest's counts and timings as the full path would (0 codec calls, 0 metric computations, every unit cached)
and noting ``"rerun": "fast path ..."`` in it. It imports neither torch nor any codec package. Anything
different, absent or unreadable takes the full path, which verifies unit by unit and cache entry by cache entry;
so does ``codecbench run --recheck`` (``api.run(..., recheck=True)``). A config given as a mapping or a
:class:`RunConfig` (Python API) always takes the full path. A run with a failed unit, input or row leaves no
stamp: its rerun retries.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codecbench.bench.records import RunResult, RunStats

STAMP = "rerun_stamp.json"
STAMP_FORMAT = 1
OUTPUTS = ("results.parquet", "results.csv", "failures.csv", "bitstream_stats.csv", "manifest.json", "plan.json",
           "config.yaml", "clips_seen.json")  # hashed when present; one absent now but present then: full path
ENV_PREFIXES = ("CODECBENCH_", "HF_", "TRANSFORMERS_", "TORCH", "CUDA_", "OMP_", "MKL_", "TOKENIZERS_")


@dataclass(frozen=True)
class Request:
    """What a ``run`` call asked, fingerprinted before any work (see the module docstring)."""

    run_dir: Path  # where the stamp is looked for (the full path confirms it: the stamp names the run folder)
    digest: str  # sha256 of the request and its code / package / environment context
    started: float  # perf_counter at the call


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _tree(root: Path, suffixes: tuple[str, ...] | None = None) -> list[list[Any]]:
    """[relative path, size, mtime_ns] of every file under ``root`` (a file: itself), sorted; [] when absent."""
    try:
        if root.is_file():
            info = root.stat()
            return [[root.name, info.st_size, info.st_mtime_ns]]
    except OSError:
        return [["<unreadable>", 0, 0]]
    rows = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if suffixes is not None and not name.endswith(suffixes):
                continue
            path = Path(folder) / name
            try:
                info = path.stat()
            except OSError:
                rows.append([str(path.relative_to(root)), -1, -1])
                continue
            rows.append([str(path.relative_to(root)), info.st_size, info.st_mtime_ns])
    return sorted(rows)


def _sources() -> list[Any]:
    """The codecbench sources (bench, codecs, listening_test folders), without importing them."""
    from importlib.util import find_spec

    rows = []
    for name in ("codecbench.bench", "codecbench.codecs", "codecbench.listening_test"):
        spec = find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            rows.append([name, _tree(Path(folder))])
    return rows


def _packages() -> list[str]:
    """Every installed distribution (``name-version.dist-info``) on ``sys.path``: an install or upgrade changes it."""
    names = set()
    # sys.path[0] is the script's folder or the working directory (`-c`, `-m`): not an install location
    for entry in sys.path if sys.flags.safe_path else sys.path[1:]:
        try:
            names.update(f"{os.path.abspath(entry or '.')}/{n}" for n in os.listdir(entry or ".")
                         if n.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
    return sorted(names)


def _run_dir_of(raw: Any, out: str | os.PathLike | None) -> Path | None:
    """The run folder the config's parser would give (``--out``, else ``output``, else ``results/<name>``)."""
    if out is not None:
        return Path(out)
    if not isinstance(raw, dict):
        return None
    output = raw.get("output")
    if isinstance(output, str) and output:
        return Path(output if Path(output).expanduser().is_absolute() else str(Path.cwd() / output))
    name = raw.get("name")
    return Path(f"results/{name}") if isinstance(name, str) and name else None


def request(config: Any, out: str | os.PathLike | None = None, device: str | None = None,
            executor: str | None = None, workers: int | None = None, report: bool | None = None) -> Request | None:
    """The request's fingerprint, or None when the fast path cannot apply (a config that is not a readable
    file, or whose run folder cannot be told without parsing it: the full path then reports any error)."""
    started = time.perf_counter()
    if not isinstance(config, (str, os.PathLike)):
        return None
    import yaml
    from codecbench.bench.core import weights

    path = Path(config)
    try:
        data = path.read_bytes()
        raw = yaml.safe_load(data)
    except (OSError, yaml.YAMLError, ValueError):
        return None
    run_dir = _run_dir_of(raw, out)
    if run_dir is None:
        return None
    own_weights = raw.get("weights_dir")  # the config's own folder wins over this process's (as in the full path)
    own_weights = own_weights if isinstance(own_weights, str) and own_weights else None
    asked = {
        "format": STAMP_FORMAT,
        "config_sha256": hashlib.sha256(data).hexdigest(),
        "config_path": os.path.abspath(path),
        "cwd": os.getcwd(),
        "overrides": {"out": None if out is None else str(out), "device": device, "executor": executor,
                      "workers": workers, "report": report},
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
        "offline": weights.is_offline(),
        "weights_dir": str(weights.weights_dir(own_weights and str(Path.cwd() / Path(own_weights).expanduser()))),
        "python": [sys.executable, sys.version],
        "sources": _sources(),
        "packages": _packages(),
    }
    return Request(run_dir=run_dir, digest=_digest(asked), started=started)


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _outputs(run_dir: Path) -> dict[str, str | None]:
    return {name: _file_sha256(run_dir / name) for name in OUTPUTS}


def _dependencies(dataset_dir: str, clips: list[str], weights_dir: str, run_dir: Path) -> dict[str, Any]:
    return {
        "dataset": _tree(Path(dataset_dir)),
        "clips": [[clip, _tree(Path(clip))] for clip in clips],
        "weights": _tree(Path(weights_dir)),
        "units": _tree(run_dir / "units", (".json",)),
    }


def remember(asked: Request | None, cfg: Any, clips: list[str], totals: RunStats, failed_rows: int) -> bool:
    """After a run: write the stamp when the run had no failure (returns whether it wrote): no failed unit or input
    and no ``failed`` row in the table (a metric that could not score an item is retried by every full-path rerun,
    so such a run never takes the fast path). Before any output is written, :func:`forget` removed an old stamp,
    so a kill between the two never leaves a stamp that vouches for outputs it did not see."""
    from codecbench.bench.core import weights
    from codecbench.bench.faults import report_digest

    if asked is None or failed_rows or totals.units_failed or totals.clips_failed or totals.failures.get("units") \
            or totals.failures.get("inputs"):
        return False
    if os.path.abspath(asked.run_dir) != os.path.abspath(cfg.run_dir):
        return False  # the guess from the raw config was wrong: no fast path for this config
    run_dir = Path(cfg.run_dir)
    stamp = {
        "format": STAMP_FORMAT,
        "request": asked.digest,
        "run_dir": os.path.abspath(run_dir),
        "dependencies": _dependencies(cfg.dataset.path, clips, str(weights.weights_dir(cfg.weights_dir)), run_dir),
        "outputs": _outputs(run_dir),
        "report_digest": report_digest(run_dir) if cfg.report else None,
        "counts": {"units": totals.units, "items": totals.items,
                   "set_metrics": totals.set_computations + totals.set_cached},
        "paths": {"dataset": cfg.dataset.path, "weights": str(weights.weights_dir(cfg.weights_dir)),
                  "clips": clips},
    }
    try:
        from codecbench.bench.core.cache import atomic_write_json

        atomic_write_json(run_dir / STAMP, stamp)
    except OSError:  # a read-only run folder: no stamp, reruns take the full path
        return False
    return True


def forget(run_dir: Path) -> None:
    """Remove the run folder's stamp (before a full-path run writes anything)."""
    try:
        (Path(run_dir) / STAMP).unlink()
    except OSError:
        pass  # absent; or a read-only folder, where nothing changes either


def _valid_stamp(asked: Request) -> dict[str, Any] | None:
    """The stamp when request, dependencies and outputs match it; else None (full path)."""
    try:
        stamp = json.loads((asked.run_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("format") != STAMP_FORMAT or stamp.get("request") != asked.digest:
        return None
    if stamp.get("run_dir") != os.path.abspath(asked.run_dir):
        return None
    try:
        paths = stamp["paths"]
        now = _dependencies(paths["dataset"], list(paths["clips"]), paths["weights"], asked.run_dir)
    except (KeyError, TypeError):
        return None
    if json.loads(json.dumps(now)) != stamp.get("dependencies") or _outputs(asked.run_dir) != stamp.get("outputs"):
        return None
    if stamp.get("outputs", {}).get("results.parquet") is None or stamp.get("outputs", {}).get("manifest.json") is None:
        return None
    if stamp.get("report_digest") is not None:
        from codecbench.bench.faults import report_digest, report_is_current

        if report_digest(asked.run_dir) != stamp["report_digest"] or \
                not report_is_current(asked.run_dir / "report", stamp["report_digest"]):
            return None
    return stamp


def reuse(asked: Request | None) -> RunResult | None:
    """The finished run's result when the stamp vouches for it (see the module docstring), else None."""
    if asked is None:
        return None
    stamp = _valid_stamp(asked)
    if stamp is None:
        return None
    import pandas as pd
    from codecbench.bench import manifest as manifest_mod
    from codecbench.bench.faults import write_manifest

    run_dir = asked.run_dir
    try:
        table = pd.read_parquet(run_dir / "results.parquet")
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError, ImportError):
        return None
    counts = stamp["counts"]
    totals = RunStats(units=counts["units"], units_cached=counts["units"], items=counts["items"],
                      set_cached=counts["set_metrics"])
    seconds = time.perf_counter() - asked.started
    manifest["counts"] = {**manifest.get("counts", {}), **{name: totals[name] for name in manifest_mod.COUNTS},
                          "cache_entries_failed_verification": 0}
    manifest["timings_s"] = {"prepare": 0.0, "units": 0.0, "total": seconds}
    manifest["started_at"] = manifest["finished_at"] = manifest_mod.now()
    manifest["rerun"] = (f"fast path: request, sources, packages, dataset, weights, unit records and outputs "
                         f"unchanged since the run that computed them ({STAMP}); --recheck verifies every unit")
    write_manifest(run_dir / "manifest.json", manifest)  # a read-only folder keeps its manifest (it says so)
    stamp["outputs"]["manifest.json"] = _file_sha256(run_dir / "manifest.json")
    try:
        from codecbench.bench.core.cache import atomic_write_json

        atomic_write_json(run_dir / STAMP, stamp)
    except OSError:
        pass  # read-only: the stamp still matches the manifest it kept
    totals.seconds = time.perf_counter() - asked.started
    return RunResult(run_dir=run_dir, table=table, stats=totals)
