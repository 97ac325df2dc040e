"""The fast path of a finished run (bench/rerun.py): a rerun with nothing changed is answered from the run folder
without importing torch; anything changed, damaged or failed takes the full path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from codecbench.bench import api, rerun
from test_runner import VOLATILE, tone_folder


def _write_config(tmp_path: Path, data: Path, **overrides) -> Path:
    raw = {
        "name": "fast", "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"), "seed": 1,
        "dataset": {"path": str(data), "segment_s": 1.0},
        "codecs": [{"name": "opus", "grid": {"bitrate_kbps": [12]}}, {"name": "lowpass_3k5"}],
        "metrics": ["si_sdr", "mel_distance"], "report": False,
    }
    raw.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _fast(result) -> bool:
    """Whether the run was answered by the fast path (its manifest says so)."""
    return "rerun" in _manifest(result.run_dir)


def _stable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=VOLATILE).sort_values(["codec", "point", "level", "item_id", "metric"]) \
        .reset_index(drop=True)


@pytest.fixture
def finished(tmp_path):
    """A finished run from a config file, then its first rerun (the fast path)."""
    data = tone_folder(tmp_path / "data", 2)
    config = _write_config(tmp_path, data)
    first = api.run(str(config), progress=False)
    assert not _fast(first) and (first.run_dir / rerun.STAMP).is_file()
    return config, data, first


def test_rerun_is_answered_from_the_folder_with_the_same_table(finished):
    config, _, first = finished
    again = api.run(str(config), progress=False)
    assert _fast(again)
    stats = again.stats
    assert stats["units"] == first.stats["units"] == stats["units_cached"]
    assert stats["codec_calls"] == 0 and stats["metric_computations"] == 0 and stats["units_failed"] == 0
    pd.testing.assert_frame_equal(_stable(again.table), _stable(first.table))
    counts = _manifest(again.run_dir)["counts"]
    assert counts["codec_calls"] == 0 and counts["metric_computations"] == 0
    assert counts["units_cached"] == counts["units"] == first.stats["units"]
    assert api.run(str(config), progress=False, recheck=True).stats["units_cached"] == first.stats["units"]
    assert not _fast(api.run(str(config), progress=False, recheck=True))  # --recheck: the full path


def _damage_and_rerun(finished, damage) -> tuple[object, object]:
    config, data, first = finished
    damage(config, data, first.run_dir)
    after = api.run(str(config), progress=False)
    return first, after


@pytest.mark.parametrize("damage", [
    pytest.param(lambda config, data, run: config.write_text(config.read_text() + "# edited\n"), id="config-edited"),
    pytest.param(lambda config, data, run: os.utime(data / "clip00.wav", ns=(1, 1)), id="clip-touched"),
    pytest.param(lambda config, data, run: (run / "results.parquet").write_bytes(b"not parquet"), id="table-damaged"),
    pytest.param(lambda config, data, run: (run / "manifest.json").unlink(), id="manifest-deleted"),
    pytest.param(lambda config, data, run: sorted((run / "units").rglob("*.json"))[0].unlink(),
                 id="unit-record-deleted"),
    pytest.param(lambda config, data, run: os.environ.__setitem__("CODECBENCH_TEST_SWITCH", "1"), id="env-changed"),
])
def test_anything_changed_takes_the_full_path(finished, damage, monkeypatch):
    monkeypatch.delenv("CODECBENCH_TEST_SWITCH", raising=False)
    first, after = _damage_and_rerun(finished, damage)
    assert not _fast(after)
    pd.testing.assert_frame_equal(_stable(after.table), _stable(first.table))  # repaired, same numbers
    assert pd.read_parquet(after.run_dir / "results.parquet").shape == first.table.shape
    again = api.run(str(finished[0]), progress=False)
    assert _fast(again) and again.stats["codec_calls"] == 0  # the full path stamped the folder again


def test_a_deleted_unit_record_is_recomputed(finished):
    config, _, first = finished
    sorted((first.run_dir / "units").rglob("*.json"))[0].unlink()
    after = api.run(str(config), progress=False)
    assert not _fast(after)  # the unit ran again (its decodes and metric values come from the verified cache)
    assert after.stats["units_cached"] == first.stats["units"] - 1


def test_an_added_clip_and_a_weights_file_take_the_full_path(tmp_path):
    data = tone_folder(tmp_path / "data", 2)
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    config = _write_config(tmp_path, data, weights_dir=str(weights_dir))
    first = api.run(str(config), progress=False)
    assert _fast(api.run(str(config), progress=False))
    (weights_dir / "some-model.pt").write_bytes(b"weights")
    assert not _fast(api.run(str(config), progress=False))
    tone_folder(tmp_path / "more", 3)
    (tmp_path / "more" / "clip02.wav").rename(data / "clip02.wav")
    grown = api.run(str(config), progress=False)
    assert not _fast(grown) and grown.stats["items"] == first.stats["items"] + 1


def test_a_run_with_a_failed_input_leaves_no_stamp(tmp_path):
    data = tone_folder(tmp_path / "data", 2)
    (data / "broken.wav").write_bytes(b"RIFF not really a wav")
    config = _write_config(tmp_path, data)
    first = api.run(str(config), progress=False)
    assert first.stats["clips_failed"] == 1 and not (first.run_dir / rerun.STAMP).exists()
    assert not _fast(api.run(str(config), progress=False))


def test_a_mapping_config_always_takes_the_full_path(tmp_path):
    data = tone_folder(tmp_path / "data", 2)
    raw = yaml.safe_load(_write_config(tmp_path, data).read_text())
    api.run(raw, progress=False)
    assert not (tmp_path / "run" / rerun.STAMP).exists() and not _fast(api.run(raw, progress=False))


def test_a_deleted_report_file_is_rebuilt(tmp_path):
    data = tone_folder(tmp_path / "data", 2)
    config = _write_config(tmp_path, data, report=True)
    first = api.run(str(config), progress=False)
    assert _fast(api.run(str(config), progress=False))
    (first.run_dir / "report" / "index.html").unlink()
    rebuilt = api.run(str(config), progress=False)
    assert not _fast(rebuilt) and (first.run_dir / "report" / "index.html").stat().st_size > 0


def test_cli_rerun_imports_neither_torch_nor_a_codec(tmp_path):
    """Whole `codecbench run` processes: the second prints the same summary and never imports torch."""
    data = tone_folder(tmp_path / "data", 2)
    config = _write_config(tmp_path, data)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    first = subprocess.run([sys.executable, "-m", "codecbench.bench.cli", "run", str(config), "--quiet"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    probe = textwrap.dedent(f"""
        import sys
        from codecbench.bench.cli import main
        code = main(["run", {str(config)!r}, "--quiet"])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchaudio", "encodec", "dac", "av")
                       or m.startswith(("codecbench.codecs.registry", "codecbench.codecs.base")))
        print("HEAVY", heavy)
        sys.exit(code)
    """)
    second = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "HEAVY []" in second.stdout, second.stdout
    assert "0 codec calls, 0 metric computations" in second.stderr
    assert "rerun" in _manifest(tmp_path / "run")
    recheck = subprocess.run([sys.executable, "-m", "codecbench.bench.cli", "run", str(config), "--quiet",
                              "--recheck"], capture_output=True, text=True, env=env, timeout=300)
    assert recheck.returncode == 0 and "rerun" not in _manifest(tmp_path / "run")


def test_a_failed_row_leaves_no_stamp(finished):
    """A metric that could not score an item is a failed row of a done unit, retried by every full-path rerun:
    such a run must never be answered by the fast path."""
    from codecbench.bench import config as config_mod
    from codecbench.bench.records import RunStats

    config, _, first = finished
    cfg, asked = config_mod.load(config), rerun.request(str(config))
    rerun.forget(first.run_dir)
    assert not rerun.remember(asked, cfg, [], RunStats(), failed_rows=1)
    assert not (first.run_dir / rerun.STAMP).exists()
    assert rerun.remember(asked, cfg, [], RunStats(), failed_rows=0) and (first.run_dir / rerun.STAMP).is_file()
