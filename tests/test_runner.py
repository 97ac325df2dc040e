"""The runner: results table, caching (a rerun computes nothing), failures recorded, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from codecbench.bench import api, degenerate
from toy_codecs import register_all

register_all()
TESTS_DIR = Path(__file__).parent
VOLATILE = ["encode_rtf", "decode_rtf", "extras_processing"]  # measured timings differ run to run


def tone_folder(path: Path, count: int, seconds: float = 1.0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        t = np.arange(int(seconds * 48_000)) / 48_000
        audio = 0.4 * np.sin(2 * np.pi * (200 + 100 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(str(path / f"clip{i:02d}.wav"), audio.astype(np.float32), 48_000, subtype="FLOAT")
    return path


def config(tmp_path: Path, data: Path, **overrides) -> dict:
    raw = {
        "name": "t", "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"), "seed": 3,
        "dataset": {"path": str(data), "segment_s": 1.0},
        "codecs": [{"name": "toy_quant", "grid": {"bits": [3, 6]}}],
        "metrics": ["si_sdr", "mel_distance"], "shard_size": 2, "report": False,
    }
    raw.update(overrides)
    return raw


def test_table_rows_units_and_bitrate_from_codes(tmp_path):
    data = tone_folder(tmp_path / "data", 3)
    result = api.run(config(tmp_path, data), progress=False)
    table = result.table
    assert result.stats["units"] == 4  # 2 points x 2 shards (3 items, shard size 2)
    items = table[table.level == "item"]
    assert len(items) == 2 * 3 * 2 and set(items.status) == {"ok"}
    # 16 kHz x bits per sample, computed from the code stream the codec produced
    assert items.groupby("point").bitrate_kbps.unique().map(lambda v: v.tolist()).to_dict() == {
        "bits=3": [48.0], "bits=6": [96.0]}
    sdr = items[items.metric == "si_sdr"].groupby("point").value.mean()
    assert sdr["bits=6"] > sdr["bits=3"] + 5  # more bits, less noise (band above 8 kHz is lost)
    assert (result.run_dir / "results.parquet").is_file() and (result.run_dir / "results.csv").is_file()
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["versions"]["torch"].startswith("2.11")
    assert manifest["evaluation"]["resampler"].startswith("soxr")
    pd.testing.assert_frame_equal(pd.read_parquet(result.run_dir / "results.parquet"), table)


def test_rerun_makes_no_codec_call_and_no_metric_computation(tmp_path, monkeypatch):
    data = tone_folder(tmp_path / "data", 3)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CODEC_LOG", str(log))
    first = api.run(config(tmp_path, data), progress=False)
    calls = log.read_text().count("encode")
    assert calls == first.stats["codec_calls"] == 4
    second = api.run(config(tmp_path, data), progress=False)
    assert log.read_text().count("encode") == calls
    assert second.stats["codec_calls"] == 0 and second.stats["metric_computations"] == 0
    assert second.stats["units_cached"] == 4
    pd.testing.assert_frame_equal(first.table.drop(columns=VOLATILE), second.table.drop(columns=VOLATILE))
    # a new run folder with the same cache: units rerun, but decodes and metric values come from the cache
    third = api.run(config(tmp_path, data, output=str(tmp_path / "run2")), progress=False)
    assert log.read_text().count("encode") == calls and third.stats["metric_computations"] == 0


def test_failures_are_recorded_and_the_run_goes_on(tmp_path):
    data = tone_folder(tmp_path / "data", 2)
    (data / "broken.wav").write_bytes(b"not audio at all")
    raw = config(tmp_path, data, codecs=[{"name": "toy_quant", "grid": {"bits": [4]}}, {"name": "toy_broken"}])
    result = api.run(raw, progress=False)
    table = result.table
    load = table[table.stage == "load"]
    assert load.item_id.tolist() == ["broken#0"] and "unreadable or corrupt" in load.error.iloc[0]
    broken = table[table.codec == "toy_broken"]
    assert set(broken.status) == {"failed"} and set(broken.stage) == {"codec"}
    assert broken.error.str.contains("toy codec exploded").all()
    good = table[(table.codec == "toy_quant") & (table.level == "item")]
    assert len(good) == 4 and set(good.status) == {"ok"}
    assert "broken#0" in (result.run_dir / "failures.csv").read_text()


def test_rows_carry_input_and_pairing_records(tmp_path):
    data = tone_folder(tmp_path / "data", 1, seconds=1.5)  # 0.5 s beyond the 1-s segment: dropped, and said so
    sf.write(str(data / "stereo44.wav"), np.tile(np.sin(np.arange(44_100) / 7.0), (2, 1)).T.astype(np.float32) * 0.3,
             44_100, subtype="FLOAT")
    (data / "._clip00.wav").write_bytes((data / "clip00.wav").read_bytes())  # a macOS resource fork: not an item
    raw = config(tmp_path, data, codecs=[{"name": "toy_quant", "grid": {"bits": [6]}}], metrics=["si_sdr"],
                 alignment={"max_lag_ms": 20, "per": "item"})
    result = api.run(raw, progress=False)
    items = result.table[result.table.level == "item"].set_index("item_id")
    assert sorted(items.index) == ["clip00#0", "stereo44#0"]
    assert items.loc["clip00#0", "input_dropped_s"] == pytest.approx(0.5)
    assert items.loc["stereo44#0", "input_sample_rate_hz"] == 44_100
    assert items.loc["stereo44#0", "input_channels"] == 2 and items.loc["stereo44#0", "input_downmix"] != "none"
    assert items.loc["stereo44#0", "input_resampler"].startswith("soxr")
    # the codec's own record stays apart: it resampled 48 kHz -> 16 kHz, nothing about the input file
    processing = json.loads(items.loc["stereo44#0", "extras_processing"])
    assert processing["native_sample_rate_hz"] == 16_000 and "source_sample_rate_hz" not in processing
    assert set(items.length_policy) == {"trim"} and set(items.lag_scope) == {"item"}
    assert set(items.lag_samples) == {0.0} and items.lag_decision.str.len().gt(0).all()
    assert items.decoded_hash.str.len().gt(0).all() and set(items.degenerate) == {""}
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["inputs_skipped"] == [f"{data / '._clip00.wav'}: skipped (hidden file)"]
    assert manifest["config"]["alignment"] == {"max_lag_ms": 20.0, "per": "item"}
    # consistent file modes: the manifest is as readable as results.parquet
    mode = lambda p: (result.run_dir / p).stat().st_mode & 0o777  # noqa: E731
    assert mode("manifest.json") == mode("results.parquet") and mode("manifest.json") & 0o044


def test_a_codec_that_ignores_its_operating_point_is_flagged(tmp_path):
    data = tone_folder(tmp_path / "data", 2)
    raw = config(tmp_path, data, codecs=[{"name": "toy_blind", "grid": {"bits": [3, 6, 9]}},
                                         {"name": "toy_quant", "grid": {"bits": [3, 6]}}], metrics=["si_sdr"])
    result = api.run(raw, progress=False)
    flags = result.table.groupby(["codec", "point"]).degenerate.unique().map(list).to_dict()
    assert flags == {("toy_blind", f"bits={b}"): [degenerate.FLAG] for b in (3, 6, 9)} | {
        ("toy_quant", "bits=3"): [""], ("toy_quant", "bits=6"): [""]}
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["degenerate_points"] == [f"toy_blind bits={b}: {degenerate.FLAG}" for b in (3, 6, 9)]


KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from toy_codecs import register_all
    register_all()
    from codecbench.bench import api, degenerate
    import json
    raw = json.loads({raw!r})
    api.run(raw, progress=False)
""")


