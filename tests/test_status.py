"""codecbench status: unit states from plan.json, the store and Slurm's queue; failures recorded with their log."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from codecbench.bench import api, cli, slurm, status
from codecbench.bench.core.errors import ConfigError
from codecbench.bench.slurm import SlurmJobError
from codecbench.bench.store import RunStore
from toy_codecs import register_all

register_all()


def fake_unit(unit_id: str, codec: str = "opus", point: str = "bitrate_kbps=6", items: int = 2):
    refs = tuple(SimpleNamespace(item_id=f"clip{i}#0") for i in range(items))
    return SimpleNamespace(unit_id=unit_id, codec=codec, point=SimpleNamespace(label=point), items=refs)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run of four units: one done, one failed on the cluster, one in a running Slurm job, one missing."""
    run = tmp_path / "run"
    status.write_plan(run, [fake_unit("u-done"), fake_unit("u-failed", "reference", ""), fake_unit("u-running"),
                            fake_unit("u-missing", items=1)])
    store = RunStore(run)
    store.write("u-done", {"status": "done", "rows": [], "stats": {}})
    error = SlurmJobError("slurm job 7_1 ended (CANCELLED) before finishing this unit", job_id="7_1",
                          log_path=str(run / "slurm" / "7_1_0_log.err"))
    assert status.record_outcome(store, "u-failed", error) is False
    (run / "slurm").mkdir()
    (run / "slurm" / slurm.JOBS_FILE).write_text(
        json.dumps({"job_id": "7_1", "units": ["u-failed"]}) + "\n"
        + json.dumps({"job_id": "7_2", "units": ["u-running", "u-done"]}) + "\n"
    )
    return run


@pytest.fixture
def queue(monkeypatch):
    """squeue as the cluster would answer: job 7_2 runs, 7_1 was cancelled."""
    asked = []

    def fake(job_ids, env=None):
        asked.append(sorted(job_ids))
        return {"7_1": "CANCELLED", "7_2": "RUNNING"}

    monkeypatch.setattr(slurm, "queue_states", fake)
    return asked


def test_states_from_plan_store_and_queue(run_dir, queue):
    states = {s.unit_id: s for s in status.unit_states(run_dir)}
    assert {u: s.state for u, s in states.items()} == {
        "u-done": "done", "u-failed": "failed", "u-running": "running", "u-missing": "missing"}
    assert states["u-running"].detail == "job 7_2 RUNNING"
    failed = states["u-failed"]
    assert failed.log_path == str(run_dir / "slurm" / "7_1_0_log.err") and failed.attempts == 1
    assert failed.error.startswith("SlurmJobError: slurm job 7_1 ended (CANCELLED)")
    assert (states["u-missing"].items, states["u-done"].items) == (1, 2)
    assert queue == [["7_1", "7_2"]]  # one squeue call for the unfinished units' latest jobs
    assert status.summary(list(states.values())) == {"units": 4, "done": 1, "running": 1, "failed": 1, "missing": 1}


def test_cli_prints_counts_and_failure_logs(run_dir, queue, capsys):
    assert cli.main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "4 units: 1 done, 1 running, 1 failed, 1 missing" in out
    assert "7_1_0_log.err" in out and "job 7_2 RUNNING" in out and "u-done" not in out
    assert cli.main(["status", str(run_dir), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["state"] for line in lines] == ["done", "failed", "running", "missing"]


def test_record_outcome_counts_attempts_and_keeps_done_units(tmp_path):
    store = RunStore(tmp_path)
    killed = SlurmJobError("job gone", job_id="3_0", log_path="/logs/3_0_0_log.err")
    assert status.record_outcome(store, "a", {"codec_calls": 1}) is True and store.read("a") is None
    assert status.record_outcome(store, "a", killed) is False
    assert status.record_outcome(store, "a", killed) is False
    record = store.read("a")
    assert (record["status"], record["attempts"], record["job_id"]) == ("failed", 2, "3_0")
    # execute_unit recorded its own failure (and counted the attempt): the log path is added, nothing else
    store.write("b", {"status": "failed", "error": "TypeError: bad option", "rows": [], "stats": {}, "attempts": 1})
    assert status.record_outcome(store, "b", {"failed": True, "error": "x", "log_path": "/logs/b.err"}) is False
    assert store.read("b")["error"] == "TypeError: bad option" and store.read("b")["attempts"] == 1
    assert store.read("b")["log_path"] == "/logs/b.err"
    # a unit that finished before its job died is done, whatever the job's fate
    store.write("c", {"status": "done", "rows": [], "stats": {}})
    assert status.record_outcome(store, "c", killed) is True and store.read("c")["status"] == "done"


def test_missing_plan_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist"):
        status.unit_states(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"plan.json is missing: not a codecbench run folder"):
        status.unit_states(tmp_path)
    assert cli.main(["status", str(tmp_path)]) == 2


def test_a_run_writes_its_plan_and_retries_failed_units(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    t = np.arange(16_000) / 16_000
    sf.write(str(data / "a.wav"), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16_000)
    raw = {"name": "s", "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"), "retries": 2,
           "dataset": {"path": str(data), "segment_s": 1.0}, "report": False, "metrics": ["si_sdr"],
           "codecs": [{"name": "toy_quant", "grid": {"bits": [4]}},  # a codec that cannot be built fails its unit
                      {"name": "toy_unbuildable", "grid": {"bits": [4]}}]}
    result = api.run(raw, progress=False)
    assert result.stats["units_failed"] == 1
    states = {s.codec: s for s in status.unit_states(tmp_path / "run")}
    assert states["toy_quant"].state == "done"
    broken = states["toy_unbuildable"]
    assert broken.state == "failed" and broken.attempts == 3  # first try + retries: 2
    assert "cannot be built" in broken.error
