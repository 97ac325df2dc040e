"""The ``slurm`` executor: work units run on a Slurm cluster as submitit job arrays.

Units are grouped ``units_per_job`` to a job (one array task), so a grid of thousands of small units costs a
few hundred scheduler jobs. Every unit writes its own record into the run store on the shared filesystem
(:func:`codecbench.bench.runner.execute_unit`), so a job that is preempted, killed or timed out loses only
its unfinished units; the driver reads outcomes back from submitit's result files and asks ``squeue`` for the
state of jobs that ended without one.

Files, under ``log_dir`` (default ``<run>/slurm/``):

- ``<job>_<task>_0_log.out`` / ``.err``: the job's stdout / stderr (a failed unit's record names its file);
- ``<job>_submission.sh``: the sbatch script submitit wrote; ``*_submitted.pkl`` / ``*_result.pkl``: its data;
- ``jobs.jsonl``: one line per array task: job id, partition, unit ids, log paths, submission time. ``codecbench
  status`` and a resumed driver read it: units of a job still queued or running are waited for, never
  submitted twice.

GPU units and CPU-only units can go to different partitions: with ``gpu_partition`` set, units whose codec
kind is in ``gpu_codec_kinds`` (default neural and continuous codecs) go there with ``gpus_per_task`` GPUs;
the others (classic codecs, anchors, precomputed outputs) go to ``partition`` without a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from codecbench.bench.core.errors import CodecbenchError, ConfigError
from codecbench.bench.executors import Executor

JOBS_FILE = "jobs.jsonl"
GPU_CODEC_KINDS = ("neural", "continuous")
# squeue states of a job that may still produce its result (everything else has ended)
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
    "SUSPENDED", "PREEMPTED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT",
})


class SlurmJobError(CodecbenchError):
    """A unit that did not finish on the cluster: the reason, the job and the job's log file."""

    def __init__(self, message: str, job_id: str = "", log_path: str = ""):
        super().__init__(message)
        self.job_id = job_id
        self.log_path = log_path


def _check(value: Any, kind: type, key: str, minimum: float | None = None, optional: bool = False) -> Any:
    where = f"executor.options.{key}"
    if value is None and optional:
        return None
    if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if kind is str and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: must be >= {minimum}, got {value!r}")
    return kind(value)


def queue_states(job_ids: Iterable[str], env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """``{array task id: state}`` of the given jobs that Slurm still lists (recently ended ones included).

    ``job_ids`` are ``<job>`` or ``<job>_<task>``; one ``squeue`` call covers all of them. None when squeue
    cannot answer (controller unreachable): the caller must not read that as "the jobs are gone".
    """
    arrays = sorted({str(job_id).split("_")[0] for job_id in job_ids})
    if not arrays:
        return {}
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", "--jobs", ",".join(arrays)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # every listed job has left the queue
            return {}
        return None
    states = {}
    for line in done.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id:
            states[job_id] = state.strip()
    return states


def read_jobs(log_dir: str | Path) -> list[dict[str, Any]]:
    """The submissions recorded in ``<log_dir>/jobs.jsonl`` (oldest first); [] when there are none."""
    path = Path(log_dir) / JOBS_FILE
    if not path.is_file():
        return []
    jobs = []
    for line in path.read_text().splitlines():
        try:
            jobs.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash mid-write
    return jobs


def _append_jobs(log_dir: Path, entries: list[dict[str, Any]]) -> None:
    with open(log_dir / JOBS_FILE, "a") as handle:
        handle.write("".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries))
        handle.flush()
        os.fsync(handle.fileno())