def _run_script(raw: dict, env: dict) -> subprocess.Popen:
    code = KILL_SCRIPT.format(tests=str(TESTS_DIR), raw=json.dumps(raw))
    return subprocess.Popen([sys.executable, "-c", code], env=env)


@pytest.mark.slow
def test_sigkill_mid_run_resumes_to_the_same_table(tmp_path):
    data = tone_folder(tmp_path / "data", 6, seconds=0.5)
    codecs = [{"name": "toy_quant", "options": {"sleep_s": 0.4}, "grid": {"bits": [3, 5, 7]}}]
    env = {**os.environ, "TOY_CODEC_LOG": str(tmp_path / "calls.log")}
    dataset = {"path": str(data), "segment_s": 0.5}
    killed = config(tmp_path, data, codecs=codecs, shard_size=1, dataset=dataset, output=str(tmp_path / "killed"))
    process = _run_script(killed, env)
    units = tmp_path / "killed" / "units"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(units.glob("*.json"))) < 4 and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(list(units.glob("*.json")))
    assert 4 <= done_before < 18, "the kill must land mid-run"
    resumed = api.run(killed, progress=False)
    assert resumed.stats["units_cached"] >= done_before
    # no unit's work was done twice: at most the one unit in flight at the kill repeats its codec call
    assert (tmp_path / "calls.log").read_text().count("encode") <= 18 + 1
    reference = api.run(config(tmp_path, data, codecs=codecs, shard_size=1, dataset=dataset, output=str(tmp_path / "straight"),
                               cache_dir=str(tmp_path / "cache2")), progress=False)
    pd.testing.assert_frame_equal(resumed.table.drop(columns=VOLATILE), reference.table.drop(columns=VOLATILE))


