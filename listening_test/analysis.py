"""MUSHRA analysis per ITU-R BS.1534-3: post-screening of assessors, statistics, pairwise tests, plots, tables.

Post-screening (BS.1534-3, section 4.1.2), applied exactly: an assessor is excluded if they rate

- the hidden reference below 90 on more than 15 % of the items they rated, or
- the mid-range (7 kHz) anchor above 90 on more than 15 % of the items they rated, where a high anchor grade on an
  item on which more than 25 % of all assessors rate that anchor above 90 does not count against anyone. The
  exemption removes such items from the numerator only: the denominator stays every item the assessor graded the
  anchor on (3 high grades on 20 items is 15 %, kept, whether or not 2 of the 20 items are exempt).

Behaviour screening (codecbench's rule, not BS.1534-3's; applied first, when the ratings carry the page's behaviour
record ``played_s``, as codecbench exports do): an item counts as *not listened* for an assessor when some stimulus
they graded on it was played for less than ``min_played_s`` (default 1 s); an assessor with more than 15 % of their
recorded items not listened is excluded before the BS.1534-3 rules run, so that non-listening raters (bots grading
everything 100) cannot push items over the 25 % anchor exemption for everyone else.

Attention-check screening (codecbench's rule, not BS.1534-3's; applied with the behaviour rule, before the BS.1534-3
rules, when the ratings carry ``attention_checks`` and ``attention_failed`` per assessor, as codecbench exports of a
test with attention pages do): an assessor who failed more than ``max_attention_failures`` (default 0) of their
attention-check pages is excluded. A failed check is a grade above the page's threshold for a stimulus that was
noise at 0 dB SNR (see :mod:`.attention`); like the behaviour rule it removes raters who do not attend, whose grades
would otherwise also decide the 25 % anchor exemption for everyone.

Statistics over the kept assessors: mean with a 95 % **cluster** bootstrap CI that resamples assessors (all grades of
a drawn assessor together), since one assessor's grades are not independent; median, quartiles and IQR over the
individual grades; per condition and per item x condition (one grade per assessor there, so the cluster bootstrap is
the ordinary one). A CI over fewer than ``min_assessors`` (default 10) assessors is flagged (``ci_warning``) and
warned about (:class:`FewAssessorsWarning`). Pairwise comparisons on grades paired by (assessor, item): Wilcoxon
signed-rank (scipy, two-sided) and the paired permutation (randomisation) test of the mean difference
(BS.1534-3 Attachment 3: exact sign-flip enumeration up to 16 pairs, else ``n_resamples`` Monte-Carlo draws),
each with Holm's correction over all pairs; the CI of the mean difference is a cluster bootstrap over assessors.

Ratings frame columns: ``participant_id``, ``item_id``, ``condition``, ``score`` (0-100).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from codecbench.bench.core.errors import CodecbenchError
from codecbench.bench.core.stats import bootstrap_ci

REQUIRED_COLUMNS = ("participant_id", "item_id", "condition", "score")
REFERENCE_THRESHOLD = 90  # hidden reference graded below this counts against the assessor
ANCHOR_THRESHOLD = 90  # mid-range anchor graded above this counts against the assessor
MAX_ITEM_FRACTION = 0.15  # more than this fraction of items -> excluded
ANCHOR_ITEM_FRACTION = 0.25  # items where more than this fraction of assessors grade the anchor > 90: not used
EXACT_PERMUTATION_MAX_PAIRS = 16
MIN_ASSESSORS = 10  # a CI over fewer assessors is flagged and warned about
MIN_PLAYED_S = 1.0  # behaviour rule: a stimulus played for less than this was not listened to
MAX_ATTENTION_FAILURES = 0  # attention rule: more failed attention-check pages than this -> excluded


class FewAssessorsWarning(UserWarning):
    """A confidence interval rests on fewer assessors than ``min_assessors``."""


class AnalysisError(CodecbenchError):
    """Ratings cannot be analysed (missing columns, scores out of range, duplicates, no reference)."""


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------


def load_ratings(path: str | os.PathLike):
    """Ratings from a server database (.sqlite/.db) or an export (.csv/.parquet), checked; a pandas DataFrame."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"{path}: file does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype={"participant_id": str, "item_id": str, "condition": str})
    elif suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".sqlite", ".sqlite3", ".db"):
        from codecbench.listening_test.store import open_existing

        frame = open_existing(path).ratings_frame()
    else:
        raise AnalysisError(f"{path}: unknown ratings file type {suffix!r}; use .sqlite, .db, .csv or .parquet")
    return check_ratings(frame, str(path))


