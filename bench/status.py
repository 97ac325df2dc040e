"""Where a run stands, unit by unit: ``codecbench status RUN_DIR`` (done / running / failed / missing).

The driver writes ``<run>/plan.json`` (every unit of the grid: id, codec, point, item ids) before it submits
anything; the store (``<run>/units/<id>.json``) says which units are done or failed; for the ``slurm`` executor,
``<log_dir>/jobs.jsonl`` and ``squeue`` say which of the others are queued or running now. A failed unit's record
holds its error and, from a cluster, its job's log file (``log_path``). Input files that could not be loaded are
listed in the plan (``input_failures``) and counted apart: they are failed rows, not units, and are not retried.

States:

| state | meaning |
|---|---|
| `done` | its record is in the store; a rerun never recomputes it |
| `running` | not done, and the last Slurm job it was given is pending or running (`detail` says which) |
| `failed` | its last attempt failed: `detail` (`failed-codec`, `failed-environment`), `error`, `attempts`, `log_path` (rerun to retry) |
| `missing` | never finished and nothing is running it (killed driver, local run interrupted): rerun to compute |
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codecbench.bench.core.cache import atomic_write_json
from codecbench.bench.core.errors import ConfigError
from codecbench.bench.store import RunStore

PLAN_FILE = "plan.json"
PLAN_FORMAT = 1
STATES = ("done", "running", "failed", "missing")


@dataclass(frozen=True)
class UnitState:
    unit_id: str
    codec: str
    point: str
    items: int
    state: str
    detail: str = ""  # running: job id and Slurm state
    error: str = ""
    attempts: int = 0
    log_path: str = ""


def write_plan(run_dir: str | Path, units: Iterable[Any], input_failures: Iterable[Any] = ()) -> Path:
    """``<run>/plan.json``: every unit of the grid (id, codec, point label, item ids) and every input file that
    could not be loaded (``input_failures``: item id, path, reason; not units, never retried), written atomically."""
    path = Path(run_dir) / PLAN_FILE
    planned = [{"unit_id": u.unit_id, "codec": u.codec, "point": u.point.label,
                "items": [ref.item_id for ref in u.items]} for u in units]
    inputs = [{"item_id": f.item_id, "clip_path": f.clip_path, "error": str(f.error)} for f in input_failures]
    try:  # the same plan is not rewritten (a finished run in a read-only folder writes nothing)
        old = json.loads(path.read_text())
        if old.get("units") == planned and old.get("input_failures", []) == inputs:
            return path
    except (OSError, ValueError, AttributeError):
        pass
    atomic_write_json(path, {"format": PLAN_FORMAT, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "units": planned, "input_failures": inputs})
    return path


def input_failures(run_dir: str | Path) -> list[dict[str, Any]]:
    """The inputs of the run's plan that could not be loaded (item id, path, reason)."""
    read_plan(run_dir)  # checks the plan
    from codecbench.bench.validate import read_json_object

    entries = read_json_object(Path(run_dir) / PLAN_FILE, "the run plan").get("input_failures", [])
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def read_plan(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / PLAN_FILE
    if not Path(run_dir).is_dir():
        raise ConfigError(f"status: run folder {run_dir} does not exist")
    if not path.is_file():
        raise ConfigError(f"status: {path} is missing: not a codecbench run folder, or its run never reached "
                          "submission (run `codecbench run CONFIG` to create it)")
    from codecbench.bench.validate import read_json_object

    try:
        plan = read_json_object(path, "the run plan")
    except ConfigError as error:
        raise ConfigError(f"status: {error}") from None
    if plan.get("format") != PLAN_FORMAT:
        raise ConfigError(f"status: {path} has format {str(plan.get('format'))[:40]!r}; this codecbench reads {PLAN_FORMAT}")
    units = plan.get("units")
    fields = {"unit_id": str, "codec": str, "point": str, "items": list}
    if not isinstance(units, list) or not all(
        isinstance(u, dict) and all(isinstance(u.get(k), t) for k, t in fields.items()) for u in units
    ):
        raise ConfigError(f"status: {path}: 'units' must be a list of objects with {', '.join(fields)} "
                          "(a damaged plan; rerun `codecbench run CONFIG` to rewrite it)")
    bad = [u["unit_id"] for u in units if not u["unit_id"] or "/" in u["unit_id"] or "\x00" in u["unit_id"]]
    if bad:
        raise ConfigError(f"status: {path}: unit id {bad[0][:60]!r} is not a plain file name")
    return units


def _failed(outcome: Any) -> bool:
    return isinstance(outcome, BaseException) or (isinstance(outcome, Mapping) and bool(outcome.get("failed")))


def record_outcome(store: RunStore, unit_id: str, outcome: Any) -> bool:
    """Settle one executor outcome in the store; True when the unit is done.

    A unit reported failed whose record says done finished before its job died: it is done. Otherwise the
    record says failed, with the error, the attempt count and, when the executor gave one, the job's
    ``log_path`` and ``job_id`` (an exception from the executor, e.g. a killed Slurm job, leaves no record of
    its own: this writes it).
    """
    if not _failed(outcome):
        return True
    existing = store.read(unit_id)
    if existing is not None and existing.get("status") == "done":
        return True
    source = outcome if isinstance(outcome, Mapping) else vars(outcome) if hasattr(outcome, "__dict__") else {}
    log_path, job_id = source.get("log_path", ""), source.get("job_id", "")
    if isinstance(outcome, BaseException) or existing is None:
        error = f"{type(outcome).__name__}: {outcome}" if isinstance(outcome, BaseException) else outcome.get("error", "")
        record = {"status": "failed", "error": error, "rows": [], "stats": {},
                  "attempts": (existing or {}).get("attempts", 0) + 1}
    else:  # execute_unit wrote the failure (and counted the attempt): add where its log is
        record = {k: v for k, v in existing.items() if k not in ("format", "unit_id")}
    if log_path:
        record["log_path"] = str(log_path)
    if job_id:
        record["job_id"] = str(job_id)
    store.write(unit_id, record)
    return False


def _slurm_log_dir(run_dir: Path) -> Path:
    config = run_dir / "config.yaml"
    if config.is_file():
        import yaml

        try:
            raw = yaml.safe_load(config.read_text()) or {}
        except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError):
            raw = {}
        executor = raw.get("executor") if isinstance(raw, dict) else None
        options = executor.get("options") if isinstance(executor, dict) else None
        log_dir = options.get("log_dir") if isinstance(options, dict) else None
        if isinstance(log_dir, str) and log_dir:
            return Path(log_dir)
    return run_dir / "slurm"