def run_group(fn: Callable[[Any], Any], payloads: Sequence[Any]) -> list[tuple]:
    """Inside the job: ``fn`` on each payload in turn; one failing payload does not stop the others.

    Returns ``("ok", result)`` or ``("error", reason, traceback)`` per payload, in order.
    """
    threads = os.environ.get("SLURM_CPUS_PER_TASK")
    if threads and threads.isdigit():
        try:
            import torch

            torch.set_num_threads(int(threads))
        except ImportError:
            pass
    job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "?"))
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    print(f"codecbench: job {job}{'_' + task if task else ''} (pid {os.getpid()}) on {socket.gethostname()}, partition "
          f"{os.environ.get('SLURM_JOB_PARTITION', '?')}: {len(payloads)} units", flush=True)
    outcomes: list[tuple] = []
    for payload in payloads:
        name = getattr(payload, "unit_id", repr(payload)[:60])
        started = time.perf_counter()
        print(f"codecbench: unit {name} started", flush=True)
        try:
            outcomes.append(("ok", fn(payload)))
            print(f"codecbench: unit {name} finished in {time.perf_counter() - started:.1f} s", flush=True)
        except Exception as error:  # recorded by the driver with this log's path; the job goes on
            trace = traceback.format_exc()
            print(f"codecbench: unit {name} FAILED: {type(error).__name__}: {error}\n{trace}", file=sys.stderr,
                  flush=True)
            outcomes.append(("error", f"{type(error).__name__}: {error}", trace))
    return outcomes


