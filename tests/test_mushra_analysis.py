"""BS.1534-3 analysis on a synthetic ratings set with known exclusions and hand-computed statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from codecbench.listening_test.analysis import (
    AnalysisError,
    FewAssessorsWarning,
    analyze,
    analyze_frame,
    describe,
    holm,
    load_ratings,
    permutation_test,
    post_screen,
)

ASSESSORS = [f"A{i}" for i in range(8)]
ITEMS = [f"i{j}" for j in range(10)]


def synthetic_ratings() -> pd.DataFrame:
    """8 assessors x 10 items x 4 conditions; reference 100, lowpass_7k 50, lowpass_3k5 20, codec_x 60 + assessor.

    Planted: i0: A3, A4, A7 rate the anchor 95 (3/8 = 37.5 % > 25 %: i0 not used for the anchor rule);
    i1: A3, A4 rate it 95 (2/8 = 25 %, not more: used); A4 also on i2.
    -> A3: 1 of 10 items (10 %; i0 does not count against) kept, though 2 of 10 (20 %) without the 25 % rule;
       A4: 2 of 10 (20 %) excluded; A7: 0 of 10 kept.
    A5: reference 85 on i3, i4 (20 %) excluded. A6: reference 89 on i5 (10 %) and exactly 90 on i6: kept.
    """
    rows = []
    for a, pid in enumerate(ASSESSORS):
        for item in ITEMS:
            scores = {"reference": 100, "lowpass_7k": 50, "lowpass_3k5": 20, "codec_x": 60 + a}
            if (pid, item) in {("A3", "i0"), ("A4", "i0"), ("A7", "i0"), ("A3", "i1"), ("A4", "i1"), ("A4", "i2")}:
                scores["lowpass_7k"] = 95
            if pid == "A5" and item in ("i3", "i4"):
                scores["reference"] = 85
            if pid == "A6" and item == "i5":
                scores["reference"] = 89
            if pid == "A6" and item == "i6":
                scores["reference"] = 90
            rows += [{"participant_id": pid, "item_id": item, "condition": c, "score": s} for c, s in scores.items()]
    return pd.DataFrame(rows)


def test_post_screening_known_exclusions_and_25_percent_item_rule():
    screening = post_screen(synthetic_ratings())
    assert screening.anchor_items_not_used == ("i0",)
    assert screening.excluded == ("A4", "A5")
    assert screening.kept == ("A0", "A1", "A2", "A3", "A6", "A7")
    by = {a.participant_id: a for a in screening.assessors}
    assert (by["A3"].anchor_above_90, by["A3"].anchor_items_counted) == (1, 10)
    assert by["A3"].anchor_fraction == pytest.approx(1 / 10) and not by["A3"].excluded
    assert by["A4"].anchor_fraction == pytest.approx(2 / 10)
    assert by["A4"].reason == "lowpass_7k above 90 on 2 of 10 items, exempt items not counted against (20.0 % > 15 %)"
    assert by["A5"].reason == "hidden reference below 90 on 2 of 10 items (20.0 % > 15 %)"
    assert by["A6"].reference_below_90 == 1 and by["A6"].reference_fraction == pytest.approx(0.1)


def test_without_the_item_rule_a3_would_be_excluded():
    """Control: drop A7's high anchor on i0 so i0 falls to 2/8 = 25 % (used) -> A3 has 2 of 10 -> excluded."""
    ratings = synthetic_ratings()
    mask = (ratings.participant_id == "A7") & (ratings.item_id == "i0") & (ratings.condition == "lowpass_7k")
    ratings.loc[mask, "score"] = 50
    screening = post_screen(ratings)
    assert screening.anchor_items_not_used == ()
    assert screening.excluded == ("A3", "A4", "A5")


