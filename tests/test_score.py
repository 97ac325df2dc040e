"""Tests of ``codecbench score`` and its Python API (bench/score.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from codecbench.bench import cli, records
from codecbench.bench import score as score_mod
from codecbench.bench.core.errors import AudioInputError, ConfigError, MetricFailure, UnknownNameError
from codecbench.bench.metrics.base import ItemMetric, MetricInfo, MetricValue, SetMetric

SR = 48000


class PeakError(ItemMetric):
    """max |degraded - reference| in dB re full scale; fails on an all-zero degraded signal (hand-checkable)."""

    info = MetricInfo(name="peak_error", unit="dB", higher_is_better=False, needs_reference=True, level="item",
                      sample_rate_hz=None, version="1", citation="test")

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> MetricValue:
        if not np.any(degraded):
            raise MetricFailure("degraded is all zero")
        return MetricValue(20 * np.log10(np.max(np.abs(degraded - reference))), {"n_samples": reference.shape[-1]})


class MeanLength(SetMetric):
    """Mean item length in seconds over the set."""

    info = MetricInfo(name="mean_length", unit="s", higher_is_better=False, needs_reference=False, level="set",
                      sample_rate_hz=None, version="1", citation="test")

    def compute_set(self, references, degraded, sample_rate_hz):  # noqa: ANN001
        return MetricValue(np.mean([d.shape[-1] for d in degraded]) / sample_rate_hz, {"n": len(degraded)})


class Unavailable(PeakError):
    info = MetricInfo(name="needs_weights", unit="", higher_is_better=True, needs_reference=True, level="item",
                      sample_rate_hz=None, version="1", citation="test")

    def availability(self) -> str | None:
        return "weights file x.pt absent"


def _signal(rng: np.random.Generator, n: int = 12000) -> np.ndarray:
    return (0.2 * np.sin(2 * np.pi * 300 * np.arange(n) / SR) + 0.01 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture
def dirs(tmp_path: Path, rng: np.random.Generator) -> dict[str, Path]:
    """ref/ {a, b, c}; deg/: a = ref + 0.1 step (1 % short), b = 0.5 x ref, c = silence (a failing item)."""
    refs = {name: _signal(rng) for name in ("a", "b", "c")}
    (tmp_path / "ref").mkdir()
    (tmp_path / "deg").mkdir()
    for name, x in refs.items():
        sf.write(str(tmp_path / "ref" / f"{name}.wav"), x, SR, subtype="FLOAT")
    sf.write(str(tmp_path / "deg" / "a.wav"), (refs["a"] + 0.1)[:-120], SR, subtype="FLOAT")
    sf.write(str(tmp_path / "deg" / "b.flac"), 0.5 * refs["b"], SR, subtype="PCM_24")
    sf.write(str(tmp_path / "deg" / "c.wav"), np.zeros(12000, np.float32), SR, subtype="FLOAT")
    (tmp_path / "deg" / "codecbench.yaml").write_text("codec: Toy\nbitrate_kbps: 0.75\n")
    return {"ref": tmp_path / "ref", "deg": tmp_path / "deg", "refs": refs, "root": tmp_path}


def test_score_long_table_values_and_alignment(dirs: dict) -> None:
    table = score_mod.score(dirs["ref"], dirs["deg"], metrics=[PeakError(), MeanLength()])
    items = table[table["level"] == "item"].set_index("item_id")
    assert list(items.index) == ["a", "b", "c"]
    # a: the decoded file is 120 samples short; the default length policy trims both, so the error is the
    # constant 0.1 offset alone
    assert items.loc["a", "value"] == pytest.approx(20 * np.log10(0.1), abs=1e-5)
    assert items.loc["a", "length_policy"] == "trim" and items.loc["a", "length_trimmed_s"] == pytest.approx(120 / SR)
    assert items.loc["a", "lag_decision"] == "off" and items.loc["a", "lag_samples"] == 0
    assert items.loc["a", "input_sample_rate_hz"] == SR and not items.loc["a", "input_truncation_suspected"]
    b_expected = 20 * np.log10(np.max(np.abs(0.5 * dirs["refs"]["b"] - dirs["refs"]["b"])))
    assert items.loc["b", "value"] == pytest.approx(b_expected, abs=1e-3)  # PCM_24 quantisation
    assert items.loc["c", "status"] == "failed" and np.isnan(items.loc["c", "value"])
    assert items.loc["c", "error"] == "degraded is all zero"
    reader = {i: json.loads(items.loc[i, "extras_processing"]) for i in items.index}  # what the reader did
    assert reader["a"]["padded_samples"] == 120 and reader["b"]["sample_format"] == "PCM_24"
    assert reader["a"]["alignment"] == "padded 120; FLOAT"
    assert json.loads(items.loc["a", "extras"]) == {"n_samples": 12000 - 120}
    assert set(items["value_column"]) == {"peak_error_db"} and set(items["unit"]) == {"dB"}
    assert set(items["bitrate_kbps"]) == {0.75} and items["rate_source"].str.contains("not measured").all()
    assert set(items["codec"]) == {"Toy"} and set(items["point"]) == {"condition=deg"}
    assert list(table.columns) == list(records.COLUMNS)  # the schema of `run`
    set_row = table[table["level"] == "set"].iloc[0]
    assert set_row["value_column"] == "mean_length_s" and set_row["value"] == pytest.approx((3 * 12000 - 120) / 3 / SR)


def test_pad_policy_keeps_the_padded_samples(dirs: dict) -> None:
    table = score_mod.score(dirs["ref"], dirs["deg"], metrics=[PeakError()], length_policy="pad")
    items = table[table["level"] == "item"].set_index("item_id")
    # a: constant 0.1 offset except the 120 padded samples, where the error is |ref|: max of the two
    a_ref = dirs["refs"]["a"]
    expected_a = 20 * np.log10(max(np.max(np.abs((a_ref[:-120] + 0.1) - a_ref[:-120])), np.max(np.abs(a_ref[-120:]))))
    assert items.loc["a", "value"] == pytest.approx(expected_a, abs=1e-5)
    assert items.loc["a", "length_policy"] == "pad" and items.loc["a", "length_padded_s"] == pytest.approx(120 / SR)
    with pytest.raises(ConfigError, match="--length-policy"):
        score_mod.score(dirs["ref"], dirs["deg"], metrics=[PeakError()], length_policy="stretch")


def test_wide_and_summary(dirs: dict) -> None:
    table = score_mod.score(dirs["ref"], dirs["deg"], metrics=[PeakError(), MeanLength()])
    wide = score_mod.wide(table).set_index("item_id")
    assert "peak_error_db" in wide and "peak_error_db_error" in wide and "mean_length_s" not in wide
    assert wide.loc["c", "peak_error_db_error"] == "degraded is all zero" and wide.loc["a", "peak_error_db_error"] == ""
    stats = score_mod.summary(table).set_index("value_column")
    ok = table[(table["metric"] == "peak_error") & (table["status"] == "ok")]["value"]
    assert stats.loc["peak_error_db", "mean"] == pytest.approx(ok.mean())
    assert (stats.loc["peak_error_db", "n_ok"], stats.loc["peak_error_db", "n_failed"]) == (2, 1)
    assert stats.loc["peak_error_db", "ci_low"] <= ok.mean() <= stats.loc["peak_error_db", "ci_high"]


def test_unavailable_metric_fails_every_item_with_its_reason(dirs: dict) -> None:
    table = score_mod.score(dirs["ref"], dirs["deg"], metrics=[Unavailable()])
    assert (table["status"] == "failed").all()
    assert (table["error"] == "unavailable: weights file x.pt absent").all()


def test_registry_metric_matches_a_direct_call(dirs: dict) -> None:
    from codecbench.bench.metrics import registry
    from codecbench.codecs.precomputed import read_pairs

    table = score_mod.score(dirs["ref"], dirs["deg"], metrics=["si_sdr"])
    metric = registry.create("si_sdr")
    for item in read_pairs(dirs["ref"], dirs["deg"]).items:
        row = table[table["item_id"] == item.item].iloc[0]
        keep = item.reference.shape[-1] - item.decoded_record.padded_samples  # the default policy trims
        try:
            expected = metric.score(item.reference[:, :keep], item.decoded[:, :keep], SR).value
        except MetricFailure as failure:
            assert row["status"] == "failed" and row["error"] == str(failure)
            continue
        assert row["value_column"] == "si_sdr_db" and row["value"] == pytest.approx(expected)


def test_bad_input(dirs: dict) -> None:
    with pytest.raises(UnknownNameError, match="unknown metric 'si_sdrr'.*Did you mean 'si_sdr'"):
        score_mod.score(dirs["ref"], dirs["deg"], metrics=["si_sdrr"])
    (dirs["deg"] / "b.flac").unlink()
    with pytest.raises(AudioInputError, match=r"1 reference file\(s\) have no decoded file: b\.wav"):
        score_mod.score(dirs["ref"], dirs["deg"], metrics=[PeakError()])
    with pytest.raises(ConfigError, match="unknown suffix '.txt'"):
        score_mod.write(pd.DataFrame({"x": [1]}), dirs["root"] / "out.txt")
    with pytest.raises(ConfigError, match="a metric is listed twice"):
        score_mod.score(dirs["ref"], dirs["deg"], metrics=[PeakError(), PeakError()])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_writes_the_table(dirs: dict, suffix: str, capsys: pytest.CaptureFixture) -> None:
    out = dirs["root"] / f"scores{suffix}"
    code = cli.main(["score", str(dirs["ref"]), str(dirs["deg"]), "--metrics", "si_sdr", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "per item" in printed and "si_sdr_db" in printed and "padded 120" in printed
    table = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(table["item_id"]) == ["a", "b", "c"] and set(table["value_column"]) == {"si_sdr_db"}
    wide_out = dirs["root"] / f"wide{suffix}"
    assert cli.main(["score", str(dirs["ref"]), str(dirs["deg"]), "--metrics", "si_sdr", "--wide",
                     "--out", str(wide_out)]) == 0
    wide = pd.read_csv(wide_out) if suffix == ".csv" else pd.read_parquet(wide_out)
    assert "si_sdr_db" in wide.columns and len(wide) == 3


def test_cli_bad_input_is_one_line_exit_2(dirs: dict, capsys: pytest.CaptureFixture) -> None:
    sf.write(str(dirs["deg"] / "a.wav"), dirs["refs"]["a"][:6000], SR, subtype="FLOAT")  # half the length
    code = cli.main(["score", str(dirs["ref"]), str(dirs["deg"]), "--metrics", "si_sdr"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("codecbench: error: ") and "a.wav: length 0.125 s" in err and "ratio 0.5000" in err
    assert cli.main(["score", str(dirs["ref"]), str(dirs["deg"]), "--tolerance", "0.2"]) == 2
    assert "outside [0, 0.05]" in capsys.readouterr().err


def test_spresso_demo_every_condition(shared_data: Path) -> None:
    """Every condition folder of spresso-demo against src (the 44.1 kHz headers read as 48 kHz)."""
    demo = shared_data / "spresso-demo"
    if not demo.is_dir():
        pytest.skip("spresso-demo absent")
    conditions = sorted(p for p in demo.iterdir() if p.is_dir() and p.name != "src")
    assert len(conditions) == 11
    with pytest.raises(AudioInputError, match="stableaudio.*48000/44100"):
        score_mod.score(demo / "src", [demo / "audioAE", demo / "stableaudio"], metrics=[PeakError()])
    table = score_mod.score(demo / "src", conditions, metrics=[PeakError()], decoded_sample_rate_hz=48000)
    assert len(table) == 33 and (table["status"] == "ok").all()
    table["condition"] = table["point"].map(score_mod.condition)
    reader = table["extras_processing"].map(json.loads)
    table["padded_samples"] = reader.map(lambda r: r["padded_samples"])
    table["header_sample_rate_hz"] = reader.map(lambda r: r["header_sample_rate_hz"])
    padded = table.groupby("condition")["padded_samples"].max()
    assert {name: padded[name] for name in ("audioAE", "stableaudio", "music2latent")} == {
        "audioAE": 2041, "stableaudio": 2041, "music2latent": 2041}
    assert (padded.drop(["audioAE", "stableaudio", "music2latent"]) == 0).all()
    headers = table.groupby("condition")["header_sample_rate_hz"].first()
    assert headers["stableaudio"] == 44100 and headers["spresso25hz"] == 48000
    # independent path: soundfile read, zero-pad by hand, same metric
    row = table[(table["condition"] == "audioAE")].iloc[0]
    ref, _ = sf.read(row["clip_path"], dtype="float32")
    deg, _ = sf.read(json.loads(row["extras_processing"])["decoded_path"], dtype="float32")
    expected = PeakError().score(ref[None], np.pad(deg, (0, 2041))[None], SR).value
    assert row["value"] == pytest.approx(expected, abs=1e-6)


def test_set_metric_marked_unreliable_keeps_its_status(dirs: dict) -> None:
    class Extrapolated(SetMetric):
        info = MetricInfo(name="extrapolated", unit="", higher_is_better=False, needs_reference=True, level="set",
                          sample_rate_hz=None, version="1", citation="test")

        def compute_set(self, references, degraded, sample_rate_hz):
            return MetricValue(-0.5, {"status": "unreliable", "status_reason": "negative extrapolation -0.5"})

    table = score_mod.score(dirs["ref"], dirs["deg"], metrics=[Extrapolated()])
    row = table[table["metric"] == "extrapolated"].iloc[0]
    assert (row["status"], row["error"], row["value"]) == ("unreliable", "negative extrapolation -0.5", -0.5)


def test_cli_piped_shows_progress_full_names_and_records_alignment(tmp_path: Path) -> None:
    import subprocess
    import sys

    rng = np.random.default_rng(5)
    ref_dir, deg_a, deg_b = tmp_path / "ref", tmp_path / "cond_a", tmp_path / "cond_b"
    long_name = "BBC_LAION_Typewriter_ClosePerspectivemediumtyping14641"
    for folder in (ref_dir, deg_a, deg_b):
        folder.mkdir()
    for name in (long_name, "short"):
        x = rng.standard_normal(SR).astype(np.float32) * 0.1
        sf.write(str(ref_dir / f"{name}.wav"), x, SR, subtype="FLOAT")
        y = np.concatenate([np.zeros(48, np.float32), x[:-48]]) + 0.01 * rng.standard_normal(SR).astype(np.float32)
        for folder in (deg_a, deg_b):  # the same output in both conditions of one codec: degenerate
            sf.write(str(folder / f"{name}.wav"), y, SR, subtype="FLOAT")
            (folder / "codecbench.yaml").write_text("codec: same\nbitrate_kbps: 1.0\n")
    out = tmp_path / "scores.csv"
    done = subprocess.run(
        [sys.executable, "-m", "codecbench.bench.cli", "score", str(ref_dir), str(deg_a), str(deg_b), "--metrics",
         "si_sdr", "--max-lag-ms", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert long_name in done.stdout  # not cut to the 80-column default of a pipe
    assert "codecbench score: scoring 1/2: cond_a (2 items)" in done.stderr
    table = pd.read_csv(out)
    assert set(table["lag_samples"]) == {48} and set(table["lag_decision"]) == {"accepted"}
    assert set(table["lag_scope"]) == {"condition"} and (table["value"] > 15).all()  # aligned: 20 dB noise floor
    assert set(table["degenerate"]) == {"degenerate: output does not depend on the operating point"}
    assert set(table["input_sample_rate_hz"]) == {SR} and not table["input_truncation_suspected"].any()
    assert not table["extras_processing"].map(lambda e: json.loads(e)["decoded_truncation_suspected"]).any()
    assert (out.stat().st_mode & 0o777) == ((ref_dir / "short.wav").stat().st_mode & 0o777)  # not 0600
    bad = subprocess.run([sys.executable, "-m", "codecbench.bench.cli", "score", str(ref_dir), str(deg_a),
                          "--max-lag-ms", "-3"], capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--max-lag-ms" in bad.stderr


def _two_conditions(tmp_path: Path, rng: np.random.Generator, seconds: float = 1.0) -> tuple[Path, list[Path]]:
    """ref/ with 2 clips; a codec declared in two folders at two rates (its operating points)."""
    n = int(seconds * SR)
    ref = tmp_path / "ref2"
    ref.mkdir()
    folders = [tmp_path / "toy-1k", tmp_path / "toy-3k"]
    for folder in folders:
        folder.mkdir()
    for name in ("x", "y"):
        x = _signal(rng, n)
        sf.write(str(ref / f"{name}.wav"), x, SR, subtype="FLOAT")
        for noise, folder in zip((0.05, 0.01), folders):
            sf.write(str(folder / f"{name}.wav"), x + noise * rng.standard_normal(n).astype(np.float32), SR,
                     subtype="FLOAT")
    for kbps, folder in zip((1.0, 3.0), folders):
        (folder / "codecbench.yaml").write_text(f"codec: toy\nbitrate_kbps: {kbps}\n")
    return ref, folders


def test_score_out_is_written_before_printing_pesq_wb(dirs: dict, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's crash: `score REF DEG --metrics pesq_wb` died in the printer (`pesq_wb_mos-lqo`) and wrote
    nothing. It prints and writes; and a printer fault can no longer lose the scores."""
    out = dirs["root"] / "pesq.parquet"
    code = cli.main(["score", str(dirs["ref"]), str(dirs["deg"]), "--metrics", "pesq_wb", "--out", str(out),
                     "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "pesq_wb_mos-lqo" in printed and f"wrote {out}" in printed
    table = pd.read_parquet(out)
    assert list(table.columns) == list(records.COLUMNS) and set(table["value_column"]) == {"pesq_wb_mos-lqo"}
    assert ((table["status"] == "ok") & np.isfinite(table["value"]) | (table["status"] == "failed")
            & (table["error"] != "")).all()

    def broken_printer(*args, **kwargs):
        raise RuntimeError("printer fault")

    monkeypatch.setattr(score_mod, "print_tables", broken_printer)
    again = dirs["root"] / "again.csv"
    with pytest.raises(RuntimeError, match="printer fault"):
        cli.main(["score", str(dirs["ref"]), str(dirs["deg"]), "--metrics", "si_sdr", "--out", str(again), "--quiet"])
    assert len(pd.read_csv(again)) == 3


def test_report_reads_a_score_output_folder(tmp_path: Path, rng: np.random.Generator) -> None:
    ref, folders = _two_conditions(tmp_path, rng)
    out = tmp_path / "scored"
    assert cli.main(["score", str(ref), *map(str, folders), "--metrics", "si_sdr,mel_distance", "--out-dir",
                     str(out), "--quiet"]) == 0
    table = pd.read_parquet(out / "results.parquet")
    assert list(table.columns) == list(records.COLUMNS)
    rates = table.groupby("point")["bitrate_kbps"].first().to_dict()
    assert rates == {"condition=toy-1k": 1.0, "condition=toy-3k": 3.0} and set(table["codec"]) == {"toy"}
    assert json.loads((out / "manifest.json").read_text())["kind"] == "score"
    assert cli.main(["report", str(out)]) == 0
    html = (out / "report" / "index.html").read_text()
    assert "toy" in html and "si_sdr" in html
    (tmp_path / "a-file").write_text("x")
    assert cli.main(["score", str(ref), str(folders[0]), "--out-dir", str(tmp_path / "a-file"), "--quiet"]) == 2


def test_mushra_build_accepts_a_scored_folder_set(tmp_path: Path, rng: np.random.Generator) -> None:
    ref, folders = _two_conditions(tmp_path, rng, seconds=2.0)
    out = tmp_path / "scored"
    assert cli.main(["score", str(ref), *map(str, folders), "--metrics", "si_sdr", "--out-dir", str(out),
                     "--quiet"]) == 0
    bundle = tmp_path / "bundle"
    assert cli.main(["mushra", "build", str(out), "--out", str(bundle), "--excerpt-s", "1.5"]) == 0
    described = json.loads((bundle / "bundle.json").read_text())
    text = json.dumps(described)
    assert "toy@condition=toy-1k" in text and "toy@condition=toy-3k" in text
    assert len(list((bundle / "audio").rglob("*.wav"))) >= 2 * (1 + 2 + 2)  # per item: ref, 2 anchors, 2 conditions
