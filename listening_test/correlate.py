"""Metric validity: how well each objective metric predicts listeners' MUSHRA grades.

``codecbench mushra correlate RATINGS SCORES --out DIR`` joins listener grades with a metric table by
(item, condition) and reports, per item metric:

- **stimulus level**: Pearson, Spearman and Kendall (tau-b) correlation between the mean grade of each
  (item, condition) pair and the metric's value for that pair;
- **system level**: the same three between each condition's mean grade (over all its kept grades) and the
  metric's mean over the joined items;
- **pairwise ranking accuracy**: over all pairs of systems whose mean grades differ, the share the metric orders
  like the listeners (a tie in the metric counts one half; Kocmi et al. 2021, "To ship or not to ship").

Values are **oriented** before any statistic: a lower-is-better metric is negated, so a positive correlation and
an accuracy above 0.5 always mean "agrees with the listeners", whatever the metric's direction.

Every statistic has a 95 % percentile-bootstrap CI over **items and assessors**: each resample draws the items
and, independently, the assessors with replacement (two-way bootstrap; an assessor drawn twice counts twice),
recomputes the stimulus and system means and then the statistic. Resamples where a statistic is undefined
(constant values) are dropped and counted in ``summary.json``. The percentile rule and the seeded generator are
those of :mod:`codecbench.bench.core.stats`; the figures' CIs come from the same resamples.

Grades are post-screened first with the BS.1534-3 rules of :func:`codecbench.listening_test.analysis.post_screen`
(hidden reference and mid-range anchor conditions named by the caller).

Inputs:

- ``RATINGS``: codecbench's own MUSHRA database or export (``participant_id``, ``item_id``, ``condition``,
  ``score``) or any CSV/parquet whose columns are named with ``item_col``, ``condition_col``, ``assessor_col``,
  ``rating_col``.
- ``SCORES``: the long table of ``codecbench score`` (``point`` = ``condition=<folder>``, ``item_id``, ``level``, ``metric``,
  ``value``, ...) or a run's ``results.parquet``/``results.csv`` (``codec``, ``point``, ...; conditions are
  named ``codec@point`` as in MUSHRA bundles). Set-level rows (FAD, ...) have no per-item values and are listed
  as skipped.
- ``condition_map``: rated condition name -> scored condition label, for names that differ.

This module reads tables only; it never imports the runner.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from codecbench.bench.core.errors import CodecbenchError
from codecbench.bench.core.stats import Interval
from codecbench.listening_test.analysis import (
    REQUIRED_COLUMNS,
    AnalysisError,
    check_ratings,
    load_ratings,
    post_screen,
)

STATISTICS = (
    "system_spearman", "system_pearson", "system_kendall", "pairwise_accuracy",
    "stimulus_pearson", "stimulus_spearman", "stimulus_kendall",
)
CONFIDENCE = 0.95
_STANDARD = dict(zip(("assessor", "item", "condition", "rating"), REQUIRED_COLUMNS))


class CorrelateError(CodecbenchError):
    """Ratings and scores cannot be joined or correlated; the message names the file, column or condition."""


# ----------------------------------------------------------------------------------------------------------------
# Correlations on oriented values: x [N] listener means, y [K, N] metric values (K metrics), no NaN
# ----------------------------------------------------------------------------------------------------------------


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r between ``x`` [N] and each row of ``y`` [K, N]; [K], NaN where either side is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    xc = x - x.mean()
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((yc**2).sum(axis=1) * (xc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (yc @ xc) / den
    r[(np.ptp(y, axis=1) == 0) | (np.ptp(x) == 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho (Pearson on average ranks) between ``x`` [N] and each row of ``y`` [K, N]; [K]."""
    from scipy.stats import rankdata

    return pearson(rankdata(x), rankdata(np.atleast_2d(y), axis=1))