def test_hand_computed_means_medians_and_cis(tmp_path):
    result = analyze_frame(synthetic_ratings(), tmp_path, n_resamples=4000, min_assessors=5)
    c = result.conditions.set_index("condition")
    assert list(c.index) == ["reference", "codec_x", "lowpass_7k", "lowpass_3k5"]
    assert c.loc["codec_x", "n"] == 60
    assert c.loc["codec_x", "mean"] == pytest.approx(60 + 19 / 6)  # kept assessors 0,1,2,3,6,7
    assert (c.loc["codec_x", "median"], c.loc["codec_x", "q25"], c.loc["codec_x", "q75"]) == (62.5, 61.0, 66.0)
    assert c.loc["reference", "mean"] == pytest.approx((60 * 100 - 11 - 10) / 60)
    assert c.loc["lowpass_7k", "mean"] == pytest.approx((60 * 50 + 3 * 45) / 60)
    assert (c.loc["lowpass_3k5", "ci_low"], c.loc["lowpass_3k5", "ci_high"]) == (20.0, 20.0)  # constant sample
    # codec_x is constant within an assessor: the cluster bootstrap resamples 6 assessor means {60..67}; its CI
    # against the normal approximation over the 6 assessors (not over the 60 grades, sqrt(10) x narrower)
    means = 60 + np.array([0, 1, 2, 3, 6, 7])
    half = 1.96 * means.std() / np.sqrt(means.size)
    assert c.loc["codec_x", "ci_low"] == pytest.approx(means.mean() - half, abs=0.35)
    assert c.loc["codec_x", "ci_high"] == pytest.approx(means.mean() + half, abs=0.35)
    assert c.loc["codec_x", "n_assessors"] == 6 and c.loc["codec_x", "ci_warning"] == ""
    per_item = result.items.set_index(["item_id", "condition"])
    assert per_item.loc[("i0", "lowpass_7k"), "mean"] == pytest.approx((4 * 50 + 2 * 95) / 6)  # A3, A7 kept


def test_two_point_bootstrap_ci_by_hand():
    # resampled means of {0, 100} are 0, 50, 100 with probabilities 1/4, 1/2, 1/4: the 95 % interval is [0, 100]
    d = describe(np.array([0.0, 100.0]), n_resamples=4000)
    assert (d["mean"], d["ci_low"], d["ci_high"], d["median"], d["iqr"]) == (50.0, 0.0, 100.0, 50.0, 50.0)


def test_holm_and_permutation_by_hand():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.01]), [0.5, 0.02])
    assert permutation_test([1, 2, 3, 4]) == 2 / 16  # only all-positive / all-negative reach |mean| 2.5
    assert permutation_test([1, -1]) == 1.0
    assert permutation_test([1.0] * 20, n_resamples=999, seed=1) == pytest.approx(1 / 1000, abs=2e-3)


def test_pairwise_tests(tmp_path):
    result = analyze_frame(synthetic_ratings(), tmp_path, n_resamples=2000, min_assessors=6)
    pw = result.pairwise.set_index(["condition_a", "condition_b"])
    assert len(pw) == 6
    row = pw.loc[("codec_x", "lowpass_3k5")]
    assert row["n_pairs"] == 60 and row["mean_difference"] == pytest.approx(60 + 19 / 6 - 20)
    assert row["wilcoxon_p"] < 1e-9 and row["permutation_p"] == pytest.approx(1 / 2001)
    assert row["wilcoxon_p_holm"] >= row["wilcoxon_p"]


def test_analyze_writes_tables_plots_and_reads_exports(tmp_path):
    csv = tmp_path / "ratings.csv"
    synthetic_ratings().to_csv(csv, index=False)
    result = analyze(csv, tmp_path / "out", n_resamples=1000, min_assessors=6)
    out = tmp_path / "out"
    for name in ("screening.csv", "conditions.csv", "items.csv", "pairwise.csv", "table.md", "table.tex",
                 "summary.json", "plots/mushra_box.png", "plots/mushra_box.pdf", "plots/mushra_means.png",
                 "plots/mushra_means.pdf"):
        assert (out / name).is_file(), name
    assert "| codec_x | 60 | 63.2 |" in (out / "table.md").read_text()
    assert "codec\\_x & 60 & 63.2" in (out / "table.tex").read_text()
    assert "8 before post-screening, 6 after" in result.summary_text()
    assert "excluded A5: hidden reference below 90" in result.summary_text()
    parquet = tmp_path / "ratings.parquet"
    synthetic_ratings().to_parquet(parquet)
    assert len(load_ratings(parquet)) == 320


def test_errors(tmp_path):
    ratings = synthetic_ratings()
    with pytest.raises(AnalysisError, match=r"missing columns \['score'\]"):
        analyze_frame(ratings.drop(columns="score"), tmp_path)
    bad = ratings.copy()
    bad.loc[0, "score"] = 101
    with pytest.raises(AnalysisError, match=r"1 score\(s\) outside 0-100, e.g. 101"):
        analyze_frame(bad, tmp_path)
    with pytest.raises(AnalysisError, match="assessor A0 graded reference on item i0 more than once"):
        analyze_frame(pd.concat([ratings, ratings.iloc[:1]]), tmp_path)
    with pytest.raises(AnalysisError, match=r"anchor condition 'lp7' not in the ratings; conditions: \["):
        analyze_frame(ratings, tmp_path, anchor="lp7")
    everyone_bad = ratings.assign(score=np.where(ratings.condition == "reference", 10, ratings.score))
    with pytest.raises(AnalysisError, match="post-screening excluded all 8 assessors"):
        analyze_frame(everyone_bad, tmp_path)
    with pytest.raises(AnalysisError, match="unknown ratings file type '.txt'"):
        (tmp_path / "r.txt").write_text("x")
        load_ratings(tmp_path / "r.txt")


