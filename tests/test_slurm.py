"""The slurm executor against a real single-node Slurm (tests/slurm_cluster.py starts it, or .ci/run does).

Same table as the local executor (timing columns aside); GPU / CPU units routed to their partitions; a job
cancelled (scancel) or SIGKILLed mid-array is recovered by rerunning, or by the run's own retry, with no unit
computed twice (codec calls counted through tests/toy_codecs.py's TOY_CODEC_LOG across the job processes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from codecbench.bench import api, status
from codecbench.bench.core.errors import CodecbenchError, ConfigError
from codecbench.bench.executors import create
from codecbench.bench.runner import execute_unit
from codecbench.bench.slurm import SlurmExecutor, read_jobs
from codecbench.bench.store import RunStore
from slurm_cluster import slurm_cluster  # noqa: F401 - the session fixture
from toy_codecs import register_all

register_all()
TESTS_DIR = Path(__file__).parent
VOLATILE = ["encode_rtf", "decode_rtf", "extras_processing"]  # measured timings differ run to run
FAST = {"poll_s": 0.3, "result_grace_s": 2.0, "timeout_min": 10}


def execute_toy_unit(unit):
    """What a job runs in the toy-codec tests: the toy codecs are registered in the job's process too."""
    register_all()
    return execute_unit(unit)


