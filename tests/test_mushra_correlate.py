"""Metric validity (`codecbench mushra correlate`): correlations against scipy, the join, the report, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from codecbench.listening_test import correlate as cr
from scipy import stats

NS_MAP = ["Proposed 1.38=prop_13", "Proposed 1.38 16kHz=prop_13_16k", "Proposed 5.51=prop_55",
          "Proposed 5.51 16kHz=prop_55_16k", "Lyra 3=lyra_32", "Lyra 6=lyra_6", "AudioDec=audiodec_8"]


# ---------------------------------------------------------------------------------------------------------------
# The correlation functions against scipy
# ---------------------------------------------------------------------------------------------------------------


def test_correlations_equal_scipy_with_ties(rng):
    x = rng.integers(0, 6, size=25).astype(float)  # many ties, as grades have
    y = np.stack([x + rng.normal(0, 2, 25), rng.integers(0, 4, 25).astype(float), -x])
    for k in range(3):
        assert cr.pearson(x, y)[k] == pytest.approx(stats.pearsonr(x, y[k]).statistic, abs=1e-12)
        assert cr.spearman(x, y)[k] == pytest.approx(stats.spearmanr(x, y[k]).statistic, abs=1e-12)
        assert cr.kendall(x, y)[k] == pytest.approx(stats.kendalltau(x, y[k]).statistic, abs=1e-12)
    assert cr.kendall(x, y)[2] == pytest.approx(-1.0)


def test_constant_input_is_undefined_not_zero():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([[5.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 5.0]])
    assert np.isnan(cr.pearson(x, y)[0]) and np.isnan(cr.kendall(x, y)[0])
    assert cr.pearson(x, y)[1] == pytest.approx(stats.pearsonr(x, y[1]).statistic)


def test_pairwise_accuracy_hand_computed():
    # systems graded 10 < 20 < 30 = 30: 5 pairs with a grade difference (the 30/30 pair is left out)
    x = np.array([10.0, 20.0, 30.0, 30.0])
    y = np.array([[1.0, 2.0, 3.0, 4.0],  # all 5 right
                  [1.0, 3.0, 2.0, 9.0],  # (2,3) wrong: 4 of 5
                  [1.0, 1.0, 3.0, 3.0]])  # (1,2) tied: 4.5 of 5
    np.testing.assert_allclose(cr.pairwise_accuracy(x, y), [1.0, 0.8, 0.9])


# ---------------------------------------------------------------------------------------------------------------
# Synthetic test with known truth
# ---------------------------------------------------------------------------------------------------------------


def _synthetic(tmp_path, seed=0):
    """6 systems of known quality, 5 items, 8 assessors; metrics: good (higher), good_low (lower), reversed."""
    rng = np.random.default_rng(seed)
    quality = {"sys_a": 20, "sys_b": 35, "sys_c": 50, "sys_d": 62, "sys_e": 75, "sys_f": 88}
    items = [f"clip{i}#0" for i in range(5)]
    rows = []
    for p in range(8):
        for item in items:
            rows.append((f"p{p}", item, "reference", 100.0))
            rows.append((f"p{p}", item, "lowpass_7k", 40.0))
            for name, q in quality.items():
                rows.append((f"p{p}", item, name, float(np.clip(q + rng.normal(0, 8), 0, 100))))
    ratings = pd.DataFrame(rows, columns=["participant_id", "item_id", "condition", "score"])
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    scores = []
    for name, q in quality.items():
        for item in items:
            for metric, column, value, higher in (
                ("good", "good_db", q / 5 + rng.normal(0, 1), True),
                ("good_low", "good_low", 10 - q / 10 + rng.normal(0, 0.5), False),
                ("reversed", "reversed", -q + rng.normal(0, 5), True),
            ):
                scores.append({"condition": name, "codec": name, "item_id": item, "level": "item",
                               "metric": metric, "value_column": column, "unit": "dB" if metric == "good" else "-",
                               "higher_is_better": higher, "value": value, "status": "ok"})
        scores.append({"condition": name, "codec": name, "item_id": "", "level": "set", "metric": "fad_logmel",
                       "value_column": "fad_logmel", "unit": "-", "higher_is_better": False, "value": 1.0,
                       "status": "ok"})
    pd.DataFrame(scores).to_csv(tmp_path / "scores.csv", index=False)
    return tmp_path / "ratings.csv", tmp_path / "scores.csv"


def test_known_truth_report(tmp_path):
    ratings, scores = _synthetic(tmp_path)
    out = tmp_path / "out"
    result = cr.correlate(ratings, scores, out, n_resamples=300)
    table = result.table.set_index("metric")
    assert table.loc["good", "system_spearman"] == pytest.approx(1.0)
    assert table.loc["good_low", "system_spearman"] == pytest.approx(1.0)  # lower is better: oriented
    assert table.loc["reversed", "system_spearman"] == pytest.approx(-1.0)
    assert table.loc["good", "pairwise_accuracy"] == pytest.approx(1.0)
    assert table.loc["reversed", "pairwise_accuracy"] == pytest.approx(0.0)
    assert list(result.table["metric"])[-1] == "reversed"  # sorted by system Spearman
    for name in cr.STATISTICS:
        row = table.loc["good"]
        assert row[f"{name}_ci_low"] <= row[name] + 1e-12 <= row[f"{name}_ci_high"] + 2e-12
    # the written tables: point estimates equal scipy on the written means
    systems = pd.read_csv(out / "systems.csv")
    stimuli = pd.read_csv(out / "stimuli.csv")
    assert len(systems) == 6 and len(stimuli) == 30
    assert table.loc["good", "system_pearson"] == pytest.approx(
        stats.pearsonr(systems["mean_grade"], systems["good_db"]).statistic, abs=1e-12)
    assert table.loc["good_low", "stimulus_kendall"] == pytest.approx(
        stats.kendalltau(stimuli["mean_grade"], -stimuli["good_low"]).statistic, abs=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["set_metrics_skipped"] == ["fad_logmel"]
    assert summary["rated_conditions_without_scores"] == []
    assert summary["assessors_after"] == 8
    for name in ("table.md", "table.tex", "correlations.csv", "screening.csv", "plots/correlation_good.png"):
        assert (out / name).is_file(), name
    assert (out / "table.md").read_text().splitlines()[2].startswith("| good_db | higher | 1.00")


def test_bootstrap_is_seeded_and_screening_applies(tmp_path):
    ratings, scores = _synthetic(tmp_path)
    frame = pd.read_csv(ratings, dtype=str)
    bad = (frame["participant_id"] == "p0") & (frame["condition"] == "reference")
    frame.loc[bad, "score"] = "50"  # p0 grades the hidden reference below 90 on every item: excluded
    frame.to_csv(ratings, index=False)
    a = cr.correlate(ratings, scores, tmp_path / "a", n_resamples=100, seed=3)
    b = cr.correlate(ratings, scores, tmp_path / "b", n_resamples=100, seed=3)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.screening.excluded == ("p0",)
    assert "p0" not in a.joined.assessors and len(a.joined.assessors) == 7


def test_results_table_and_condition_map(tmp_path):
    ratings, scores = _synthetic(tmp_path)
    table = pd.read_csv(scores)
    table = table.drop(columns=["condition"]).assign(codec="toy", point=[f"q={c[-1]}" for c in table["codec"]])
    table.to_parquet(tmp_path / "results.parquet")
    mapping = [f"sys_{c}=toy@q={c}" for c in "abcdef"]
    result = cr.correlate(ratings, tmp_path / "results.parquet", tmp_path / "out", condition_map=mapping,
                          n_resamples=50, metrics=["good"])
    assert result.joined.scored == [f"toy@q={c}" for c in "abcdef"]
    assert result.table["system_spearman"].iloc[0] == pytest.approx(1.0)


def test_errors_name_the_problem(tmp_path):
    ratings, scores = _synthetic(tmp_path)
    external = pd.read_csv(ratings).rename(columns={"score": "rating", "item_id": "signal"})
    external.to_csv(tmp_path / "external.csv", index=False)
    with pytest.raises(cr.CorrelateError, match="--item-col"):
        cr.correlate(tmp_path / "external.csv", scores, tmp_path / "o")
    with pytest.raises(cr.CorrelateError, match=r"no column 'grade' for the rating \(--rating-col\)"):
        cr.correlate(tmp_path / "external.csv", scores, tmp_path / "o", item_col="signal", rating_col="grade")
    with pytest.raises(cr.CorrelateError, match="not in the scores"):
        cr.correlate(ratings, scores, tmp_path / "o", condition_map=["sys_a=nope"])
    with pytest.raises(cr.CorrelateError, match="expected RATED_CONDITION=SCORED_CONDITION"):
        cr.parse_condition_map(["sys_a"])
    wide = pd.read_csv(scores)[["condition", "item_id"]]
    wide.to_csv(tmp_path / "wide.csv", index=False)
    with pytest.raises(cr.CorrelateError, match="without --wide"):
        cr.correlate(ratings, tmp_path / "wide.csv", tmp_path / "o")
    with pytest.raises(cr.CorrelateError, match=r"no item-level values for metric\(s\) \['pesq'\]"):
        cr.correlate(ratings, scores, tmp_path / "o", metrics=["pesq"])


def test_cli_external_columns_and_one_line_error(tmp_path, capsys):
    from codecbench.bench.cli import main

    ratings, scores = _synthetic(tmp_path)
    external = pd.read_csv(ratings).rename(columns={"score": "rating", "item_id": "signal", "participant_id": "who"})
    external.to_csv(tmp_path / "external.csv", index=False)
    code = main(["mushra", "correlate", str(tmp_path / "external.csv"), str(scores), "--out", str(tmp_path / "o"),
                 "--item-col", "signal", "--assessor-col", "who", "--rating-col", "rating", "--n-resamples", "50"])
    assert code == 0
    assert "| good_db | higher | 1.00" in capsys.readouterr().out
    code = main(["mushra", "correlate", str(tmp_path / "missing.csv"), str(scores), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.csv: file does not exist" in err[0]


# ---------------------------------------------------------------------------------------------------------------
# Real ratings: neural-speech-mushra (7 neural speech codecs), scored with `codecbench score`
# ---------------------------------------------------------------------------------------------------------------


def test_neural_speech_mushra_against_scipy(shared_data, tmp_path):
    from codecbench.bench.score import condition, score

    root = shared_data / "listening-tests" / "neural-speech-mushra"
    if not (root / "ratings.csv").is_file():
        pytest.skip("neural-speech-mushra absent from the shared data")
    systems = [m.split("=")[1] for m in NS_MAP]
    for signal in sorted(p.name for p in (root / "audio").iterdir() if p.is_dir()):
        for name in ["ref", *systems]:  # codecbench score pairs by file stem: one folder per system
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / f"{signal}.wav").symlink_to(root / "audio" / signal / f"{name}.wav")
    table = score(tmp_path / "ref", [tmp_path / s for s in systems], metrics=["si_sdr", "stft_distance"],
                  sample_rate_hz=24000)
    table.to_parquet(tmp_path / "scores.parquet")
    table["condition"] = table["point"].map(condition)  # the decoded folder's name
    result = cr.correlate(root / "ratings.csv", tmp_path / "scores.parquet", tmp_path / "out", condition_map=NS_MAP,
                          item_col="signal", rating_col="rating", reference="Reference", anchor="Anchor",
                          n_resamples=200)
    joined = result.joined
    assert (len(joined.systems), len(joined.items)) == (7, 6)
    assert joined.unmatched_rated == []
    # independent recomputation from the raw CSV with pandas and scipy.stats
    raw = pd.read_csv(root / "ratings.csv", dtype={"participant_id": str})
    raw = raw[raw["participant_id"].isin(result.screening.kept)]
    raw["scored"] = raw["condition"].map(dict(m.split("=") for m in NS_MAP))
    raw = raw.dropna(subset=["scored"])
    values = table[table["level"] == "item"].pivot_table(index=["condition", "item_id"], columns="metric",
                                                          values="value")
    stim = raw.groupby(["scored", "signal"])["rating"].mean().rename_axis(["condition", "item_id"]).to_frame()
    stim = stim.join(values)
    system = raw.groupby("scored")["rating"].mean().to_frame().join(values.groupby(level=0).mean())
    row = result.table.set_index("metric")
    for metric, sign in (("si_sdr", 1.0), ("stft_distance", -1.0)):
        assert row.loc[metric, "system_spearman"] == pytest.approx(
            stats.spearmanr(system["rating"], sign * system[metric]).statistic, abs=1e-12)
        assert row.loc[metric, "system_kendall"] == pytest.approx(
            stats.kendalltau(system["rating"], sign * system[metric]).statistic, abs=1e-12)
        assert row.loc[metric, "stimulus_pearson"] == pytest.approx(
            stats.pearsonr(stim["rating"], sign * stim[metric]).statistic, abs=1e-12)
        assert row.loc[metric, "stimulus_spearman"] == pytest.approx(
            stats.spearmanr(stim["rating"], sign * stim[metric]).statistic, abs=1e-12)
    # measured: SI-SDR orders these systems against the listeners, the STFT distance with them
    assert row.loc["si_sdr", "system_spearman"] < 0 < row.loc["stft_distance", "system_spearman"]