def test_entropy_coded_rate_fitted_on_a_separate_split(tmp_path):
    """Code-stream codecs get entropy_coded_kbps on the evaluation split only, from a model fitted on the fit split."""
    from codecbench.bench.core.cache import Cache
    from codecbench.bench.runner import load_code_streams
    from codecbench.codecs import entropy
    from codecbench.codecs.base import CodeBitstream

    data = tone_folder(tmp_path / "data", 4)
    result = api.run(config(tmp_path, data, codecs=[{"name": "toy_quant", "grid": {"bits": [6]}}],
                            metrics=["si_sdr"], entropy_fit_fraction=0.5), progress=False)
    items = result.table[result.table.level == "item"].sort_values("item_id")
    fit, coded = items.iloc[:2], items.iloc[2:]
    assert fit.entropy_coded_kbps.isna().all() and coded.entropy_coded_kbps.notna().all()
    # the same number by hand: fit the static model on the first two items' codes, code the others
    cache = Cache(tmp_path / "cache")
    streams = [load_code_streams(cache, key) for key in items.decoded_key]
    model = entropy.fit([CodeBitstream(16_000, 16_000, streams=s) for s in streams[:2]])
    expected = [entropy.coded_bits(model, CodeBitstream(16_000, 16_000, streams=s)) / 1.0 / 1000 for s in streams[2:]]
    np.testing.assert_allclose(coded.entropy_coded_kbps, expected)
    assert (coded.entropy_coded_kbps < coded.bitrate_kbps).all()  # tones with noise: fewer bits than 6 per sample
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["entropy_coding"]["points"]["toy_quant bits=6"]["fit_items"] == ["clip00#0", "clip01#0"]


def test_a_run_uses_its_weights_dir_without_touching_the_environment(tmp_path, monkeypatch):
    from codecbench.bench.core import weights

    monkeypatch.delenv("CODECBENCH_WEIGHTS", raising=False)
    data = tone_folder(tmp_path / "data", 1)
    result = api.run(config(tmp_path, data, metrics=["si_sdr"], weights_dir=str(tmp_path / "w")), progress=False)
    try:
        manifest = json.loads((result.run_dir / "manifest.json").read_text())
        assert manifest["weights"]["directory"] == str(tmp_path / "w")
        assert "CODECBENCH_WEIGHTS" not in os.environ  # library code sets no environment variable
        assert weights.weights_dir() == tmp_path / "w"
    finally:
        weights.use_directory(None)
