"""Reliability: a cache that verifies what it serves, faults that leave a recoverable run.

Corruption experiments (truncate, flip bytes, swap valid files, delete) on item-metric entries, set-metric entries,
decoded records, decoded audio, prepared clips and unit records: after each, a rerun gives the table of the
undamaged run (0 silent changes). Plus concurrent writers, a read-only finished run, a full tmpfs and SIGKILL
points of `run` and `report`.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from codecbench.bench import api, results
from codecbench.bench.core import cache as cache_mod
from codecbench.bench.core.cache import Cache, make_key
from test_runner import VOLATILE, tone_folder
from toy_codecs import register_all

register_all()
KINDS = ["item_metric", "set_metric", "decoded_record", "decoded_audio", "clip", "unit_record"]
DAMAGES = ["truncate", "flip", "swap", "delete"]


def make_config(root: Path, data: Path) -> dict:
    return {
        "name": "rel", "output": str(root / "run"), "cache_dir": str(root / "cache"), "seed": 1,
        "dataset": {"path": str(data), "segment_s": 1.0},
        "codecs": [{"name": "toy_quant", "grid": {"bits": [3, 6]}}],
        "metrics": ["si_sdr", {"name": "kad_logmel", "options": {"bootstrap_resamples": 20}}],
        "shard_size": 2, "report": False,
    }


def stable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=VOLATILE).sort_values(["codec", "point", "level", "item_id", "metric"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One undamaged finished run (copied for each experiment) and its table."""
    root = tmp_path_factory.mktemp("base")
    data = tone_folder(root / "data", 3)
    result = api.run(make_config(root, data), progress=False)
    assert set(result.table.status) == {"ok"} and (result.table.level == "set").sum() == 2
    return root, data, stable(result.table)


def _files(root: Path, kind: str, table: pd.DataFrame) -> list[Path]:
    cache = Cache(root / "cache")
    if kind == "unit_record":
        return sorted((root / "run" / "units").glob("*.json"))
    if kind == "clip":
        return sorted({cache.audio_path("clips", h) for h in table.clip_hash if h})
    keys = sorted({k for k in table.decoded_key if k})
    if kind == "decoded_audio":
        return [cache.audio_path("decoded", k) for k in keys]
    if kind == "decoded_record":
        return [cache.path("decoded", k, ".json") for k in keys]
    # metric entries: item entries are keyed by the decoded record's hash, set entries by the (clip, decode) pairs
    from codecbench.bench.config import MetricSpec
    from codecbench.bench.runner import item_metric_key, metric_instance

    if kind == "item_metric":
        metric = metric_instance(MetricSpec("si_sdr"), str(root / "cache"), "cpu")
        items = table[(table.level == "item") & (table.metric == "si_sdr")]
        return [cache.path("metrics", item_metric_key(metric.identity(), r.clip_hash,
                                                      cache.get_json("decoded", r.decoded_key), 48_000,
                                                      r.length_policy, r.lag_samples), ".json")
                for r in items.itertuples()]
    metric = metric_instance(MetricSpec("kad_logmel", {"bootstrap_resamples": 20}), str(root / "cache"), "cpu")
    out = []
    items = table[(table.level == "item") & (table.metric == "si_sdr")]
    for _, group in items.groupby("point"):
        group = group.sort_values("item_id")
        key = make_key(metric=metric.identity(), sample_rate_hz=48_000,
                       pairs=sorted(zip(group["clip_hash"], group["decoded_key"])))
        out.append(cache.path("metrics", key, ".json"))
    return out