def kendall(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b between ``x`` [N] and each row of ``y`` [K, N]; [K] (same definition as scipy's default).

    tau_b = (C - D) / sqrt((P - T_x) (P - T_y)) with P = N (N - 1) / 2 pairs, T_x / T_y the pairs tied in x / y.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    iu = np.triu_indices(x.size, 1)
    sx = np.sign(x[:, None] - x[None, :])[iu]  # [P]
    sy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]]  # [K, P]
    n_pairs = sx.size
    den = np.sqrt(float(n_pairs - np.sum(sx == 0)) * (n_pairs - np.sum(sy == 0, axis=1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (sy @ sx) / den
    tau[~(den > 0)] = np.nan
    return tau


def pairwise_accuracy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Share of pairs with x_i != x_j that each row of ``y`` [K, N] orders like ``x`` [N]; metric ties count 1/2."""
    x = np.asarray(x, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    iu = np.triu_indices(x.size, 1)
    sx = np.sign(x[:, None] - x[None, :])[iu]
    keep = sx != 0
    if not keep.any():
        return np.full(y.shape[0], np.nan)
    sy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]][:, keep]
    return ((sy * sx[keep] > 0) + 0.5 * (sy == 0)).mean(axis=1)


def _masked(fn, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``fn`` on the finite pairs of ``x`` [N] and each row of ``y`` [K, N] (rows with one mask share one call)."""
    valid = np.isfinite(y) & np.isfinite(x)[None, :]
    out = np.full(y.shape[0], np.nan)
    patterns, inverse = np.unique(valid, axis=0, return_inverse=True)
    for p, mask in enumerate(patterns):
        rows = np.flatnonzero(inverse.ravel() == p)
        if mask.sum() >= 3:
            out[rows] = fn(x[mask], y[rows][:, mask])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Loading and joining
# ----------------------------------------------------------------------------------------------------------------


def load_listener_ratings(
    path: str | os.PathLike,
    *,
    item_col: str | None = None,
    condition_col: str | None = None,
    assessor_col: str | None = None,
    rating_col: str | None = None,
):
    """Grades as a frame with ``participant_id``, ``item_id``, ``condition``, ``score`` (0-100), checked.

    A codecbench database or export needs no column options; for another CSV/parquet, name its columns.
    """
    import pandas as pd

    path = Path(path)
    given = {"item": item_col, "condition": condition_col, "assessor": assessor_col, "rating": rating_col}
    if path.suffix.lower() in (".sqlite", ".sqlite3", ".db") or not any(given.values()):
        try:
            return load_ratings(path)
        except AnalysisError as exc:
            if path.suffix.lower() in (".csv", ".parquet") and "missing columns" in str(exc):
                raise CorrelateError(f"{exc}; for an external table name its columns with --item-col, "
                                     "--condition-col, --assessor-col and --rating-col") from None
            raise
    if not path.is_file():
        raise CorrelateError(f"{path}: file does not exist")
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
    else:
        raise CorrelateError(f"{path}: unknown ratings file type {path.suffix!r}; use .csv, .parquet or .sqlite")
    columns = {}
    for role, standard in _STANDARD.items():
        name = given[role] or standard
        if name not in frame.columns:
            raise CorrelateError(f"{path}: no column '{name}' for the {role} (--{role}-col); columns: "
                                 f"{list(frame.columns)}")
        columns[standard] = frame[name]
    out = pd.DataFrame(columns)
    for column in ("participant_id", "item_id", "condition"):
        out[column] = out[column].astype(str)
    rating = pd.to_numeric(out["score"], errors="coerce")
    if rating.isna().any():
        bad = out.loc[rating.isna(), "score"].iloc[0]
        raise CorrelateError(f"{path}: rating column '{given['rating'] or 'score'}' holds a non-number: {bad!r}")
    return check_ratings(out.assign(score=rating.astype(float)), str(path))


@dataclass(frozen=True)
class MetricInfo:
    metric: str
    value_column: str
    unit: str
    higher_is_better: bool


def load_scores(path: str | os.PathLike, *, metrics: Sequence[str] | None = None):
    """Item-level metric values from a ``codecbench score`` long table or a run's results table.

    Returns (frame with ``condition``, ``item_id``, ``metric``, ``value``; {metric: MetricInfo}; skipped set metrics).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CorrelateError(f"{path}: file does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = pd.read_csv(path, dtype={"item_id": str, "condition": str, "point": str, "codec": str})
    elif suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        raise CorrelateError(f"{path}: unknown scores file type {suffix!r}; use the .parquet or .csv written by "
                             "`codecbench score --out` or a run's results table")
    needed = ["item_id", "level", "metric", "value", "higher_is_better"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        hint = " (a `codecbench score --wide` table? write the long table, without --wide)" if "item_id" in \
            table.columns else ""
        raise CorrelateError(f"{path}: missing columns {missing}{hint}")
    if "condition" in table.columns:
        condition = table["condition"].astype(str)
    elif {"codec", "point"} <= set(table.columns):
        from codecbench.listening_test.bundle import condition_name

        prefix = "condition="  # `codecbench score`: a decoded folder is the point condition=<folder>
        condition = pd.Series([str(p)[len(prefix):] if str(p).startswith(prefix) else condition_name(str(c), str(p))
                               for c, p in zip(table["codec"], table["point"])], index=table.index)
    else:
        raise CorrelateError(f"{path}: needs a 'condition' column (codecbench score) or 'codec' and 'point' "
                             "(a run's results table)")
    table = table.assign(condition=condition, item_id=table["item_id"].astype(str))
    table = table[table["metric"].astype(str) != ""]
    skipped = sorted(set(table.loc[table["level"] == "set", "metric"].astype(str)))
    items = table[table["level"] == "item"]
    if metrics:
        unknown = [m for m in metrics if m not in set(items["metric"])]
        if unknown:
            raise CorrelateError(f"{path}: no item-level values for metric(s) {unknown}; the table has "
                                 f"{sorted(set(items['metric']))}")
        items = items[items["metric"].isin(metrics)]
        skipped = [m for m in skipped if m in metrics]
    if items.empty:
        raise CorrelateError(f"{path}: no item-level metric values" + (f" (set metrics only: {skipped})"
                                                                         if skipped else ""))
    info = {}
    for name, group in items.groupby("metric", sort=True):
        first = group.iloc[0]
        unit = str(first["unit"]) if "unit" in group.columns and isinstance(first["unit"], str) else ""
        column = str(first["value_column"]) if "value_column" in group.columns else str(name)
        info[str(name)] = MetricInfo(str(name), column, unit, bool(first["higher_is_better"]))
    status_ok = items["status"].eq("ok") if "status" in items.columns else True
    values = items.assign(value=np.where(status_ok, pd.to_numeric(items["value"], errors="coerce"), np.nan))
    dup = values.duplicated(["condition", "item_id", "metric"])
    if dup.any():
        row = values[dup].iloc[0]
        raise CorrelateError(f"{path}: metric {row.metric} has more than one value for item {row.item_id} of "
                             f"condition {row.condition} (several runs in one table? give one run's table)")
    return values[["condition", "item_id", "metric", "value"]].reset_index(drop=True), info, skipped


def parse_condition_map(pairs: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["Rated name=scored label", ...]`` (or a mapping) -> {rated: scored}; a bad entry is a CorrelateError."""
    if pairs is None:
        return {}
    if isinstance(pairs, Mapping):
        return {str(k): str(v) for k, v in pairs.items()}
    out: dict[str, str] = {}
    for pair in pairs:
        rated, sep, scored = pair.partition("=")
        if not sep or not rated.strip() or not scored.strip():
            raise CorrelateError(f"--map {pair!r}: expected RATED_CONDITION=SCORED_CONDITION")
        if rated.strip() in out:
            raise CorrelateError(f"--map: rated condition {rated.strip()!r} mapped twice")
        out[rated.strip()] = scored.strip()
    return out


@dataclass
class Joined:
    """Grades and metric values on one grid: assessors A, items I, systems C, metrics K."""

    grades: np.ndarray  # [A, I, C], NaN where an assessor did not grade
    values: np.ndarray  # [K, I, C] raw metric values, NaN where missing or failed
    assessors: list[str]
    items: list[str]
    systems: list[str]  # rated condition names
    scored: list[str]  # the matching scored condition labels
    metrics: list[MetricInfo]
    unmatched_rated: list[str]
    unmatched_scored: list[str]
    dropped_items: list[str]

    @property
    def oriented(self) -> np.ndarray:
        sign = np.array([1.0 if m.higher_is_better else -1.0 for m in self.metrics])
        return self.values * sign[:, None, None]


def join(ratings, scores, info: Mapping[str, MetricInfo], condition_map: Mapping[str, str] | None = None,
         *, ignore: Sequence[str] = ()) -> Joined:
    """Put kept grades and metric values on one (item, condition) grid; conditions in ``ignore`` are not systems."""
    condition_map = dict(condition_map or {})
    rated = sorted(set(ratings["condition"]))
    scored_labels = sorted(set(scores["condition"]))
    bad = [k for k in condition_map if k not in rated]
    if bad:
        raise CorrelateError(f"--map names rated condition(s) {bad} that are not in the ratings; rated: {rated}")
    bad = [v for v in condition_map.values() if v not in scored_labels]
    if bad:
        raise CorrelateError(f"--map names scored condition(s) {bad} that are not in the scores; scored: "
                             f"{scored_labels}")
    pairs = [(r, condition_map.get(r, r)) for r in rated if r not in ignore]
    pairs = [(r, s) for r, s in pairs if s in scored_labels]
    if len(pairs) < 3:
        raise CorrelateError(f"only {len(pairs)} rated condition(s) match a scored condition (at least 3 needed); "
                             f"rated: {rated}; scored: {scored_labels}; map names with --map RATED=SCORED")
    systems, scored = [p[0] for p in pairs], [p[1] for p in pairs]
    unmatched_rated = [r for r in rated if r not in systems and r not in ignore]
    unmatched_scored = [s for s in scored_labels if s not in scored]
    rated_items = set(ratings["item_id"])
    scored_items = set(scores.loc[scores["condition"].isin(scored), "item_id"])
    items = sorted(rated_items & scored_items)
    if not items:
        raise CorrelateError(f"no item is both rated and scored; rated items e.g. {sorted(rated_items)[:3]}, "
                             f"scored items e.g. {sorted(scored_items)[:3]}")
    dropped = sorted(rated_items ^ scored_items)
    assessors = sorted(set(ratings.loc[ratings["item_id"].isin(items), "participant_id"]))
    a_idx = {a: n for n, a in enumerate(assessors)}
    i_idx = {i: n for n, i in enumerate(items)}
    c_idx = {c: n for n, c in enumerate(systems)}
    grades = np.full((len(assessors), len(items), len(systems)), np.nan)
    sub = ratings[ratings["item_id"].isin(items) & ratings["condition"].isin(systems)]
    grades[[a_idx[a] for a in sub["participant_id"]], [i_idx[i] for i in sub["item_id"]],
           [c_idx[c] for c in sub["condition"]]] = sub["score"].to_numpy(dtype=float)
    metrics = [info[m] for m in sorted(info)]
    k_idx = {m.metric: n for n, m in enumerate(metrics)}
    s_idx = {s: n for n, s in enumerate(scored)}
    values = np.full((len(metrics), len(items), len(systems)), np.nan)
    sub = scores[scores["item_id"].isin(items) & scores["condition"].isin(scored) & scores["metric"].isin(k_idx)]
    values[[k_idx[m] for m in sub["metric"]], [i_idx[i] for i in sub["item_id"]],
           [s_idx[s] for s in sub["condition"]]] = sub["value"].to_numpy(dtype=float)
    return Joined(grades, values, assessors, items, systems, scored, metrics, unmatched_rated, unmatched_scored,
                  dropped)


# ----------------------------------------------------------------------------------------------------------------
# Statistics with the two-way bootstrap
# ----------------------------------------------------------------------------------------------------------------


def _means(grades: np.ndarray, values: np.ndarray, weights: np.ndarray, items: np.ndarray):
    """Stimulus and system means for assessor weights [A] (counts) and drawn item indices [I'].

    Returns stimulus grade means [I', C], system grade means [C], system metric means [K, C].
    """
    g = grades[:, items, :]
    mask = np.isfinite(g)
    num = np.einsum("a,aic->ic", weights, np.where(mask, g, 0.0))
    den = np.einsum("a,aic->ic", weights, mask.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        stimulus = np.where(den > 0, num / den, np.nan)
        system = num.sum(axis=0) / den.sum(axis=0)
    v = values[:, items, :]
    counted = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        system_values = np.where(counted, v, 0.0).sum(axis=1) / counted.sum(axis=1)
    return stimulus, system, system_values


def _statistics(stimulus: np.ndarray, system: np.ndarray, values: np.ndarray, system_values: np.ndarray,
                items: np.ndarray) -> np.ndarray:
    """The :data:`STATISTICS` [K, 7] from means (``values`` [K, I, C] oriented, ``items`` the drawn indices)."""
    x = stimulus.ravel()
    y = values[:, items, :].reshape(values.shape[0], -1)
    sys_ok = np.isfinite(system)
    xs, ys = system[sys_ok], system_values[:, sys_ok]
    return np.stack([
        _masked(spearman, xs, ys), _masked(pearson, xs, ys), _masked(kendall, xs, ys),
        _masked(pairwise_accuracy, xs, ys),
        _masked(pearson, x, y), _masked(spearman, x, y), _masked(kendall, x, y),
    ], axis=1)


@dataclass
class Correlation:
    """Per metric: every statistic as an :class:`Interval`, and per system the means with their CIs."""

    metric: MetricInfo
    statistics: dict[str, Interval]
    undefined_resamples: dict[str, int]
    system_values: list[Interval]  # raw (not oriented) metric mean per system


def correlate_joined(joined: Joined, *, n_resamples: int = 2000, seed: int = 0, confidence: float = CONFIDENCE):
    """Point estimates and two-way bootstrap CIs; returns ([Correlation per metric], [Interval grade per system])."""
    if n_resamples < 1:
        raise CorrelateError(f"n_resamples must be at least 1, got {n_resamples}")
    grades, oriented = joined.grades, joined.oriented
    n_a, n_i = len(joined.assessors), len(joined.items)
    all_items = np.arange(n_i)
    stim, system, sys_vals = _means(grades, oriented, np.ones(n_a), all_items)
    estimate = _statistics(stim, system, oriented, sys_vals, all_items)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_resamples, *estimate.shape))
    boot_system = np.empty((n_resamples, system.size))
    boot_values = np.empty((n_resamples, *sys_vals.shape))
    for r in range(n_resamples):
        weights = np.bincount(rng.integers(0, n_a, n_a), minlength=n_a).astype(np.float64)
        items = rng.integers(0, n_i, n_i)
        s, sy, sv = _means(grades, oriented, weights, items)
        boot[r] = _statistics(s, sy, oriented, sv, items)
        boot_system[r], boot_values[r] = sy, sv
    alpha = (1.0 - confidence) / 2.0

    def interval(point: float, draws: np.ndarray, n: int) -> Interval:
        draws = draws[np.isfinite(draws)]
        if not np.isfinite(point) or draws.size == 0:
            return Interval(float(point), math.nan, math.nan, confidence, n, "two-way percentile bootstrap")
        low, high = np.quantile(draws, [alpha, 1.0 - alpha])
        return Interval(float(point), float(low), float(high), confidence, n, "two-way percentile bootstrap")

    n_stimuli = np.isfinite(stim).sum()
    out = []
    for k, info in enumerate(joined.metrics):
        sign = 1.0 if info.higher_is_better else -1.0
        stats = {}
        for j, name in enumerate(STATISTICS):
            n = int(n_stimuli) if name.startswith("stimulus") else len(joined.systems)
            stats[name] = interval(estimate[k, j], boot[:, k, j], n)
        undefined = {name: int((~np.isfinite(boot[:, k, j])).sum()) for j, name in enumerate(STATISTICS)}
        per_system = []
        for c in range(len(joined.systems)):
            iv = interval(sign * sys_vals[k, c], sign * boot_values[:, k, c], int(np.isfinite(joined.values[k, :, c])
                                                                                 .sum()))
            low, high = sorted((iv.low, iv.high))
            per_system.append(Interval(iv.estimate, low, high, confidence, iv.n, iv.method))
        out.append(Correlation(info, stats, undefined, per_system))
    grade_intervals = [interval(system[c], boot_system[:, c], int(np.isfinite(grades[:, :, c]).sum()))
                       for c in range(len(joined.systems))]
    return out, grade_intervals


# ----------------------------------------------------------------------------------------------------------------
# Tables and figures
# ----------------------------------------------------------------------------------------------------------------


def correlation_frame(results: Sequence[Correlation], joined: Joined):
    """One row per metric, sorted by system-level Spearman (best first, undefined last)."""
    import pandas as pd

    rows = []
    for res in results:
        row = {"metric": res.metric.metric, "value_column": res.metric.value_column, "unit": res.metric.unit,
               "higher_is_better": res.metric.higher_is_better, "n_systems": len(joined.systems),
               "n_items": len(joined.items), "n_assessors": len(joined.assessors),
               "n_stimuli": res.statistics["stimulus_pearson"].n}
        for name, iv in res.statistics.items():
            row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = iv.estimate, iv.low, iv.high
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values("system_spearman", ascending=False, na_position="last", kind="stable") \
        .reset_index(drop=True)


_LABELS = {"system_spearman": "system Spearman", "system_pearson": "system Pearson",
           "system_kendall": "system Kendall", "pairwise_accuracy": "pairwise accuracy",
           "stimulus_pearson": "stimulus Pearson", "stimulus_spearman": "stimulus Spearman",
           "stimulus_kendall": "stimulus Kendall"}


def _cell(row, name: str, low_high: str = "[{:.2f}, {:.2f}]") -> str:
    value = row[name]
    if not np.isfinite(value):
        return "n/a"
    ci = low_high.format(row[f"{name}_ci_low"], row[f"{name}_ci_high"]) if np.isfinite(row[f"{name}_ci_low"]) \
        else ""
    return f"{value:.2f} {ci}".strip()


def markdown_table(frame) -> str:
    lines = ["| metric | better | " + " | ".join(_LABELS[s] for s in STATISTICS) + " |",
             "|---|---|" + "---|" * len(STATISTICS)]
    for _, row in frame.iterrows():
        better = "higher" if row["higher_is_better"] else "lower"
        lines.append(f"| {row['value_column']} | {better} | " + " | ".join(_cell(row, s) for s in STATISTICS) + " |")
    return "\n".join(lines)


def latex_table(frame) -> str:
    def esc(text: str) -> str:
        return "".join("\\" + c if c in "&%$#_{}" else c for c in str(text))

    head = " & ".join(["Metric", "Better"] + [esc(_LABELS[s]) for s in STATISTICS])
    lines = ["\\begin{tabular}{ll" + "c" * len(STATISTICS) + "}", "\\hline", head + " \\\\", "\\hline"]
    for _, row in frame.iterrows():
        cells = [esc(row["value_column"]), "higher" if row["higher_is_better"] else "lower"]
        cells += [_cell(row, s, "[{:.2f}, {:.2f}]").replace(" [", " {\\scriptsize[") .replace("]", "]}")
                  if np.isfinite(row[f"{s}_ci_low"]) else _cell(row, s) for s in STATISTICS]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\hline", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def _axis_label(info: MetricInfo) -> str:
    unit = info.unit if info.unit and info.unit not in ("-", "nan") else "no unit"
    better = "higher" if info.higher_is_better else "lower"
    return f"{info.metric} ({unit}; {better} is better)"


def plot_metric(res: Correlation, joined: Joined, grades: Sequence[Interval], out_dir: Path) -> list[str]:
    """Per-system mean grade against mean metric value, both with their 95 % CIs; stimuli in grey behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = [m.metric for m in joined.metrics].index(res.metric.metric)
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    stim, _, _ = _means(joined.grades, joined.oriented, np.ones(len(joined.assessors)), np.arange(len(joined.items)))
    ax.scatter(joined.values[k].ravel(), stim.ravel(), s=10, color="0.75", label="stimulus (item x system)",
               zorder=1)
    x = np.array([iv.estimate for iv in res.system_values])
    y = np.array([iv.estimate for iv in grades])
    xerr = np.vstack([x - [iv.low for iv in res.system_values], [iv.high for iv in res.system_values] - x])
    yerr = np.vstack([y - [iv.low for iv in grades], [iv.high for iv in grades] - y])
    ax.errorbar(x, y, xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr), fmt="o", color="black", capsize=3,
                label="system mean, 95 % CI", zorder=2)
    for n, (xi, yi, name) in enumerate(zip(x, y, joined.systems)):  # alternate sides: close points stay legible
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4 if n % 2 == 0 else -10), fontsize=7)
    s = res.statistics
    ax.set_title(f"{res.metric.metric}: system Spearman* {s['system_spearman'].estimate:.2f} "
                 f"[{s['system_spearman'].low:.2f}, {s['system_spearman'].high:.2f}], "
                 f"stimulus Pearson* {s['stimulus_pearson'].estimate:.2f}\n"
                 f"{len(joined.systems)} systems, {len(joined.items)} items, {len(joined.assessors)} assessors "
                 "(*oriented: > 0 agrees with listeners)",
                 fontsize=9)
    ax.set_xlabel(_axis_label(res.metric))
    ax.set_ylabel("mean MUSHRA grade (0-100)")
    ax.set_ylim(0, 100)
    ax.grid(color="0.9")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    stem = out_dir / "plots" / f"correlation_{res.metric.metric}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    files = []
    for suffix in (".png", ".pdf"):
        fig.savefig(stem.with_suffix(suffix), dpi=150)
        files.append(str(stem.with_suffix(suffix)))
    plt.close(fig)
    return files


# ----------------------------------------------------------------------------------------------------------------
# The whole report
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class CorrelateResult:
    table: object  # DataFrame: correlations.csv
    joined: Joined
    screening: object
    files: list[str]

    def summary_text(self) -> str:
        s, j = self.screening, self.joined
        lines = [f"assessors: {len(s.assessors)} before post-screening, {len(s.kept)} after; joined: "
                 f"{len(j.systems)} systems x {len(j.items)} items, {len(j.assessors)} assessors"]
        if j.unmatched_rated:
            lines.append(f"rated conditions without scores (not systems): {', '.join(j.unmatched_rated)}")
        if j.unmatched_scored:
            lines.append(f"scored conditions without ratings: {', '.join(j.unmatched_scored)}")
        lines.append(markdown_table(self.table))
        return "\n".join(lines)


def correlate(
    ratings_path: str | os.PathLike,
    scores_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    condition_map: Sequence[str] | Mapping[str, str] | None = None,
    metrics: Sequence[str] | None = None,
    item_col: str | None = None,
    condition_col: str | None = None,
    assessor_col: str | None = None,
    rating_col: str | None = None,
    reference: str = "reference",
    anchor: str = "lowpass_7k",
    n_resamples: int = 2000,
    seed: int = 0,
) -> CorrelateResult:
    """Post-screen, join, correlate, and write CSV/Markdown/LaTeX/JSON tables and one figure per metric."""
    import pandas as pd

    ratings = load_listener_ratings(ratings_path, item_col=item_col, condition_col=condition_col,
                                    assessor_col=assessor_col, rating_col=rating_col)
    scores, info, skipped = load_scores(scores_path, metrics=metrics)
    screening = post_screen(ratings, reference=reference, anchor=anchor)
    if not screening.kept:
        raise CorrelateError(f"post-screening excluded all {len(screening.assessors)} assessors; nothing to correlate")
    kept = ratings[ratings["participant_id"].astype(str).isin(screening.kept)]
    anchors = [c for c in set(ratings["condition"]) if c in (reference, anchor, "lowpass_3k5")]
    joined = join(kept, scores, info, parse_condition_map(condition_map), ignore=anchors)
    results, grade_ci = correlate_joined(joined, n_resamples=n_resamples, seed=seed)
    table = correlation_frame(results, joined)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    stim, _, _ = _means(joined.grades, joined.oriented, np.ones(len(joined.assessors)), np.arange(len(joined.items)))
    counts = np.isfinite(joined.grades).sum(axis=0)
    stimuli = pd.DataFrame([
        {"item_id": item, "condition": system, "scored_condition": scored, "n_grades": int(counts[i, c]),
         "mean_grade": stim[i, c], **{m.value_column: joined.values[k, i, c] for k, m in enumerate(joined.metrics)}}
        for i, item in enumerate(joined.items) for c, (system, scored) in enumerate(zip(joined.systems, joined.scored))
    ])
    systems = pd.DataFrame([
        {"condition": system, "scored_condition": scored, "n_grades": grade_ci[c].n, "mean_grade": grade_ci[c].estimate,
         "mean_grade_ci_low": grade_ci[c].low, "mean_grade_ci_high": grade_ci[c].high,
         **{key: value for res in results for key, value in (
             (res.metric.value_column, res.system_values[c].estimate),
             (f"{res.metric.value_column}_ci_low", res.system_values[c].low),
             (f"{res.metric.value_column}_ci_high", res.system_values[c].high))}}
        for c, (system, scored) in enumerate(zip(joined.systems, joined.scored))
    ]).sort_values("mean_grade", ascending=False)
    tables = {"correlations.csv": table, "stimuli.csv": stimuli, "systems.csv": systems,
              "screening.csv": pd.DataFrame([asdict(a) for a in screening.assessors])}
    for name, frame in tables.items():
        frame.to_csv(out_dir / name, index=False)
        files.append(str(out_dir / name))
    (out_dir / "table.md").write_text(markdown_table(table) + "\n")
    (out_dir / "table.tex").write_text(latex_table(table))
    summary = {
        "ratings": str(ratings_path), "scores": str(scores_path),
        "assessors_before": len(screening.assessors), "assessors_after": len(screening.kept),
        "excluded": {a.participant_id: a.reason for a in screening.assessors if a.excluded},
        "screening_rules": {"reference": reference, "anchor": anchor},
        "systems": dict(zip(joined.systems, joined.scored)), "items": joined.items,
        "rated_conditions_without_scores": joined.unmatched_rated,
        "scored_conditions_without_ratings": joined.unmatched_scored,
        "items_not_in_both": joined.dropped_items, "set_metrics_skipped": skipped,
        "orientation": "lower-is-better metrics negated: positive correlation = agrees with listeners",
        "bootstrap": {"n_resamples": n_resamples, "seed": seed, "confidence": CONFIDENCE,
                      "resampled": "items and assessors, independently, with replacement",
                      "undefined_resamples": {r.metric.metric: r.undefined_resamples for r in results}},
        "correlations": json.loads(table.to_json(orient="records")),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    files += [str(out_dir / n) for n in ("table.md", "table.tex", "summary.json")]
    for res in results:
        files += plot_metric(res, joined, grade_ci, out_dir)
    return CorrelateResult(table, joined, screening, files)