class SlurmExecutor(Executor):
    """Submits units as submitit job arrays and yields each unit's outcome as its job ends.

    Results carry ``log_path`` (the job's stderr file); a unit whose job failed comes back as a
    :class:`SlurmJobError` with the reason, the job id and ``log_path``.
    """

    name = "slurm"

    def __init__(
        self,
        partition: str | None = None,
        gpu_partition: str | None = None,
        gpu_codec_kinds: Sequence[str] = GPU_CODEC_KINDS,
        gpus_per_task: int = 1,
        cpus_per_task: int = 1,
        mem_gb: float | None = None,
        timeout_min: int = 60,
        array_parallelism: int | None = None,
        units_per_job: int = 4,
        sbatch_options: Mapping[str, Any] | None = None,
        setup: Sequence[str] = (),
        log_dir: str | None = None,
        job_name: str = "codecbench",
        poll_s: float = 2.0,
        result_grace_s: float = 10.0,
    ):
        self.partition = _check(partition, str, "partition", optional=True)
        self.gpu_partition = _check(gpu_partition, str, "gpu_partition", optional=True)
        if isinstance(gpu_codec_kinds, str) or not all(isinstance(k, str) for k in gpu_codec_kinds):
            raise ConfigError(f"executor.options.gpu_codec_kinds: expected a list of codec kinds, got {gpu_codec_kinds!r}")
        self.gpu_codec_kinds = tuple(gpu_codec_kinds)
        self.gpus_per_task = _check(gpus_per_task, int, "gpus_per_task", 0)
        self.cpus_per_task = _check(cpus_per_task, int, "cpus_per_task", 1)
        self.mem_gb = _check(mem_gb, float, "mem_gb", 0, optional=True)
        self.timeout_min = _check(timeout_min, int, "timeout_min", 1)
        self.array_parallelism = _check(array_parallelism, int, "array_parallelism", 1, optional=True)
        self.units_per_job = _check(units_per_job, int, "units_per_job", 1)
        if sbatch_options is not None and not isinstance(sbatch_options, Mapping):
            raise ConfigError(f"executor.options.sbatch_options: expected a mapping like {{qos: low}}, got {sbatch_options!r}")
        self.sbatch_options = dict(sbatch_options or {})
        if isinstance(setup, str) or not all(isinstance(line, str) for line in setup):
            raise ConfigError(f"executor.options.setup: expected a list of shell lines, got {setup!r}")
        self.setup = tuple(setup)
        self.log_dir = _check(log_dir, str, "log_dir", optional=True)
        self.job_name = _check(job_name, str, "job_name")
        self.poll_s = _check(poll_s, float, "poll_s", 0.05)
        self.result_grace_s = _check(result_grace_s, float, "result_grace_s", 0)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "partition": self.partition, "gpu_partition": self.gpu_partition,
                "gpus_per_task": self.gpus_per_task, "cpus_per_task": self.cpus_per_task, "mem_gb": self.mem_gb,
                "timeout_min": self.timeout_min, "array_parallelism": self.array_parallelism,
                "units_per_job": self.units_per_job, "sbatch_options": self.sbatch_options}

    # ---- submission -------------------------------------------------------------------------------------------

    def parameters(self, gpu: bool) -> dict[str, Any]:
        """submitit ``update_parameters`` keywords for a CPU-only or a GPU job array."""
        params: dict[str, Any] = {"name": self.job_name, "timeout_min": self.timeout_min,
                                  "cpus_per_task": self.cpus_per_task, "tasks_per_node": 1, "nodes": 1}
        partition = self.gpu_partition if gpu else self.partition
        if partition:
            params["slurm_partition"] = partition
        if gpu and self.gpus_per_task:
            params["slurm_gpus_per_task"] = self.gpus_per_task
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.array_parallelism is not None:
            params["slurm_array_parallelism"] = self.array_parallelism
        if self.sbatch_options:
            params["slurm_additional_parameters"] = dict(self.sbatch_options)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params

    def folder(self, payloads: Sequence[Any]) -> Path:
        """Where logs and submitit files go: ``log_dir``, else ``<run_dir>/slurm`` of the units."""
        if self.log_dir:
            return Path(self.log_dir)
        run_dirs = {getattr(p, "run_dir", None) for p in payloads}
        if len(run_dirs) != 1 or None in run_dirs:
            raise ConfigError("executor.options.log_dir: required when the payloads are not units of one run")
        return Path(run_dirs.pop()) / "slurm"

    def needs_gpu(self, payload: Any) -> bool:
        """Whether ``payload`` goes to the GPU partition (only when ``gpu_partition`` is set)."""
        if not self.gpu_partition or not hasattr(payload, "codec"):
            return False
        if not str(getattr(payload, "device", "cuda")).startswith("cuda") and self.gpus_per_task:
            return False  # a CPU run asks for no GPU
        from codecbench.codecs import registry

        try:
            kind = registry.get(payload.codec).info.kind
        except CodecbenchError:
            return False
        return kind in self.gpu_codec_kinds

    def _submit(self, fn: Callable[[Any], Any], payloads: list[Any], folder: Path) -> list[tuple[Any, list[Any], dict]]:
        try:
            import submitit
        except ImportError:
            raise ConfigError("executor 'slurm' needs submitit: pip install 'codecbench[slurm]'") from None
        if shutil.which("sbatch") is None:
            raise ConfigError("executor 'slurm': sbatch is not on PATH (run codecbench on a Slurm login node)")
        submitted = []
        for gpu in (True, False):
            members = [p for p in payloads if self.needs_gpu(p) == gpu]
            if not members:
                continue
            groups = [members[i : i + self.units_per_job] for i in range(0, len(members), self.units_per_job)]
            executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
            params = self.parameters(gpu)
            executor.update_parameters(**params)
            try:
                jobs = executor.map_array(run_group, [fn] * len(groups), groups)
            except Exception as error:  # sbatch refused (bad partition, limits): nothing was queued
                raise CodecbenchError(f"slurm: sbatch refused the job array ({error})") from None
            entries = []
            for job, group in zip(jobs, groups):
                entry = {"job_id": job.job_id, "partition": params.get("slurm_partition", ""), "gpu": gpu,
                         "units": [getattr(p, "unit_id", None) for p in group], "stdout": str(job.paths.stdout),
                         "stderr": str(job.paths.stderr), "submitted_at": time.time()}
                entries.append(entry)
                submitted.append((job, group, entry))
            _append_jobs(folder, entries)
        return submitted

    def _adopt(self, payloads: list[Any], folder: Path) -> tuple[list[tuple[Any, list[Any], dict]], list[Any]]:
        """Jobs of an earlier driver still queued or running: their units are waited for, not resubmitted."""
        by_unit = {getattr(p, "unit_id", None): p for p in payloads}
        earlier = [entry for entry in read_jobs(folder) if set(entry.get("units", [])) & set(by_unit)]
        states = queue_states([entry["job_id"] for entry in earlier]) if earlier else {}
        adopted, taken = [], set()
        if not states:
            return [], payloads
        import submitit

        for entry in earlier:
            if states.get(entry["job_id"]) not in ACTIVE_STATES:
                continue
            group = [by_unit.get(u) for u in entry["units"]]  # job order; None where this call does not ask
            if not any(p is not None and u not in taken for u, p in zip(entry["units"], group)):
                continue
            job = submitit.SlurmJob(folder=str(folder), job_id=entry["job_id"])
            adopted.append((job, group, entry))
            taken.update(u for u, p in zip(entry["units"], group) if p is not None)
        return adopted, [p for p in payloads if getattr(p, "unit_id", None) not in taken]

    # ---- waiting ----------------------------------------------------------------------------------------------

    def run(self, fn: Callable[[Any], Any], payloads: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        payloads = list(payloads)
        if not payloads:
            return
        folder = self.folder(payloads)
        folder.mkdir(parents=True, exist_ok=True)
        adopted, fresh = self._adopt(payloads, folder)
        pending = {entry["job_id"]: (job, group, entry) for job, group, entry in adopted}
        for job, group, entry in self._submit(fn, fresh, folder) if fresh else []:
            pending[entry["job_id"]] = (job, group, entry)
        ended_at: dict[str, float] = {}
        while pending:
            states = queue_states(pending)
            now = time.monotonic()
            for job_id in list(pending):
                job, group, entry = pending[job_id]
                if job.paths.result_pickle.exists():
                    del pending[job_id]
                    yield from self._outcomes(job, group, entry)
                    continue
                if states is None or states.get(job_id) in ACTIVE_STATES:
                    continue
                # ended without a result file: allow the shared filesystem a moment, then fail its units
                if now - ended_at.setdefault(job_id, now) >= self.result_grace_s:
                    del pending[job_id]
                    state = (states or {}).get(job_id, "no longer listed by squeue")
                    error_text = f"slurm job {job_id} ended ({state}) before finishing this unit; see {entry['stderr']}"
                    for payload in group:
                        if payload is not None:
                            yield payload, SlurmJobError(error_text, job_id=job_id, log_path=entry["stderr"])
            if pending:
                time.sleep(self.poll_s)

    def _outcomes(self, job: Any, group: list[Any], entry: dict) -> Iterator[tuple[Any, Any]]:
        from submitit.core.utils import pickle_load

        log_path = entry["stderr"]
        try:
            status, value = pickle_load(job.paths.result_pickle)[:2]
        except Exception as error:  # noqa: BLE001 - a truncated result file fails the job's units
            status, value = "error", f"unreadable result file {job.paths.result_pickle}: {error}"
        if status != "success":  # the job itself failed (e.g. the function could not be unpickled)
            text = str(value).strip().splitlines()
            reason = text[-1] if text else "unknown error"
            for payload in group:
                if payload is not None:
                    yield payload, SlurmJobError(f"slurm job {entry['job_id']} failed: {reason}; see {log_path}",
                                                 job_id=entry["job_id"], log_path=log_path)
            return
        for payload, outcome in zip(group, value):
            if payload is None:
                continue
            if outcome[0] == "ok":
                result = outcome[1]
                yield payload, ({**result, "log_path": log_path, "job_id": entry["job_id"]}
                                if isinstance(result, dict) else result)
            else:
                yield payload, SlurmJobError(f"{outcome[1]} (slurm job {entry['job_id']}; see {log_path})",
                                             job_id=entry["job_id"], log_path=log_path)