def _running(run_dir: Path, unit_ids: set[str]) -> dict[str, str]:
    """unit id -> "job <id> <STATE>" for units whose latest Slurm job is still queued or running."""
    from codecbench.bench import slurm

    latest: dict[str, str] = {}
    for entry in slurm.read_jobs(_slurm_log_dir(run_dir)):
        for unit_id in entry.get("units", []):
            if unit_id in unit_ids:
                latest[unit_id] = entry["job_id"]
    if not latest:
        return {}
    states = slurm.queue_states(set(latest.values()))
    if states is None:
        return {}
    return {unit_id: f"job {job_id} {states[job_id]}" for unit_id, job_id in latest.items()
            if states.get(job_id) in slurm.ACTIVE_STATES}


def unit_states(run_dir: str | Path) -> list[UnitState]:
    """The state of every unit of the run's plan, in plan order."""
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    store = RunStore(run_dir)
    records = {entry["unit_id"]: store.read(entry["unit_id"]) for entry in plan}
    open_ids = {u for u, record in records.items() if record is None or record.get("status") != "done"}
    running = _running(run_dir, open_ids) if open_ids else {}
    out = []
    for entry in plan:
        unit_id = entry["unit_id"]
        record = records[unit_id] or {}
        base = {"unit_id": unit_id, "codec": entry["codec"], "point": entry["point"], "items": len(entry["items"]),
                "attempts": int(record.get("attempts", 1 if record else 0)), "log_path": record.get("log_path", "")}
        if record.get("status") == "done":
            out.append(UnitState(**base, state="done"))
        elif unit_id in running:
            out.append(UnitState(**base, state="running", detail=running[unit_id], error=record.get("error", "")))
        elif record.get("status") == "failed":
            out.append(UnitState(**base, state="failed", detail=str(record.get("outcome", "")), error=record.get("error", "")))
        else:
            out.append(UnitState(**base, state="missing"))
    return out


def summary(states: list[UnitState]) -> dict[str, int]:
    counts = Counter(s.state for s in states)
    return {"units": len(states), **{state: counts.get(state, 0) for state in STATES}}


# ---- command line ------------------------------------------------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="units of a run folder: done / running / failed / missing, failure logs")
    status.add_argument("run_dir", help="run folder (results/<name>)")
    status.add_argument("--json", action="store_true", help="print every unit's state as JSON lines")
    status.add_argument("--all", action="store_true", help="list every unit, not only the unfinished ones")
    status.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    states = unit_states(args.run_dir)
    counts = summary(states)
    inputs = input_failures(args.run_dir)
    if args.json:
        for state in states:
            print(json.dumps(asdict(state), sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    console.print(f"[bold]{args.run_dir}[/bold]: {counts['units']} units: {counts['done']} done, "
                  f"{counts['running']} running, {counts['failed']} failed, {counts['missing']} missing; "
                  f"{len(inputs)} input file(s) failed to load (not retried)")
    for entry in inputs[:10]:
        console.print(f"  input failed: {entry.get('clip_path', '')}: {(str(entry.get('error', '')).splitlines() or [''])[0]}")
    shown = [s for s in states if args.all or s.state != "done"]
    if shown:
        view = Table()
        for column in ("unit_id", "codec", "point", "items", "state", "attempts", "detail / error", "log"):
            view.add_column(column, overflow="fold")
        for s in shown:
            view.add_row(s.unit_id, s.codec, s.point, str(s.items), s.state, str(s.attempts),
                         s.detail or s.error, s.log_path)
        console.print(view)
    if counts["failed"] or counts["missing"]:
        console.print("rerun the same `codecbench run` to compute the failed and missing units "
                      "(done units are never recomputed)")
    return 0