def _anchor_case(n_high_on_counted: int) -> pd.DataFrame:
    """The issue's case: 8 assessors x 20 items; on e18, e19 three others (B1-B3, 3/8 = 37.5 % > 25 %) grade the
    anchor 95, so both items are exempt; X grades the anchor 95 on ``n_high_on_counted`` other items, normally
    (50) on e18, e19."""
    rows = []
    for pid in ["X", "B1", "B2", "B3", "C1", "C2", "C3", "C4"]:
        for j in range(20):
            item = f"e{j:02d}"
            high = (pid == "X" and j < n_high_on_counted) or (pid in ("B1", "B2", "B3") and j >= 18)
            rows += [{"participant_id": pid, "item_id": item, "condition": "reference", "score": 100},
                     {"participant_id": pid, "item_id": item, "condition": "lowpass_7k", "score": 95 if high else 50}]
    return pd.DataFrame(rows)


def test_anchor_exemption_keeps_the_denominator_3_of_20_not_3_of_18():
    screening = post_screen(_anchor_case(3))
    assert screening.anchor_items_not_used == ("e18", "e19")
    x = {a.participant_id: a for a in screening.assessors}["X"]
    assert (x.anchor_above_90, x.anchor_items_counted) == (3, 20)  # 3 of 20 = 15 %, not more: kept
    assert x.anchor_fraction == pytest.approx(0.15) and not x.excluded
    assert screening.excluded == ()  # B1-B3: their high grades are all on exempt items -> 0 of 20
    # control: one more high grade on a counted item -> 4 of 20 = 20 % -> excluded
    assert post_screen(_anchor_case(4)).excluded == ("X",)


def test_cis_are_clustered_by_assessor_and_wider_than_per_grade(tmp_path):
    """12 assessors with a personal offset (sd 10) and small per-grade noise (sd 2) on 10 items: grades within an
    assessor are correlated, so the per-grade bootstrap is ~sqrt(10) too narrow; the clustered CI matches the
    normal interval over the 12 assessor means."""
    rng = np.random.default_rng(3)
    offsets = rng.normal(0, 10, 12)
    rows = [{"participant_id": f"P{a}", "item_id": f"i{j}", "condition": c, "score": float(np.clip(s, 0, 100))}
            for a in range(12) for j in range(10)
            for c, s in (("reference", 100), ("lowpass_7k", 30), ("codec", 55 + offsets[a] + rng.normal(0, 2)))]
    frame = pd.DataFrame(rows)
    result = analyze_frame(frame, tmp_path, n_resamples=4000)
    c = result.conditions.set_index("condition").loc["codec"]
    grades = frame[frame.condition == "codec"]
    per_grade = describe(grades["score"].to_numpy(), n_resamples=4000)
    clustered_width, naive_width = c["ci_high"] - c["ci_low"], per_grade["ci_high"] - per_grade["ci_low"]
    assert clustered_width > 2.5 * naive_width
    means = grades.groupby("participant_id")["score"].mean().to_numpy()
    half = 1.96 * means.std() / np.sqrt(means.size)
    assert clustered_width == pytest.approx(2 * half, rel=0.15)
    assert c["n_assessors"] == 12 and c["ci_warning"] == ""


def test_few_assessors_warn_and_flag(tmp_path):
    """3 grades from one assessor: the CI collapses to a point; it is flagged and a FewAssessorsWarning raised."""
    frame = pd.DataFrame([{"participant_id": "only", "item_id": f"i{j}", "condition": c, "score": s}
                          for j in range(3) for c, s in (("reference", 100), ("lowpass_7k", 30), ("codec", 40 + j))])
    with pytest.warns(FewAssessorsWarning, match=r"3 condition CI\(s\) rest on fewer than 10 assessors"):
        result = analyze_frame(frame, tmp_path, n_resamples=500)
    c = result.conditions.set_index("condition")
    assert c.loc["codec", "ci_warning"] == "CI over 1 assessor(s) < 10: too few for a reliable interval"
    assert "WARNING codec: CI over 1 assessor(s)" in result.summary_text()
    assert "ci_warning" in (tmp_path / "conditions.csv").read_text()