def check_ratings(frame, source: str = "ratings"):
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{source}: missing columns {missing} (needed: {list(REQUIRED_COLUMNS)})")
    if frame.empty:
        raise AnalysisError(f"{source}: no ratings")
    scores = frame["score"].to_numpy(dtype=float)
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 100)
    if bad.any():
        raise AnalysisError(f"{source}: {int(bad.sum())} score(s) outside 0-100, e.g. {scores[bad][0]}")
    dup = frame.duplicated(["participant_id", "item_id", "condition"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise AnalysisError(
            f"{source}: assessor {row.participant_id} graded {row.condition} on item {row.item_id} more than once"
        )
    return frame.assign(score=frame["score"].astype(float))


# ----------------------------------------------------------------------------------------------------------------
# Post-screening
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssessorScreening:
    """One assessor's post-screening record (fractions are of the items counted for each rule)."""

    participant_id: str
    n_items: int
    reference_below_90: int
    reference_fraction: float
    anchor_items_counted: int
    anchor_above_90: int
    anchor_fraction: float
    excluded: bool
    reason: str
    behaviour_items_recorded: int = 0
    behaviour_items_not_listened: int = 0
    behaviour_fraction: float = 0.0
    attention_checks: int = 0
    attention_failed: int = 0


@dataclass(frozen=True)
class Screening:
    assessors: tuple[AssessorScreening, ...]
    anchor_items_not_used: tuple[str, ...]
    reference: str
    anchor: str
    kept: tuple[str, ...] = field(default=())
    excluded: tuple[str, ...] = field(default=())


def behaviour_flags(ratings, min_played_s: float = MIN_PLAYED_S) -> dict[str, tuple[int, int]]:
    """Per assessor: (items with a behaviour record, items on which some graded stimulus was played for less than
    ``min_played_s``). Empty when the ratings have no ``played_s`` record."""
    if "played_s" not in ratings.columns or ratings["played_s"].isna().all():
        return {}
    recorded = ratings[ratings["played_s"].notna()]
    short = recorded.assign(short=recorded["played_s"].astype(float) < min_played_s)
    per_item = short.groupby(["participant_id", "item_id"])["short"].any().reset_index()
    out = {}
    for pid, group in per_item.groupby("participant_id"):
        out[str(pid)] = (len(group), int(group["short"].sum()))
    return out


def attention_flags(ratings) -> dict[str, tuple[int, int]]:
    """Per assessor: (attention-check pages, failed ones), from the export columns ``attention_checks`` and
    ``attention_failed``; empty when the ratings have none (no attention pages in the test, or an external CSV)."""
    if not {"attention_checks", "attention_failed"} <= set(ratings.columns):
        return {}
    per = ratings.groupby(ratings["participant_id"].astype(str))[["attention_checks", "attention_failed"]].max()
    if per["attention_checks"].fillna(0).sum() == 0:
        return {}
    return {pid: (int(row.attention_checks), int(row.attention_failed)) for pid, row in per.fillna(0).iterrows()}


def post_screen(ratings, *, reference: str = "reference", anchor: str | None = "lowpass_7k",
                trials_per_assessor: int | None = None, behaviour: bool = True,
                min_played_s: float = MIN_PLAYED_S, attention: bool = True,
                max_attention_failures: int = MAX_ATTENTION_FAILURES) -> Screening:
    """Apply the BS.1534-3 post-screening rules (module docstring) to ``ratings``; nothing is averaged here.

    ``anchor=None`` applies the hidden-reference rule only. ``trials_per_assessor``: when ``ratings`` is a subset of a test in which every assessor rated this many trials,
    the fractions are taken over that many trials (e.g. 8 for a test where each assessor rated 8 of 16 signals)
    instead of the trials present in ``ratings``.
    """
    if trials_per_assessor is not None and trials_per_assessor < 1:
        raise AnalysisError(f"trials_per_assessor must be >= 1, got {trials_per_assessor}")
    conditions = set(ratings["condition"])
    if reference not in conditions:
        raise AnalysisError(f"hidden reference condition '{reference}' not in the ratings; conditions: {sorted(conditions)}")
    if anchor is not None and anchor not in conditions:
        raise AnalysisError(f"anchor condition '{anchor}' not in the ratings; conditions: {sorted(conditions)}")
    flags = behaviour_flags(ratings, min_played_s) if behaviour else {}
    not_listening = {pid for pid, (n, bad) in flags.items() if n and bad / n > MAX_ITEM_FRACTION}
    checks = attention_flags(ratings) if attention else {}
    inattentive = {pid for pid, (_, failed) in checks.items() if failed > max_attention_failures}
    listening = ratings[~ratings["participant_id"].astype(str).isin(not_listening | inattentive)]
    ref = ratings[ratings["condition"] == reference]
    anc = ratings[ratings["condition"] == anchor]
    # the anchor exemption is decided among the assessors who listened (bots must not exempt items for everyone)
    anc_listening = listening[listening["condition"] == anchor]
    n_assessors = listening.groupby("item_id")["participant_id"].nunique()
    anchor_high_share = (anc_listening.assign(high=anc_listening["score"] > ANCHOR_THRESHOLD)
                         .groupby("item_id")["high"].sum() / n_assessors.reindex(anc_listening["item_id"].unique()))
    not_used = sorted(anchor_high_share[anchor_high_share > ANCHOR_ITEM_FRACTION].index)
    records = []
    for pid in sorted(ratings["participant_id"].unique()):
        mine_ref = ref[ref["participant_id"] == pid]
        mine_anc = anc[anc["participant_id"] == pid]
        n_items = int(ratings[ratings["participant_id"] == pid]["item_id"].nunique())
        ref_low = int((mine_ref["score"] < REFERENCE_THRESHOLD).sum())
        n_ref = trials_per_assessor or len(mine_ref)
        ref_frac = ref_low / n_ref if n_ref else 0.0
        # the exemption removes exempt items from the numerator only (BS.1534-3 4.1.2; see the module docstring)
        anc_high = int(((mine_anc["score"] > ANCHOR_THRESHOLD) & ~mine_anc["item_id"].isin(not_used)).sum())
        n_anc = (trials_per_assessor or len(mine_anc)) if anchor is not None else 0
        anc_frac = anc_high / n_anc if n_anc else 0.0
        reasons = []
        n_recorded, n_short = flags.get(str(pid), (0, 0))
        behaviour_frac = n_short / n_recorded if n_recorded else 0.0
        if str(pid) in not_listening:
            reasons.append(f"did not listen: a stimulus played < {min_played_s:g} s on {n_short} of {n_recorded} "
                           f"items ({100 * behaviour_frac:.1f} % > {100 * MAX_ITEM_FRACTION:.0f} %)")
        n_checks, n_failed = checks.get(str(pid), (0, 0))
        if str(pid) in inattentive:
            reasons.append(f"failed {n_failed} of {n_checks} attention checks (more than {max_attention_failures} "
                           "allowed)")
        if ref_frac > MAX_ITEM_FRACTION:
            reasons.append(f"hidden reference below {REFERENCE_THRESHOLD} on {ref_low} of {n_ref} items "
                           f"({100 * ref_frac:.1f} % > {100 * MAX_ITEM_FRACTION:.0f} %)")
        if anc_frac > MAX_ITEM_FRACTION:
            reasons.append(f"{anchor} above {ANCHOR_THRESHOLD} on {anc_high} of {n_anc} items, exempt items not "
                           f"counted against ({100 * anc_frac:.1f} % > {100 * MAX_ITEM_FRACTION:.0f} %)")
        records.append(AssessorScreening(str(pid), n_items, ref_low, ref_frac, n_anc, anc_high, anc_frac,
                                         bool(reasons), "; ".join(reasons), n_recorded, n_short, behaviour_frac,
                                         n_checks, n_failed))
    return Screening(
        assessors=tuple(records), anchor_items_not_used=tuple(not_used), reference=reference, anchor=anchor,
        kept=tuple(r.participant_id for r in records if not r.excluded),
        excluded=tuple(r.participant_id for r in records if r.excluded),
    )


# ----------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------


def cluster_bootstrap_ci(values, clusters, *, n_resamples: int = 10_000, seed: int = 0,
                         confidence: float = 0.95) -> tuple[float, float, float]:
    """Percentile CI of the grand mean of ``values`` [N] resampling whole ``clusters`` [N] (assessors) with
    replacement; each draw's mean is sum(values of drawn clusters) / count. Returns (mean, low, high)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise AnalysisError("bootstrap of an empty sample")
    _, inverse = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(np.float64)
    estimate = float(values.mean())
    k = sums.size
    if k == 1:
        return estimate, estimate, estimate
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 1000):
        stop = min(start + 1000, n_resamples)
        idx = rng.integers(0, k, size=(stop - start, k))
        means[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return estimate, float(low), float(high)


def describe(scores: np.ndarray, *, assessors=None, n_resamples: int = 10_000, seed: int = 0,
             confidence: float = 0.95, min_assessors: int = MIN_ASSESSORS) -> dict:
    """Mean with a 95 % CI, median, quartiles and IQR of ``scores`` [N].

    With ``assessors`` [N] the CI is the cluster bootstrap over assessors, else the percentile bootstrap over the
    grades (each grade one assessor). ``ci_warning`` is set when the CI rests on fewer than ``min_assessors``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if assessors is None:
        ci = bootstrap_ci(scores, n_resamples=n_resamples, seed=seed, confidence=confidence)
        mean, low, high, n_assessors = ci.estimate, ci.low, ci.high, int(scores.size)
    else:
        mean, low, high = cluster_bootstrap_ci(scores, assessors, n_resamples=n_resamples, seed=seed,
                                               confidence=confidence)
        n_assessors = int(np.unique(np.asarray(assessors).astype(str)).size)
    q25, median, q75 = np.percentile(scores, [25, 50, 75])
    warning = (f"CI over {n_assessors} assessor(s) < {min_assessors}: too few for a reliable interval"
               if n_assessors < min_assessors else "")
    return {"n": int(scores.size), "n_assessors": n_assessors, "mean": mean, "ci_low": low, "ci_high": high,
            "median": float(median), "q25": float(q25), "q75": float(q75), "iqr": float(q75 - q25),
            "ci_warning": warning}


def summarise(ratings, by: list[str], *, n_resamples: int = 10_000, seed: int = 0,
              min_assessors: int = MIN_ASSESSORS):
    """Per group of ``by``: :func:`describe` with the CI clustered by assessor."""
    import pandas as pd

    rows = []
    for key, group in ratings.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), **describe(
            group["score"].to_numpy(), assessors=group["participant_id"].to_numpy(), n_resamples=n_resamples,
            seed=seed, min_assessors=min_assessors)})
    return pd.DataFrame(rows)


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def permutation_test(differences, *, n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired permutation (sign-flip) test of mean(differences) = 0; the p-value.

    Exact enumeration of all 2^N sign patterns for N <= 16, else ``n_resamples`` random patterns with
    p = (1 + hits) / (1 + n_resamples).
    """
    d = np.asarray(differences, dtype=np.float64)
    n = d.size
    if n == 0:
        raise AnalysisError("permutation test of an empty sample")
    observed = abs(d.mean())
    tolerance = 1e-9 * max(1.0, observed)
    if n <= EXACT_PERMUTATION_MAX_PAIRS:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        means = np.abs(signs @ d) / n
        return float(np.mean(means >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_resamples, 1000):
        size = min(1000, n_resamples - start)
        signs = rng.choice((-1.0, 1.0), size=(size, n))
        hits += int(np.sum(np.abs(signs @ d) / n >= observed - tolerance))
    return (1 + hits) / (1 + n_resamples)


def pairwise_tests(ratings, *, n_resamples: int = 10_000, seed: int = 0):
    """Every pair of conditions on grades paired by (assessor, item): mean difference with bootstrap CI,
    Wilcoxon signed-rank and permutation p-values, both also Holm-corrected over all pairs."""
    import pandas as pd
    from scipy import stats

    wide = ratings.pivot_table(index=["participant_id", "item_id"], columns="condition", values="score")
    rows = []
    for a, b in itertools.combinations(sorted(wide.columns), 2):
        pair = wide[[a, b]].dropna()
        d = (pair[a] - pair[b]).to_numpy()
        if d.size == 0:
            continue
        _, ci_low, ci_high = cluster_bootstrap_ci(d, pair.index.get_level_values("participant_id").to_numpy(),
                                                  n_resamples=n_resamples, seed=seed)
        if np.all(d == 0):
            w_stat, w_p = 0.0, 1.0
        else:
            result = stats.wilcoxon(pair[a], pair[b], zero_method="wilcox", alternative="two-sided")
            w_stat, w_p = float(result.statistic), float(result.pvalue)
        rows.append({"condition_a": a, "condition_b": b, "n_pairs": int(d.size), "mean_difference": float(d.mean()),
                     "difference_ci_low": ci_low, "difference_ci_high": ci_high, "wilcoxon_statistic": w_stat,
                     "wilcoxon_p": w_p, "permutation_p": permutation_test(d, n_resamples=n_resamples, seed=seed)})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["wilcoxon_p_holm"] = holm(frame["wilcoxon_p"])
        frame["permutation_p_holm"] = holm(frame["permutation_p"])
    return frame


# ----------------------------------------------------------------------------------------------------------------
# The whole analysis
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AnalysisResult:
    screening: Screening
    conditions: object  # DataFrame: per condition
    items: object  # DataFrame: per item x condition
    pairwise: object  # DataFrame
    files: list[str]

    def summary_text(self) -> str:
        s = self.screening
        lines = [f"assessors: {len(s.assessors)} before post-screening, {len(s.kept)} after"]
        for a in s.assessors:
            if a.excluded:
                lines.append(f"  excluded {a.participant_id}: {a.reason}")
        if s.anchor_items_not_used:
            lines.append(f"items exempt from the anchor rule (> 25 % of assessors rate {s.anchor} above 90; a high "
                         f"anchor grade there counts against no one): {', '.join(s.anchor_items_not_used)}")
        lines.append(markdown_table(self.conditions))
        lines += [f"WARNING {c}: {w}" for c, w in zip(self.conditions["condition"], self.conditions["ci_warning"]) if w]
        return "\n".join(lines)


def markdown_table(conditions) -> str:
    lines = ["| condition | N | mean | 95 % CI | median | IQR |", "|---|---:|---:|---|---:|---:|"]
    for r in conditions.itertuples(index=False):
        lines.append(f"| {r.condition} | {r.n} | {r.mean:.1f} | [{r.ci_low:.1f}, {r.ci_high:.1f}] | {r.median:.1f} "
                     f"| {r.iqr:.1f} |")
    return "\n".join(lines)


def _html_table(frame, columns: list[str]) -> str:
    import html

    def cell(v) -> str:
        if isinstance(v, bool | np.bool_):
            return f"<td>{'yes' if v else 'no'}</td>"
        if isinstance(v, float):
            return f"<td>{v:.3g}</td>" if abs(v) < 1e-2 and v != 0 else f"<td>{v:.2f}</td>"
        if isinstance(v, int | np.integer):
            return f"<td>{v}</td>"
        return f"<td class='t'>{html.escape(str(v))}</td>"  # text: left-aligned, may wrap

    head = "".join(f"<th>{html.escape(c).replace('_', '_<wbr>')}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(getattr(r, c)) for c in columns) + "</tr>"
                   for r in frame.itertuples(index=False))
    return f"<div class='wrap'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def questionnaire_answers(ratings) -> list[dict]:
    """One row per (assessor, question) with a non-empty answer, from the export column ``questionnaire_json``."""
    if "questionnaire_json" not in ratings.columns:
        return []
    rows = []
    for pid, blob in ratings.groupby(ratings["participant_id"].astype(str))["questionnaire_json"].first().items():
        try:
            answers = json.loads(blob) if isinstance(blob, str) and blob else {}
        except ValueError:
            continue
        if isinstance(answers, dict):
            rows += [{"participant_id": pid, "question": str(q), "answer": str(a)} for q, a in sorted(answers.items())
                     if str(a).strip()]
    return rows


def html_report(screening: Screening, conditions, pairwise, out_dir: Path, answers: list[dict] | None = None) -> str:
    """The researcher's results page: one self-contained HTML file (plots embedded; every text escaped).
    ``conditions`` None: no assessor was kept; the page shows the screening and the answers only."""
    import base64
    import html

    import pandas as pd

    if conditions is None:
        conditions = pd.DataFrame(columns=["condition", "n", "n_assessors", "mean", "ci_low", "ci_high", "median",
                                           "iqr", "ci_warning"])
        pairwise = pd.DataFrame()
    kept, total = len(screening.kept), len(screening.assessors)
    screening_frame = pd.DataFrame([asdict(a) for a in screening.assessors])
    warnings_html = "".join(f"<p class='warn'>WARNING {html.escape(str(c))}: {html.escape(w)}</p>"
                            for c, w in zip(conditions["condition"], conditions["ci_warning"]) if w)
    images = ""
    for name in ("mushra_means", "mushra_box"):
        png = out_dir / "plots" / f"{name}.png"
        if png.is_file():
            images += f"<img alt='{name}' src='data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}'>"
    exempt = ", ".join(html.escape(i) for i in screening.anchor_items_not_used) or "none"
    pair_cols = ["condition_a", "condition_b", "n_pairs", "mean_difference", "difference_ci_low",
                 "difference_ci_high", "wilcoxon_p_holm", "permutation_p_holm"]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>MUSHRA results</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:20px auto;padding:0 12px;color:#222}}
table{{border-collapse:collapse;margin:8px 0 18px;font-size:.9rem}}td,th{{border:1px solid #ccc;padding:3px 7px;
text-align:right}}th{{background:#f0f2f5}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}
.warn{{color:#a00}}.wrap{{overflow-x:auto}}td.t{{text-align:left;min-width:8em;max-width:32em}}
th{{vertical-align:bottom}}</style></head><body>
<h1>MUSHRA results</h1>
<p>{total} assessor{'' if total == 1 else 's'} before post-screening, {kept} after. Items exempt from the anchor rule: {exempt}.
CIs: 95 % cluster bootstrap over assessors.</p>{warnings_html}
<h2>Conditions</h2>{_html_table(conditions, ["condition", "n", "n_assessors", "mean", "ci_low", "ci_high",
                                            "median", "iqr"]) if not conditions.empty else
                   "<p class='warn'>No assessor is left after post-screening: nothing to average yet.</p>"}
{images}
<h2>Post-screening (every assessor)</h2>{_html_table(screening_frame, ["participant_id", "n_items",
    "reference_below_90", "anchor_above_90", "behaviour_items_not_listened", "attention_checks", "attention_failed",
    "excluded", "reason"])}
<h2>Pairwise tests (Holm-corrected)</h2>{_html_table(pairwise, pair_cols) if not pairwise.empty else "<p>none</p>"}
<h2>Questionnaire answers</h2>{_html_table(pd.DataFrame(answers), ["participant_id", "question", "answer"])
                               if answers else "<p>none</p>"}
</body></html>
"""


def screening_report(ratings, *, reference: str = "reference", anchor: str | None = "lowpass_7k", **rules) -> str:
    """The results page when post-screening keeps no one: every assessor's screening record and the answers."""
    ratings = check_ratings(ratings)
    screening = post_screen(ratings, reference=reference, anchor=anchor, **rules)
    return html_report(screening, None, None, Path("."), questionnaire_answers(ratings))


def latex_table(conditions) -> str:
    def esc(text: str) -> str:
        return "".join("\\" + c if c in "&%$#_{}" else c for c in str(text))

    lines = ["\\begin{tabular}{lrrcrr}", "\\hline",
             "Condition & $N$ & Mean & 95\\,\\% CI & Median & IQR \\\\", "\\hline"]
    for r in conditions.itertuples(index=False):
        lines.append(f"{esc(r.condition)} & {r.n} & {r.mean:.1f} & [{r.ci_low:.1f}, {r.ci_high:.1f}] & "
                     f"{r.median:.1f} & {r.iqr:.1f} \\\\")
    lines += ["\\hline", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def _order(conditions, reference: str, anchor: str) -> list[str]:
    """Plot order: hidden reference, then conditions by decreasing mean, anchors last."""
    anchors = [c for c in conditions["condition"] if c in (anchor, "lowpass_3k5")]
    rest = conditions[~conditions["condition"].isin([reference, *anchors])].sort_values("mean", ascending=False)
    head = [reference] if reference in set(conditions["condition"]) else []
    return head + list(rest["condition"]) + sorted(anchors, key=lambda c: c != anchor)


def plot(ratings, conditions, out_dir: Path, order: list[str], n_assessors: int) -> list[str]:
    """Box plot and mean-with-95 %-CI plot per condition (PNG and PDF), like the S-PRESSO paper's Figure 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    by_name = conditions.set_index("condition")
    width = max(5.0, 0.75 * len(order) + 1.5)
    fig, ax = plt.subplots(figsize=(width, 4.0))
    ax.boxplot([ratings.loc[ratings["condition"] == c, "score"].to_numpy() for c in order], whis=1.5,
               showmeans=True, meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"})
    ax.set_xticks(range(1, len(order) + 1), order, rotation=30, ha="right")
    _style(ax, f"MUSHRA grades ({n_assessors} assessors after post-screening)")
    files += _save(fig, out_dir / "plots" / "mushra_box")
    fig, ax = plt.subplots(figsize=(width, 4.0))
    x = np.arange(len(order))
    means = by_name.loc[order, "mean"].to_numpy()
    err = np.vstack([means - by_name.loc[order, "ci_low"].to_numpy(), by_name.loc[order, "ci_high"].to_numpy() - means])
    ax.errorbar(x, means, yerr=err, fmt="o", capsize=4, color="black")
    ax.set_xticks(x, order, rotation=30, ha="right")
    _style(ax, "Mean MUSHRA grade with 95 % CI (bootstrap over assessors)")
    files += _save(fig, out_dir / "plots" / "mushra_means")
    return files


def _style(ax, title: str) -> None:
    for low, label in zip(range(0, 100, 20), ("Bad", "Poor", "Fair", "Good", "Excellent")):
        ax.axhline(low, color="0.85", linewidth=0.8, zorder=0)
        ax.text(1.01, (low + 10) / 100, label, transform=ax.transAxes, fontsize=8, va="center", color="0.4")
    ax.set_ylim(0, 100)
    ax.set_ylabel("MUSHRA grade (0-100)")
    ax.set_title(title, fontsize=10)


def _save(fig, stem: Path) -> list[str]:
    import matplotlib.pyplot as plt

    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    paths = []
    for suffix in (".png", ".pdf"):
        fig.savefig(stem.with_suffix(suffix), dpi=150)
        paths.append(str(stem.with_suffix(suffix)))
    plt.close(fig)
    return paths


def analyze(
    ratings_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    reference: str = "reference",
    anchor: str = "lowpass_7k",
    n_resamples: int = 10_000,
    seed: int = 0,
    min_assessors: int = MIN_ASSESSORS,
    trials_per_assessor: int | None = None,
    behaviour: bool = True,
    min_played_s: float = MIN_PLAYED_S,
    attention: bool = True,
    max_attention_failures: int = MAX_ATTENTION_FAILURES,
) -> AnalysisResult:
    """Load ratings, post-screen, summarise, test and plot; writes CSV/Markdown/LaTeX/JSON/PNG/PDF to ``out_dir``."""
    ratings = load_ratings(ratings_path)
    return analyze_frame(ratings, out_dir, reference=reference, anchor=anchor, n_resamples=n_resamples, seed=seed,
                         min_assessors=min_assessors, trials_per_assessor=trials_per_assessor, behaviour=behaviour,
                         min_played_s=min_played_s, attention=attention, max_attention_failures=max_attention_failures)


def analyze_frame(ratings, out_dir, *, reference="reference", anchor="lowpass_7k", n_resamples=10_000, seed=0,
                  min_assessors: int = MIN_ASSESSORS, trials_per_assessor: int | None = None,
                  behaviour: bool = True, min_played_s: float = MIN_PLAYED_S, attention: bool = True,
                  max_attention_failures: int = MAX_ATTENTION_FAILURES):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ratings = check_ratings(ratings)
    screening = post_screen(ratings, reference=reference, anchor=anchor, trials_per_assessor=trials_per_assessor,
                            behaviour=behaviour, min_played_s=min_played_s, attention=attention,
                            max_attention_failures=max_attention_failures)
    if not screening.kept:
        raise AnalysisError(f"post-screening excluded all {len(screening.assessors)} assessors; nothing to analyse")
    kept = ratings[ratings["participant_id"].astype(str).isin(screening.kept)]
    conditions = summarise(kept, ["condition"], n_resamples=n_resamples, seed=seed, min_assessors=min_assessors)
    items = summarise(kept, ["item_id", "condition"], n_resamples=n_resamples, seed=seed, min_assessors=min_assessors)
    flagged = conditions[conditions["ci_warning"] != ""]
    if not flagged.empty:
        warnings.warn(f"{len(flagged)} condition CI(s) rest on fewer than {min_assessors} assessors "
                      f"(e.g. {flagged['condition'].iloc[0]}: {flagged['n_assessors'].iloc[0]}); "
                      "see ci_warning in conditions.csv", FewAssessorsWarning, stacklevel=2)
    pairwise = pairwise_tests(kept, n_resamples=n_resamples, seed=seed)
    order = _order(conditions, reference, anchor)
    conditions = conditions.set_index("condition").loc[order].reset_index()

    import pandas as pd

    files = []
    tables = {
        "screening.csv": pd.DataFrame([asdict(a) for a in screening.assessors]),
        "conditions.csv": conditions, "items.csv": items, "pairwise.csv": pairwise,
    }
    for name, frame in tables.items():
        frame.to_csv(out_dir / name, index=False)
        files.append(str(out_dir / name))
    (out_dir / "table.md").write_text(markdown_table(conditions) + "\n")
    (out_dir / "table.tex").write_text(latex_table(conditions))
    summary = {
        "assessors_before": len(screening.assessors), "assessors_after": len(screening.kept),
        "excluded": {a.participant_id: a.reason for a in screening.assessors if a.excluded},
        "anchor_items_not_used": list(screening.anchor_items_not_used),
        "rules": {"reference": reference, "anchor": anchor, "reference_below": REFERENCE_THRESHOLD,
                  "anchor_above": ANCHOR_THRESHOLD, "max_item_fraction": MAX_ITEM_FRACTION,
                  "anchor_item_fraction": ANCHOR_ITEM_FRACTION, "trials_per_assessor": trials_per_assessor,
                  "behaviour_rule": behaviour, "min_played_s": min_played_s, "attention_rule": attention,
                  "max_attention_failures": max_attention_failures},
        "bootstrap": {"n_resamples": n_resamples, "seed": seed, "confidence": 0.95, "clustered_by": "assessor",
                      "min_assessors": min_assessors},
        "conditions": json.loads(conditions.to_json(orient="records")),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    files += [str(out_dir / n) for n in ("table.md", "table.tex", "summary.json")]
    files += plot(kept, conditions, out_dir, order, len(screening.kept))
    (out_dir / "report.html").write_text(html_report(screening, conditions, pairwise, out_dir,
                                                     questionnaire_answers(ratings)))
    files.append(str(out_dir / "report.html"))
    assert not any(math.isnan(v) for v in conditions["mean"])
    return AnalysisResult(screening, conditions, items, pairwise, files)