def _damage(files: list[Path], how: str, rng: random.Random) -> None:
    target = files[0]
    assert target.is_file(), target
    data = target.read_bytes()
    if how == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        position = rng.randrange(len(data) // 2, len(data))
        target.write_bytes(data[:position] + bytes([data[position] ^ 0x04]) + data[position + 1:])
    elif how == "swap":  # two valid entries trade places (with their digest records when they have them)
        other = files[1]
        for a, b in ((target, other), (cache_mod.sidecar_path(target), cache_mod.sidecar_path(other))):
            if a.exists():
                tmp = a.with_name(a.name + ".swap")
                os.replace(a, tmp)
                os.replace(b, a)
                os.replace(tmp, b)
    else:
        target.unlink()


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_corruption_never_changes_a_result_silently(finished, tmp_path, kind, how, capsys):
    base_root, data, expected = finished
    root = tmp_path / "copy"
    shutil.copytree(base_root / "run", root / "run")
    shutil.copytree(base_root / "cache", root / "cache")
    files = _files(root, kind, expected)
    assert len(files) >= 2
    _damage(files, how, random.Random(f"{kind}-{how}"))
    if kind not in ("set_metric", "unit_record"):  # make the rerun read the damaged entry: units are redone
        for record in (root / "run" / "units").glob("*.json"):
            record.unlink()
    result = api.run(make_config(root, data), progress=False)
    pd.testing.assert_frame_equal(stable(result.table), expected)  # the same numbers, recomputed where damaged
    err = capsys.readouterr().err
    if how != "delete":
        assert err.count("failed verification") == 1  # said once per run


def test_metric_whose_inputs_vanished_is_a_failed_row(finished, tmp_path):
    base_root, data, expected = finished
    root = tmp_path / "copy"
    shutil.copytree(base_root / "run", root / "run")
    shutil.copytree(base_root / "cache", root / "cache")
    for path in _files(root, "set_metric", expected):
        path.unlink()  # the set metric must be recomputed ...
    for path in _files(root, "decoded_audio", expected)[:1]:
        path.unlink()  # ... and one of its inputs is gone (the unit stays done)
    table = api.run(make_config(root, data), progress=False).table
    sets = table[table.level == "set"]
    assert len(sets) == 2 and "failed" in set(sets.status)
    assert sets[sets.status == "failed"].error.str.contains("missing or failing verification").all()


def test_concurrent_writers_of_one_run_folder(tmp_path, finished):
    _, _, expected = finished
    run = tmp_path / "run"
    run.mkdir()
    errors: list[BaseException] = []
    reads = {"ok": 0, "broken": 0}
    stop = threading.Event()

    def writer():
        try:
            for _ in range(40):
                results.write(expected, run)
        except BaseException as error:  # pragma: no cover - the failure this test is about
            errors.append(error)

    def reader():
        while not stop.is_set():
            if (run / "results.parquet").exists():
                try:
                    assert len(pd.read_parquet(run / "results.parquet")) == len(expected)
                    reads["ok"] += 1
                except Exception:
                    reads["broken"] += 1

    threads = [threading.Thread(target=writer) for _ in range(3)] + [threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads[:3]:
        thread.join()
    stop.set()
    threads[3].join()
    assert errors == [] and reads["broken"] == 0 and reads["ok"] > 0
    assert not list(run.glob(".*.tmp"))  # no debris


def test_read_only_finished_run_writes_nothing(finished, tmp_path, monkeypatch):
    base_root, data, expected = finished
    root = tmp_path / "copy"
    shutil.copytree(base_root / "run", root / "run")
    shutil.copytree(base_root / "cache", root / "cache")
    api.run(make_config(root, data), progress=False)  # settle the copy (its config.yaml names the new paths)

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(args[0]) if args else "")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # every atomic write starts here
    monkeypatch.setattr(os, "replace", refuse)
    result = api.run(make_config(root, data), progress=False)
    pd.testing.assert_frame_equal(stable(result.table), expected)
    assert result.stats["codec_calls"] == 0 and result.stats["metric_computations"] == 0


def test_os_errors_are_one_line_exit_3(tmp_path, capsys, monkeypatch):
    from codecbench.bench import cli

    data = tone_folder(tmp_path / "data", 2)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(make_config(tmp_path, data)))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[0]) if args else "")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    code = cli.main(["run", str(config), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and err[0].startswith("codecbench: error: disk full"), err


def _cli(*argv: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    code = "import sys, toy_codecs; toy_codecs.register_all(); from codecbench.bench import cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_full_tmpfs_is_named_and_the_rerun_recovers(tmp_path, finished):
    _, _, expected = finished
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        data = tone_folder(tmp_path / "data", 3)
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump(make_config(mount, data)))
        proc = _cli("run", str(config), "--quiet")
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 3, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "disk full" in lines[0], err
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        proc = _cli("run", str(config), "--quiet")
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        same_data = ["clip_path"]  # the same clips, written to another folder
        pd.testing.assert_frame_equal(stable(results.read(mount / "run")).drop(columns=same_data),
                                      expected.drop(columns=same_data))
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.slow
def test_sigkill_points_of_run_and_report_recover(tmp_path, finished):
    _, _, expected = finished
    data = tone_folder(tmp_path / "data", 3)
    rng = random.Random(16)
    config = tmp_path / "c.yaml"
    raw = {**make_config(tmp_path, data), "report": True}
    config.write_text(yaml.safe_dump(raw))
    for _ in range(3):
        proc = _cli("run", str(config), "--quiet")
        time.sleep(rng.uniform(2.0, 12.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    proc = _cli("run", str(config), "--quiet")
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    same_data = ["clip_path"]  # the same clips, written to another folder
    pd.testing.assert_frame_equal(stable(results.read(tmp_path / "run")).drop(columns=same_data),
                                  expected.drop(columns=same_data))
    report = tmp_path / "run" / "report"
    stamp = json.loads((report / ".built-from").read_text())
    assert stamp["files"] and all((report / f).stat().st_size > 0 for f in stamp["files"])
    # a kill in the middle of `codecbench report`, then an emptied file: the next run rebuilds
    proc = _cli("report", str(tmp_path / "run"), "--format", "png", "--resamples", "50")
    time.sleep(rng.uniform(1.0, 4.0))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    (report / stamp["files"][0]).write_bytes(b"")
    proc = _cli("run", str(config), "--quiet")
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    stamp = json.loads((report / ".built-from").read_text())
    assert all((report / f).stat().st_size > 0 for f in stamp["files"])
    assert not list(tmp_path.glob("run/.report.*.building"))


def test_a_dataset_file_deleted_since_is_a_failed_row(tmp_path):
    data = tone_folder(tmp_path / "data", 3)
    raw = make_config(tmp_path, data)
    raw["metrics"] = ["si_sdr"]
    first = api.run(raw, progress=False).table
    gone = data / "clip01.wav"
    gone.unlink()
    table = api.run(raw, progress=False).table
    failed = table[table.status == "failed"]
    assert list(failed.clip_path) == [str(gone)] and failed.stage.tolist() == ["load"]
    assert "now missing" in failed.error.iloc[0]
    assert (table.status == "ok").sum() == (first.status == "ok").sum() * 2 // 3  # the other clips' rows stay