NEURAL_SPEECH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "listening-tests" / "neural-speech-mushra"


@pytest.mark.skipif(not (NEURAL_SPEECH / "ratings.csv").is_file(), reason="shared neural-speech-mushra data absent")
def test_hidden_reference_rule_reproduces_the_authors_exclusions_on_real_ratings():
    """Stahl et al. 2024 (README of the data): assessors who graded the hidden reference below 90 in more than one
    of their 8 trials were excluded. BS.1534-3's rule over 8 trials (> 15 %: 2 of 8 = 25 %, 1 of 8 = 12.5 %) is the
    same rule; on the published subset (each assessor on 1-5 of the 6 signals) it excludes exactly assessor 6."""
    ratings = pd.read_csv(NEURAL_SPEECH / "ratings.csv").rename(columns={"signal": "item_id", "rating": "score"})
    ratings["participant_id"] = ratings["participant_id"].astype(str)
    screening = post_screen(ratings, reference="Reference", anchor=None, trials_per_assessor=8)
    assert screening.excluded == ("6",)
    low = {a.participant_id: a.reference_below_90 for a in screening.assessors if a.reference_below_90}
    assert low == {"6": 2, "3": 1, "21": 1}
    # over only the trials present in the subset the fractions are 1 of 3 and 1 of 4: more would be excluded
    assert post_screen(ratings, reference="Reference", anchor=None).excluded == ("21", "3", "6")


def _crowd_with_bots(n_bots: int) -> pd.DataFrame:
    """8 honest assessors (anchor 30, codec 50, everything heard for 4 s) on 10 items, plus ``n_bots`` scripted
    participants who graded everything 100 without listening (played_s 0)."""
    rows = []
    for a in range(8 + n_bots):
        bot = a >= 8
        for j in range(10):
            for c, s in (("reference", 100), ("lowpass_7k", 30), ("codec", 50)):
                rows.append({"participant_id": f"{'bot' if bot else 'P'}{a}", "item_id": f"i{j}", "condition": c,
                             "score": 100 if bot else s, "played_s": 0.0 if bot else 4.0})
    return pd.DataFrame(rows)


def test_behaviour_rule_screens_out_bots_that_would_exempt_every_item(tmp_path):
    ratings = _crowd_with_bots(3)  # 3 of 11 = 27 % grade the anchor 100 on every item
    plain = post_screen(ratings, behaviour=False)
    assert len(plain.anchor_items_not_used) == 10 and plain.excluded == ()  # bots pass BS.1534-3 alone
    screening = post_screen(ratings)
    assert screening.excluded == ("bot10", "bot8", "bot9") and screening.anchor_items_not_used == ()
    bot = {a.participant_id: a for a in screening.assessors}["bot8"]
    assert (bot.behaviour_items_recorded, bot.behaviour_items_not_listened) == (10, 10)
    assert bot.reason.startswith("did not listen: a stimulus played < 1 s on 10 of 10 items (100.0 % > 15 %)")
    result = analyze_frame(ratings, tmp_path, n_resamples=500, min_assessors=8)
    assert result.conditions.set_index("condition").loc["codec", "mean"] == 50.0
    kept_bots = analyze_frame(ratings, tmp_path / "plain", n_resamples=200, min_assessors=8, behaviour=False)
    assert kept_bots.conditions.set_index("condition").loc["codec", "mean"] == pytest.approx(700 / 11)  # 63.6
    assert "behaviour_items_not_listened" in (tmp_path / "screening.csv").read_text()
    # an honest assessor who skipped one stimulus on 1 of 10 items (10 %) is kept
    ratings.loc[(ratings.participant_id == "P0") & (ratings.item_id == "i0") & (ratings.condition == "codec"),
                "played_s"] = 0.2
    assert "P0" in post_screen(ratings).kept


def test_html_report_escapes_and_embeds(tmp_path):
    ratings = synthetic_ratings()
    ratings.loc[ratings.participant_id == "A5", "participant_id"] = "<script>x</script>"
    analyze_frame(ratings, tmp_path, n_resamples=200, min_assessors=5)
    page = (tmp_path / "report.html").read_text()
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert page.count("data:image/png;base64,") == 2
    assert "8 assessors before post-screening, 6 after" in page and "<td class='t'>codec_x</td>" in page