def tones(path: Path, count: int, seconds: float) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        t = np.arange(int(seconds * 48_000)) / 48_000
        audio = 0.3 * np.sin(2 * np.pi * (300 + 170 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(str(path / f"clip{i}.wav"), audio.astype(np.float32), 48_000, subtype="FLOAT")
    return path


@pytest.fixture
def job_path(monkeypatch):
    """Jobs inherit the environment at submission: let them import this test module and toy_codecs."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))


# ---- options, no cluster needed ---------------------------------------------------------------------------------


def test_bad_options_name_the_key():
    with pytest.raises(ConfigError, match=r"executor.options.units_per_job: must be >= 1, got 0"):
        SlurmExecutor(units_per_job=0)
    with pytest.raises(ConfigError, match=r"executor.options.sbatch_options: expected a mapping"):
        SlurmExecutor(sbatch_options=["--qos=low"])
    with pytest.raises(ConfigError, match=r"executor 'slurm': bad options \['partitoin'\]"):
        create("slurm", partitoin="gpu")


def test_gpu_and_cpu_jobs_get_their_own_sbatch_lines(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # as if srun were here
    executor = SlurmExecutor(partition="cpu", gpu_partition="gpu", gpus_per_task=2, cpus_per_task=4, mem_gb=16,
                             timeout_min=90, array_parallelism=8, sbatch_options={"qos": "low"},
                             setup=["module load ffmpeg"])
    scripts = {}
    for gpu in (True, False):
        auto = submitit.AutoExecutor(folder=str(tmp_path), cluster="slurm")
        auto.update_parameters(**executor.parameters(gpu))
        scripts[gpu] = auto._executor._make_submission_file_text("python -c pass", "uid")
    assert "#SBATCH --partition=gpu" in scripts[True] and "#SBATCH --gpus-per-task=2" in scripts[True]
    assert "#SBATCH --partition=cpu" in scripts[False] and "gpus" not in scripts[False]
    for script in scripts.values():
        for line in ("--cpus-per-task=4", "--mem=16GB", "--time=90", "--qos=low", "--job-name=codecbench"):
            assert f"#SBATCH {line}" in script
        assert "module load ffmpeg" in script


# ---- the real cluster -------------------------------------------------------------------------------------------


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_table_equals_local_and_units_go_to_their_partitions(tmp_path, slurm_cluster):  # noqa: F811
    data = tones(tmp_path / "data", 3, seconds=1.0)
    base = {
        "name": "grid", "seed": 1, "dataset": {"path": str(data), "segment_s": 1.0},
        "codecs": [{"name": "reference"}, {"name": "lowpass_3k5"}, {"name": "opus", "grid": {"bitrate_kbps": [6, 12]}}],
        "metrics": ["si_sdr", "mel_distance"], "shard_size": 3, "report": False,
    }
    local = api.run({**base, "output": str(tmp_path / "local"), "cache_dir": str(tmp_path / "cache-local")},
                    progress=False)
    # anchors -> partition "alt" (as GPU units would go to a GPU partition), opus -> "main"
    options = {**FAST, "partition": "main", "gpu_partition": "alt", "gpus_per_task": 0,
               "gpu_codec_kinds": ["anchor"], "units_per_job": 2}
    slurm = api.run({**base, "output": str(tmp_path / "slurm"), "cache_dir": str(tmp_path / "cache-slurm"),
                     "executor": {"name": "slurm", "options": options}}, progress=False)
    assert slurm.stats["units"] == 4 and slurm.stats["units_failed"] == 0 and slurm.stats["codec_calls"] == 4
    assert set(slurm.table.status) == {"ok"} and len(slurm.table) == len(local.table) == 4 * 3 * 2
    pd.testing.assert_frame_equal(local.table.drop(columns=VOLATILE), slurm.table.drop(columns=VOLATILE))

    jobs = read_jobs(tmp_path / "slurm" / "slurm")
    assert sorted((job["partition"], len(job["units"])) for job in jobs) == [("alt", 2), ("main", 2)]
    for job in jobs:  # each job ran where it was sent, and says so in its log
        log = Path(job["stdout"]).read_text()
        assert f"partition {job['partition']}: 2 units" in log
        assert log.count("finished in") == 2
    states = status.unit_states(tmp_path / "slurm")
    assert [s.state for s in states] == ["done"] * 4


@pytest.mark.slurm
def test_a_refused_submission_is_a_clear_error(tmp_path, slurm_cluster):  # noqa: F811
    executor = SlurmExecutor(partition="no_such_partition", log_dir=str(tmp_path / "logs"), **FAST)
    with pytest.raises(CodecbenchError, match=r"slurm: sbatch refused the job array .*(?i:invalid partition)"):
        list(executor.run(abs, [-1, -2]))
    assert read_jobs(tmp_path / "logs") == []


def _running_job(log_dir: Path, done_units: set[str]) -> dict | None:
    """A submitted array task with at least one finished and one unfinished unit (a kill lands mid-job)."""
    for job in read_jobs(log_dir):
        finished = [u for u in job["units"] if u in done_units]
        if finished and len(finished) < len(job["units"]):
            return job
    return None


def _kill_mid_job(run_dir: Path, how: str, found: dict, deadline_s: float = 90) -> threading.Thread:
    def watch():
        store = RunStore(run_dir)
        deadline = time.time() + deadline_s
        while time.time() < deadline:
            done = {r["unit_id"] for r in store.records() if r.get("status") == "done"}
            job = _running_job(run_dir / "slurm", done) if done else None
            if job is not None:
                found.update(job)
                if how == "scancel":  # submitit ignores the SIGTERM; SIGKILL follows ~4.5 s later on this cluster
                    subprocess.run(["scancel", job["job_id"]], check=True)
                else:
                    pid = int(re.search(r"\(pid (\d+)\)", Path(job["stdout"]).read_text()).group(1))
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _toy_config(tmp_path: Path, retries: int, units: int, units_per_job: int, sleep_s: float) -> dict:
    data = tones(tmp_path / "data", 2, seconds=0.5)
    return {
        "name": "toy", "seed": 2, "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
        "dataset": {"path": str(data), "segment_s": 0.5},
        "codecs": [{"name": "toy_quant", "options": {"sleep_s": sleep_s}, "grid": {"bits": list(range(3, 3 + units))}}],
        "metrics": ["si_sdr"], "shard_size": 2, "report": False, "retries": retries,
        "executor": {"name": "slurm", "options": {**FAST, "units_per_job": units_per_job}},
    }


def _computed_once(run_dir: Path, log: Path, units: int, killed_in_flight: int) -> None:
    """Every unit's record was computed by exactly one codec call; only the unit hit by the kill repeats one."""
    records = [json.loads(p.read_text()) for p in (run_dir / "units").glob("*.json")]
    assert len(records) == units and {r["status"] for r in records} == {"done"}
    assert sum(r["stats"]["codec_calls"] for r in records) == units
    assert units <= log.read_text().count("encode") <= units + killed_in_flight


@pytest.mark.slurm
@pytest.mark.slow
def test_scancel_mid_array_then_rerun_finishes_only_the_rest(tmp_path, slurm_cluster, monkeypatch, job_path):  # noqa: F811
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CODEC_LOG", str(log))
    monkeypatch.setattr(api, "execute_unit", execute_toy_unit)
    # 2 jobs x 4 units of 2.5 s: after the first unit, 3 remain (7.5 s), more than the ~4.5 s scancel takes to kill
    config = _toy_config(tmp_path, retries=0, units=8, units_per_job=4, sleep_s=2.5)
    killed: dict = {}
    watcher = _kill_mid_job(tmp_path / "run", "scancel", killed)
    first = api.run(config, progress=False)
    watcher.join()
    assert killed, "the watcher found no job mid-way"
    assert 1 <= first.stats["units_failed"] <= 3
    failed = [s for s in status.unit_states(tmp_path / "run") if s.state == "failed"]
    assert len(failed) == first.stats["units_failed"]
    for unit in failed:  # recorded with the reason and the job's log
        assert unit.log_path == killed["stderr"] and Path(unit.log_path).is_file()
        assert f"slurm job {killed['job_id']} ended (CANCELLED" in unit.error
    failed_rows = first.table[first.table.status == "failed"]
    assert len(failed_rows) == 2 * len(failed) and failed_rows.error.str.contains("CANCELLED").all()

    second = api.run(config, progress=False)
    assert second.stats["units_cached"] == 8 - len(failed) and second.stats["codec_calls"] == len(failed)
    assert second.stats["units_failed"] == 0 and set(second.table.status) == {"ok"}
    assert len(second.table) == 8 * 2
    _computed_once(tmp_path / "run", log, units=8, killed_in_flight=1)
    assert [s.state for s in status.unit_states(tmp_path / "run")] == ["done"] * 8


@pytest.mark.slurm
@pytest.mark.slow
def test_sigkilled_job_is_retried_in_the_same_run(tmp_path, slurm_cluster, monkeypatch, job_path):  # noqa: F811
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CODEC_LOG", str(log))
    monkeypatch.setattr(api, "execute_unit", execute_toy_unit)
    killed: dict = {}
    watcher = _kill_mid_job(tmp_path / "run", "sigkill", killed)
    result = api.run(_toy_config(tmp_path, retries=1, units=6, units_per_job=3, sleep_s=1.0), progress=False)
    watcher.join()
    assert killed, "the watcher found no job mid-way"
    assert result.stats["units_failed"] == 0 and set(result.table.status) == {"ok"} and len(result.table) == 12
    jobs = read_jobs(tmp_path / "run" / "slurm")
    assert len(jobs) == 3  # two jobs, then one retry job holding only the killed job's unfinished units
    retried = set(jobs[-1]["units"])
    assert retried < set(killed["units"])
    _computed_once(tmp_path / "run", log, units=6, killed_in_flight=1)


DRIVER = """
import json, sys
sys.path.insert(0, {tests!r})
import test_slurm
from codecbench.bench import api
api.execute_unit = test_slurm.execute_toy_unit
api.run(json.loads({raw!r}), progress=False)
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_rerun_after_a_driver_crash_waits_for_its_running_jobs(tmp_path, slurm_cluster, monkeypatch, job_path):  # noqa: F811
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CODEC_LOG", str(log))
    monkeypatch.setattr(api, "execute_unit", execute_toy_unit)
    config = _toy_config(tmp_path, retries=0, units=4, units_per_job=2, sleep_s=1.0)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(tests=str(TESTS_DIR), raw=json.dumps(config))])
    jobs_file = tmp_path / "run" / "slurm" / "jobs.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (jobs_file.is_file() and len(read_jobs(jobs_file.parent)) == 2):
        time.sleep(0.05)
    driver.kill()  # the driver dies; its two jobs go on
    driver.wait()
    assert len(read_jobs(jobs_file.parent)) == 2
    assert not list((tmp_path / "run" / "units").glob("*.json")), "the crash must land before any unit finished"
    result = api.run(config, progress=False)
    assert result.stats["units_failed"] == 0 and set(result.table.status) == {"ok"}
    assert len(read_jobs(jobs_file.parent)) == 2  # nothing resubmitted: the running jobs were waited for
    _computed_once(tmp_path / "run", log, units=4, killed_in_flight=0)
