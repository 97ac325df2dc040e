"""Tables: bold on the true best (direction respected), LaTeX booktabs and escaping, extrapolation marks, outliers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from codecbench.bench.report.aggregate import add_system_columns, summarise
from codecbench.bench.report.build import quality_at_targets
from codecbench.bench.report.tables import (
    digits_for,
    latex_escape,
    per_item_table,
    quality_at_table,
    summary_table,
    summary_wide,
    to_html,
    to_latex,
    to_markdown,
)
from test_report_fixtures import synthetic_rows


@pytest.fixture(scope="module")
def prepared():
    table = add_system_columns(pd.DataFrame(synthetic_rows()), several_runs=False)
    ok, failed = table[table["status"] == "ok"], table[table["status"] == "failed"]
    return ok, summarise(ok, failed, n_resamples=300)


def _bold_cells(table, column):
    j = table.columns.index(column)
    return [(row[0].text, row[1].text) for title, rows in table.blocks for row in rows if row[j].bold]


def test_bold_marks_the_true_best_per_direction(prepared):
    _, summary = prepared
    t = summary_table(summary, "discrete")
    assert t.columns[:4] == ("system", "point", "bitrate (kbps)", "frame rate (Hz)")
    assert _bold_cells(t, "si_sdr (dB) ↑") == [("opus", "bitrate_kbps=24")]  # 13.80 beats 13.79; reference not bold
    # lower is better: 0.083 at both opus 24 kbps and neuralx 12 kbps (tie at the printed precision)
    assert sorted(_bold_cells(t, "mel_distance ↓")) == [("neuralx (random init)", "n_q=8"), ("opus", "bitrate_kbps=24")]
    assert [title for title, _ in t.blocks] == ["Discrete codecs", "Anchors"]
    rates = [row[2].text for row in t.blocks[0][1]]
    assert rates == ["24", "12", "12", "6", "6", "3", "3", "1.5"]  # highest bitrate first, as the paper's Table 2


def test_continuous_table_has_compression_ratio(prepared):
    _, summary = prepared
    t = summary_table(summary, "continuous")
    assert t.columns[2] == "compression ratio"
    assert [row[2].text for row in t.blocks[0][1]] == ["32", "64", "128"]
    assert _bold_cells(t, "si_sdr (dB) ↑") == [("latent", "t=4")]


def test_latex_is_booktabs_with_arrows_ci_and_escapes(prepared):
    _, summary = prepared
    tex = to_latex(summary_table(summary, "discrete"), label="tab:x")
    for needle in (r"\toprule", r"\midrule", r"\bottomrule", r"si\_sdr (dB) $\uparrow$", r"mel\_distance $\downarrow$",
                   r"\textbf{13.80}{\scriptsize$\pm$0.", r"\label{tab:x}", r"\emph{Anchors}", "$^{f}$"):  # fmt: skip
        assert needle in tex
    assert latex_escape("a_b & 5% #1") == r"a\_b \& 5\% \#1"
    md = to_markdown(summary_table(summary, "discrete"))
    assert "**13.80 ± 0." in md and "| *Anchors* |" in md
    assert "<b>13.80 ± 0." in to_html(summary_table(summary, "discrete"))


def test_digits_follow_the_ci_width():
    assert digits_for(np.array([0.62]), np.array([10.0])) == 2
    assert digits_for(np.array([0.063]), np.array([0.1])) == 3
    assert digits_for(np.array([np.nan]), np.array([0.0417])) == 4  # three significant digits without a CI


def test_quality_at_table_marks_extrapolation(prepared):
    _, summary = prepared
    qa = quality_at_targets(summary, ["si_sdr"], [1.5, 4.5, 24.0], "pchip")
    opus = qa[qa["system"] == "opus"].set_index("target_kbps")
    assert opus.loc[1.5, "extrapolation"] and np.isnan(opus.loc[1.5, "value"])
    assert opus.loc[4.5, "value"] == pytest.approx(10 * np.log10(4.5), abs=0.05)
    md = to_markdown(quality_at_table(qa, "si_sdr"))
    assert "–†" in md and "not extrapolated" in md


def test_per_item_outlier_is_flagged(prepared):
    ok, _ = prepared
    ok = ok.copy()
    sel = (ok["codec"] == "opus") & (ok["point"] == "bitrate_kbps=6") & (ok["metric"] == "si_sdr")
    ok.loc[sel & (ok["item_id"] == "clip3#0"), "value"] = -40.0
    wide, outliers = per_item_table(ok, "si_sdr")
    assert wide.shape[0] == 6 and "opus | bitrate_kbps=6" in wide.columns
    assert outliers[["column", "item_id"]].values.tolist() == [["opus | bitrate_kbps=6", "clip3#0"]]


def test_summary_wide_has_unit_columns(prepared):
    _, summary = prepared
    wide = summary_wide(summary)
    assert {"si_sdr_db_mean", "si_sdr_db_ci_low", "mel_distance_mean", "fad_mean"} <= set(wide.columns)
    assert len(wide) == summary[["run", "codec", "point"]].drop_duplicates().shape[0]


def test_frame_rate_column_dropped_when_no_codec_has_one(prepared):
    _, summary = prepared
    no_fr = summary.assign(frame_rate_hz=np.nan)
    t = summary_table(no_fr, "discrete")
    assert t.columns[:3] == ("system", "point", "bitrate (kbps)") and "frame rate (Hz)" not in t.columns
    assert all(len(row) == len(t.columns) for _, rows in t.blocks for row in rows)


def test_outliers_never_flag_the_reference_or_a_near_constant_column(prepared):
    ok, _ = prepared
    ok = ok.copy()
    si = ok["metric"] == "si_sdr"
    # the hidden reference scored against itself: identical values up to rounding, one item 0.4 dB lower
    ref = si & (ok["codec"] == "reference")
    ok.loc[ref, "value"] = 60.0 + 1e-6 * np.arange(int(ref.sum()))
    ok.loc[ref & (ok["item_id"] == "clip3#0"), "value"] = 59.6
    # an ordinary system whose items are nearly constant: a 0.1 % difference is no outlier either
    near = si & (ok["codec"] == "opus") & (ok["point"] == "bitrate_kbps=12")
    ok.loc[near, "value"] = 20.0 + 1e-6 * np.arange(int(near.sum()))
    ok.loc[near & (ok["item_id"] == "clip2#0"), "value"] = 19.98
    # a real outlier elsewhere is still found
    bad = si & (ok["codec"] == "opus") & (ok["point"] == "bitrate_kbps=6") & (ok["item_id"] == "clip3#0")
    ok.loc[bad, "value"] = -40.0
    _, outliers = per_item_table(ok, "si_sdr")
    assert outliers[["column", "item_id"]].values.tolist() == [["opus | bitrate_kbps=6", "clip3#0"]]
