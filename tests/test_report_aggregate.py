"""Per-point summaries: exact means, CIs equal to bench.stats' bootstrap, failures counted, set rows without CI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from codecbench.bench.core.stats import bootstrap_ci
from codecbench.bench.report.aggregate import add_system_columns, rate_of, summarise
from test_report_fixtures import ITEM_OFFSETS_DB, synthetic_rows


@pytest.fixture(scope="module")
def tables():
    table = add_system_columns(pd.DataFrame(synthetic_rows()), several_runs=False)
    ok, failed = table[table["status"] == "ok"], table[table["status"] == "failed"]
    return ok, failed, summarise(ok, failed, n_resamples=500)


def _row(summary, codec, point, metric):
    sel = summary[(summary["codec"] == codec) & (summary["point"] == point) & (summary["metric"] == metric)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_means_and_cis(tables):
    _, _, summary = tables
    r = _row(summary, "opus", "bitrate_kbps=6", "si_sdr")
    assert r["mean"] == pytest.approx(10 * np.log10(6.0), abs=1e-12)
    ci = bootstrap_ci(10 * np.log10(6.0) + ITEM_OFFSETS_DB, n_resamples=500)
    assert (r["ci_low"], r["ci_high"], r["n"]) == (pytest.approx(ci.low), pytest.approx(ci.high), 6)
    assert r["bitrate_kbps"] == 6.0 and rate_of(r) == 6.0


def test_failed_items_are_excluded_and_counted(tables):
    _, _, summary = tables
    r = _row(summary, "neuralx", "n_q=1", "si_sdr")
    assert r["n"] == 5 and r["n_failed"] == 1
    assert r["mean"] == pytest.approx(10 * np.log10(1.5) + 3, abs=1e-12)  # the failed item had offset 0
    assert r["system"] == "neuralx (random init)" and r["random_init"]


def test_set_level_rows_have_no_ci_and_continuous_rate_is_compression_ratio(tables):
    _, _, summary = tables
    r = _row(summary, "latent", "t=8", "fad")
    assert r["mean"] == pytest.approx(1 / 12.5) and np.isnan(r["ci_low"]) and r["level"] == "set"
    assert r["group"] == "continuous" and rate_of(r) == 64.0
    assert _row(summary, "lowpass", "cutoff_hz=3500", "si_sdr")["group"] == "anchor"


def test_several_runs_label_systems_with_the_run():
    table = add_system_columns(pd.DataFrame(synthetic_rows("v2")), several_runs=True)
    assert "opus [v2]" in set(table["system"]) and "neuralx [v2] (random init)" in set(table["system"])


def test_set_metric_ci_comes_from_its_extras():
    import json

    rows = pd.DataFrame(synthetic_rows())
    fad = (rows["metric"] == "fad") & (rows["codec"] == "opus")
    rows.loc[fad, "extras"] = [json.dumps({"ci_low": v * 0.9, "ci_high": v * 1.2}) for v in rows.loc[fad, "value"]]
    table = add_system_columns(rows, several_runs=False)
    summary = summarise(table[table["status"] == "ok"], n_resamples=100)
    r = _row(summary, "opus", "bitrate_kbps=6", "fad")
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(0.9 / 6), pytest.approx(1.2 / 6))
    assert np.isnan(_row(summary, "latent", "t=8", "fad")["ci_low"])  # no CI computed: NaN, not invented
