"""Paired significance of item-metric differences between two systems at matched operating points.

Two operating points match when they belong to the same group (discrete or continuous) and their rates agree
within ``rel_tol`` (nominal kbps for discrete codecs, compression ratio for continuous ones), or when they are the
same codec and point label in two runs. Items are paired by ``item_id`` (items missing on either side are
dropped and the pair count ``n`` says how many remain). For each pair and item metric:

- the mean paired difference A - B with its percentile-bootstrap 95 % CI
  (:func:`codecbench.bench.core.stats.paired_bootstrap_ci`);
- a two-sided Wilcoxon signed-rank test (scipy, zero differences dropped as in Wilcoxon's original method;
  p = 1 when every difference is zero);
- Holm's correction across all comparisons of the same metric in the report (one family per metric), and
  ``significant`` = Holm-adjusted p < ``alpha``. ``better`` names the better system when significant.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from codecbench.bench.core.stats import holm, paired_bootstrap_ci
from codecbench.bench.report.aggregate import rate_of

COLUMNS: tuple[str, ...] = (
    "metric", "unit", "higher_is_better", "system_a", "point_a", "system_b", "point_b", "rate_a", "rate_b", "n",
    "mean_diff", "ci_low", "ci_high", "wilcoxon_stat", "p_value", "p_holm", "significant", "better",
)  # fmt: skip


def wilcoxon_p(diff: np.ndarray) -> tuple[float, float]:
    """(statistic, two-sided p) of the Wilcoxon signed-rank test of ``diff`` [N]; (nan, 1.0) if all are zero."""
    from scipy.stats import wilcoxon

    diff = np.asarray(diff, dtype=np.float64)
    if diff.size == 0:
        return float("nan"), float("nan")
    if np.all(diff == 0):
        return float("nan"), 1.0
    with warnings.catch_warnings():  # scipy warns that exact p-values are unavailable with ties: expected here
        warnings.simplefilter("ignore", UserWarning)
        result = wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def matched_points(summary: pd.DataFrame, rel_tol: float = 0.05) -> list[tuple[tuple, tuple]]:
    """Pairs ((run, codec, point), (run, codec, point)) of different systems at matched operating points."""
    pts = summary[summary["group"] != "anchor"].drop_duplicates(["run", "codec", "point"])
    rows = list(pts.itertuples(index=False))
    pairs = []
    for a, b in itertools.combinations(rows, 2):
        if (a.run, a.codec) == (b.run, b.codec) or a.group != b.group:
            continue
        same_point_other_run = a.codec == b.codec and a.point == b.point
        ra, rb = rate_of(a._asdict()), rate_of(b._asdict())
        close = np.isfinite(ra) and np.isfinite(rb) and abs(ra - rb) <= rel_tol * max(abs(ra), abs(rb))
        if same_point_other_run or close:
            key_a, key_b = sorted([(a.run, a.codec, a.point), (b.run, b.codec, b.point)])
            pairs.append((key_a, key_b))
    return sorted(set(pairs))


def paired_tests(
    ok: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    metrics: list[str] | None = None,
    rel_tol: float = 0.05,
    alpha: float = 0.05,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """The comparison table (columns :data:`COLUMNS`) of every matched pair and item metric."""
    items = ok[ok["level"] == "item"]
    wanted = metrics if metrics is not None else sorted(set(items["metric"]))
    systems = summary.drop_duplicates(["run", "codec"]).set_index(["run", "codec"])["system"]
    rates = summary.drop_duplicates(["run", "codec", "point"]).set_index(["run", "codec", "point"])
    indexed = items.set_index(["run", "codec", "point", "metric"]).sort_index()
    rows = []
    for key_a, key_b in matched_points(summary, rel_tol):
        for metric in wanted:
            try:
                part_a = indexed.loc[(*key_a, metric)]
                part_b = indexed.loc[(*key_b, metric)]
            except KeyError:
                continue
            a = part_a.groupby("item_id")["value"].mean()
            b = part_b.groupby("item_id")["value"].mean()
            common = a.index.intersection(b.index)
            if len(common) == 0:
                continue
            va, vb = a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)
            ci = paired_bootstrap_ci(va, vb, n_resamples=n_resamples, seed=seed)
            stat, p = wilcoxon_p(va - vb)
            hib = bool(part_a["higher_is_better"].iloc[0])
            rows.append(
                dict(
                    metric=metric,
                    unit=str(part_a["unit"].iloc[0]),
                    higher_is_better=hib,
                    system_a=systems[key_a[:2]],
                    point_a=key_a[2],
                    system_b=systems[key_b[:2]],
                    point_b=key_b[2],
                    rate_a=rate_of(rates.loc[key_a]),
                    rate_b=rate_of(rates.loc[key_b]),
                    n=len(common),
                    mean_diff=ci.estimate,
                    ci_low=ci.low,
                    ci_high=ci.high,
                    wilcoxon_stat=stat,
                    p_value=p,
                )  # fmt: skip
            )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if table.empty:
        return table
    table["p_holm"] = np.nan
    for _, idx in table.groupby("metric").groups.items():
        table.loc[idx, "p_holm"] = holm(table.loc[idx, "p_value"].to_numpy(float))
    table["significant"] = table["p_holm"] < alpha
    a_better = np.where(table["higher_is_better"], table["mean_diff"] > 0, table["mean_diff"] < 0)
    table["better"] = np.where(table["significant"], np.where(a_better, table["system_a"], table["system_b"]), "")
    return table
