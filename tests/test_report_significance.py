"""Paired comparisons: Wilcoxon p-values and Holm's correction by hand, matched points of the synthetic run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from codecbench.bench.core.stats import holm
from codecbench.bench.report.aggregate import add_system_columns, summarise
from codecbench.bench.report.significance import matched_points, paired_tests, wilcoxon_p
from test_report_fixtures import synthetic_rows


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    got = holm(np.array([0.01, 0.04, 0.03, np.nan, 0.005]))
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, np.nan, 0.02])
    assert holm(np.array([0.5, 0.9]))[1] == 1.0  # capped at 1
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\]"):
        holm(np.array([1.5]))


def test_wilcoxon_exact_p_values_by_hand():
    # n = 6, all positive: W = 0, p = 2 / 2^6. One negative of rank 6: W = 6, P(W <= 6) = 14 / 64, two-sided 28 / 64.
    assert wilcoxon_p(np.full(6, 3.0))[1] == pytest.approx(2 / 64)
    assert wilcoxon_p(np.array([1.0, 2, 3, 4, 5, -6]))[1] == pytest.approx(28 / 64)
    assert wilcoxon_p(np.zeros(4)) == (pytest.approx(np.nan, nan_ok=True), 1.0)


def _prepared(rows):
    ok = add_system_columns(pd.DataFrame(rows), several_runs=False)
    return ok, summarise(ok, n_resamples=200)


def test_matched_points_pair_equal_bitrates_only():
    ok, summary = _prepared([r for r in synthetic_rows() if r["status"] == "ok"])
    pairs = matched_points(summary)
    assert pairs == [
        (("synth", "neuralx", "n_q=2"), ("synth", "opus", "bitrate_kbps=3")),
        (("synth", "neuralx", "n_q=4"), ("synth", "opus", "bitrate_kbps=6")),
        (("synth", "neuralx", "n_q=8"), ("synth", "opus", "bitrate_kbps=12")),
    ]


def test_paired_tests_known_differences_and_holm():
    ok, summary = _prepared([r for r in synthetic_rows() if r["status"] == "ok"])
    tests = paired_tests(ok, summary, metrics=["si_sdr"], n_resamples=200)
    assert len(tests) == 3
    np.testing.assert_allclose(tests["mean_diff"], 3.0, atol=1e-12)  # neuralx is +3 dB at every matched rate
    np.testing.assert_allclose(tests["p_value"], 2 / 64)
    np.testing.assert_allclose(tests["p_holm"], 3 * 2 / 64)  # 0.094: not significant after Holm
    assert not tests["significant"].any() and (tests["better"] == "").all()


def test_significant_with_more_items_names_the_better_system():
    rows = []
    for r in synthetic_rows():  # ten items instead of six: p = 2 / 2^10, Holm x3 = 0.0059
        if r["status"] == "ok" and r["metric"] == "mel_distance" and r["codec"] in ("opus", "neuralx"):
            for k in range(10):
                rows.append({**r, "item_id": f"{r['item_id']}-{k}", "value": r["value"] + 0.01 * k})
    ok, summary = _prepared(rows)
    tests = paired_tests(ok, summary, n_resamples=200)
    assert tests["n"].tolist() == [60, 60, 60]  # 6 items x 10 copies, paired by item id
    assert tests["significant"].all()
    assert (tests["better"] == "neuralx (random init)").all()  # lower mel distance is better
