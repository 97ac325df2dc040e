"""Paper tables: LaTeX (booktabs), Markdown, HTML and CSV, from the per-point summary and the comparisons.

The summary tables follow S-PRESSO's Tables 1 and 2: one table for continuous codecs (compression ratio and
frame-rate columns) and one for discrete codecs (bitrate and frame-rate columns), then one column per metric with
its unit and direction arrow, each cell the mean over items +/- the half-width of its bootstrap 95 % CI. The best
value of each column (among non-anchor rows, compared at the printed precision, direction respected) is bold;
anchors follow in their own block and are never bold.
"""

from __future__ import annotations

import html as html_lib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from codecbench.bench.report.aggregate import metric_info, rate_of

OUTLIER_Z = 3.5
MIN_RELATIVE_SPREAD = 0.01  # floor of the robust spread, as a fraction of |median| (outlier table)
"""Robust z-score (|x - median| / (1.4826 MAD)) above which a per-item value is flagged (Iglewicz & Hoaglin)."""


@dataclass(frozen=True)
class Cell:
    """One table cell: text, or a number (``value``) with an optional +/- ``half`` printed with ``digits``."""

    text: str = ""
    value: float | None = None
    half: float | None = None
    digits: int = 2
    bold: bool = False
    mark: str = ""

    def plain(self, pm: str = " ± ") -> str:
        if self.value is None:
            return self.text
        if not math.isfinite(self.value):
            return "–"
        out = f"{self.value:.{self.digits}f}"
        if self.half is not None and math.isfinite(self.half):
            out += f"{pm}{self.half:.{self.digits}f}"
        return out + self.mark


@dataclass(frozen=True)
class Table:
    """Rendered by :func:`to_latex`, :func:`to_markdown`, :func:`to_html`. ``blocks`` = (block title, rows)."""

    caption: str
    columns: tuple[str, ...]
    blocks: tuple[tuple[str, tuple[tuple[Cell, ...], ...]], ...]
    align: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def digits_for(halves: np.ndarray, means: np.ndarray) -> int:
    """Decimals that show the CI half-width with two significant digits (three significant digits without CI)."""
    halves = halves[np.isfinite(halves) & (halves > 0)]
    if halves.size:
        return int(np.clip(1 - math.floor(math.log10(float(np.median(halves)))), 0, 4))
    means = np.abs(means[np.isfinite(means) & (means != 0)])
    if means.size:
        return int(np.clip(2 - math.floor(math.log10(float(np.median(means)))), 0, 4))
    return 2


def _arrow(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def metric_header(metric: str, unit: str, higher_is_better: bool) -> str:
    return f"{metric}{f' ({unit})' if unit else ''} {_arrow(higher_is_better)}"


def _fmt_rate(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3g}" if value < 100 else f"{value:.0f}"


def summary_table(summary: pd.DataFrame, group: str, metrics: Sequence[str] | None = None) -> Table | None:
    """The Table 1 (``continuous``) or Table 2 (``discrete``) style table, anchors appended; None if no rows."""
    rows = summary[summary["group"] == group]
    if rows.empty:
        return None
    info = metric_info(summary)
    metrics = [m for m in (metrics or list(info)) if m in info]
    anchors = summary[summary["group"] == "anchor"]
    rate_col = "bitrate (kbps)" if group == "discrete" else "compression ratio"
    with_frame_rate = bool(np.isfinite(rows["frame_rate_hz"]).any())  # classic codecs have none: no empty column
    rate_cols = (rate_col, "frame rate (Hz)") if with_frame_rate else (rate_col,)
    columns = ("system", "point") + rate_cols + tuple(metric_header(m, *info[m]) for m in metrics)

    def keyed(part: pd.DataFrame) -> list[tuple]:
        pts = part.drop_duplicates(["run", "codec", "point"]).copy()
        pts["_rate"] = [rate_of(r) for _, r in pts.iterrows()]
        desc = group == "discrete"  # highest bitrate first (Table 2); lowest compression first (Table 1)
        pts = pts.sort_values(["_rate", "system"], ascending=[not desc, True], na_position="last")
        return [
            tuple(r) for r in pts[["run", "codec", "point", "system", "_rate", "frame_rate_hz"]].itertuples(index=False)
        ]

    indexed = summary.set_index(["run", "codec", "point", "metric"])
    digits = {}
    for m in metrics:
        part = summary[summary["metric"] == m]
        digits[m] = digits_for(((part["ci_high"] - part["ci_low"]) / 2).to_numpy(float), part["mean"].to_numpy(float))

    def cells(points: list[tuple], bold_best: bool) -> list[list[Cell]]:
        table_rows = []
        best: dict[str, float] = {}
        if bold_best:
            for m in metrics:
                vals = [
                    round(float(indexed.loc[(r, c, p, m), "mean"]), digits[m])
                    for r, c, p, *_ in points
                    if (r, c, p, m) in indexed.index
                ]
                if vals:
                    best[m] = max(vals) if info[m][1] else min(vals)
        for run, codec, point, system, rate, frame_rate in points:
            if not bold_best:  # anchors: no codec rate (their "frame rate" would be the sample rate)
                rate = frame_rate = float("nan")
            row = [Cell(system), Cell(point), Cell(_fmt_rate(rate))]
            if with_frame_rate:
                row.append(Cell(_fmt_rate(frame_rate)))
            for m in metrics:
                if (run, codec, point, m) not in indexed.index:
                    row.append(Cell("–"))
                    continue
                s = indexed.loc[(run, codec, point, m)]
                half = (s["ci_high"] - s["ci_low"]) / 2 if np.isfinite(s["ci_low"]) else None
                is_best = m in best and round(float(s["mean"]), digits[m]) == best[m]
                mark = "ᶠ" if s["n_failed"] > 0 else ""
                row.append(Cell(value=float(s["mean"]), half=half, digits=digits[m], bold=is_best, mark=mark))
            table_rows.append(row)
        return table_rows

    title = "Discrete codecs" if group == "discrete" else "Continuous codecs"
    blocks = [(title, tuple(tuple(r) for r in cells(keyed(rows), True)))]
    if not anchors.empty:
        blocks.append(("Anchors", tuple(tuple(r) for r in cells(keyed(anchors), False))))
    notes = ["mean over items ± half-width of the bootstrap 95% CI; best value per column in bold"]
    if (rows["n_failed"] > 0).any():
        notes.append("ᶠ: some items failed and are excluded (see failures.csv)")
    if rows["random_init"].any():
        notes.append("(random init): untrained weights, not the codec's published quality")
    caption = f"{title}: quality at each operating point."
    return Table(caption, columns, tuple(blocks), "ll" + "r" * (len(rate_cols) + len(metrics)), tuple(notes))


def summary_wide(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, codec, point), columns ``<metric>[_<unit>]_{mean,ci_low,ci_high,n}``: the CSV table."""
    base = ["run", "codec", "system", "group", "weights", "point", "bitrate_kbps", "frame_rate_hz", "compression_ratio"]
    out = summary.drop_duplicates(["run", "codec", "point"])[base].set_index(["run", "codec", "point"])
    for metric, part in summary.groupby("metric", sort=False):
        unit = str(part["unit"].iloc[0]).lower().replace(" ", "_").replace("/", "_per_")
        col = f"{metric}_{unit}" if unit else str(metric)
        part = part.set_index(["run", "codec", "point"])
        for stat in ("mean", "ci_low", "ci_high", "n", "n_failed"):
            out[f"{col}_{stat}"] = part[stat]
    return out.reset_index()


def comparison_table(tests: pd.DataFrame, alpha: float = 0.05) -> Table | None:
    """Paired differences A - B with CI, Wilcoxon p and Holm-adjusted p; significant rows marked * and bold."""
    if tests.empty:
        return None
    rows = []
    for t in tests.itertuples(index=False):
        d = digits_for(np.array([(t.ci_high - t.ci_low) / 2]), np.array([t.mean_diff]))
        sig = bool(t.significant)
        rows.append((
            Cell(metric_header(t.metric, t.unit, t.higher_is_better)), Cell(f"{t.system_a} {t.point_a}"),
            Cell(f"{t.system_b} {t.point_b}"), Cell(str(t.n)),
            Cell(f"{t.mean_diff:+.{d}f} [{t.ci_low:+.{d}f}, {t.ci_high:+.{d}f}]", bold=sig),
            Cell(f"{t.p_value:.3g}"), Cell(f"{t.p_holm:.3g}" + ("*" if sig else ""), bold=sig), Cell(t.better),
        ))  # fmt: skip
    columns = ("metric", "A", "B", "n items", "mean A − B [95% CI]", "p (Wilcoxon)", "p (Holm)", "better")
    notes = (
        "paired by item; percentile bootstrap CI; two-sided Wilcoxon signed-rank test; "
        f"Holm correction within each metric; * = significant at {alpha:g}",
    )
    caption = "Paired comparisons at matched operating points."
    return Table(caption, columns, (("", tuple(rows)),), "lllrrrrl", notes)


def bd_table(bd: pd.DataFrame, method_text: str) -> Table | None:
    """BD-rate and BD-quality per (metric, reference, test)."""
    if bd.empty:
        return None
    rows = []
    for b in bd.itertuples(index=False):
        rng = f"{b.range_low_kbps:.3g}–{b.range_high_kbps:.3g}" if np.isfinite(b.range_low_kbps) else "–"
        rows.append((
            Cell(metric_header(b.metric, b.unit, b.higher_is_better)), Cell(b.reference), Cell(b.test), Cell(rng),
            Cell(value=b.bd_rate_percent, digits=1), Cell(value=b.bd_quality, digits=3), Cell(b.note),
        ))  # fmt: skip
    columns = ("metric", "reference", "test", "common range (kbps)", "BD-rate (%)", "BD-quality", "note")
    notes = (
        f"interpolation: {method_text}",
        "BD-rate < 0: the test codec needs less bitrate for equal quality; BD-quality in the metric's unit (test − reference)",
    )
    return Table("Bjøntegaard deltas.", columns, (("", tuple(rows)),), "lllrrrl", notes)


def quality_at_table(qa: pd.DataFrame, metric: str) -> Table | None:
    """Quality of each system at each target bitrate; extrapolation cells are empty and marked †."""
    part = qa[qa["metric"] == metric]
    if part.empty:
        return None
    targets = sorted(set(part["target_kbps"]))
    hib = bool(part["higher_is_better"].iloc[0])
    d = digits_for(np.array([]), part["value"].to_numpy(float))
    rows = []
    for system, sp in part.groupby("system", sort=True):
        by_target = sp.set_index("target_kbps")
        row = [Cell(str(system))]
        for t in targets:
            r = by_target.loc[t]
            row.append(Cell("–†") if r["extrapolation"] else Cell(value=float(r["value"]), digits=d))
        rows.append(row)
    for j in range(len(targets)):  # bold the best per target column
        vals = [r[j + 1].value for r in rows if r[j + 1].value is not None]
        if len(vals) >= 2:  # a lone value is not "best"
            best = round(max(vals) if hib else min(vals), d)
            for r in rows:
                if r[j + 1].value is not None and round(r[j + 1].value, d) == best:
                    r[j + 1] = Cell(value=r[j + 1].value, digits=d, bold=True)
    unit = str(part["unit"].iloc[0])
    columns = ("system",) + tuple(f"{t:.3g} kbps" for t in targets)
    notes = (
        "interpolated in log10-rate (PCHIP) between measured points; †: outside the measured range, not extrapolated",
    )
    cap = f"{metric_header(metric, unit, hib)} at matched bitrates."
    return Table(cap, columns, (("", tuple(tuple(r) for r in rows)),), "l" + "r" * len(targets), notes)


def per_item_table(ok: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(wide items x "system | point" values, outliers) for an item metric.

    Outliers: robust z-score within each column above :data:`OUTLIER_Z`, with the item, value and z. The spread is
    at least :data:`MIN_RELATIVE_SPREAD` of the median's magnitude, so a column of nearly constant values (the
    hidden reference scored against itself) does not turn a rounding difference into an outlier; the hidden
    reference is not searched for outliers at all.
    """
    part = ok[(ok["metric"] == metric) & (ok["level"] == "item")]
    if "codec" in part and "is_anchor" in part:
        part = part[~((part["codec"] == "reference") & part["is_anchor"].astype(bool))]
    wide = part.assign(column=part["system"] + " | " + part["point"]).pivot_table(
        index="item_id", columns="column", values="value", aggfunc="mean"
    )
    outliers = []
    for col in wide.columns:
        x = wide[col].dropna()
        med = float(x.median())
        mad = max(float((x - med).abs().median()) * 1.4826, MIN_RELATIVE_SPREAD * abs(med))
        if mad <= 0 or len(x) < 3:
            continue
        z = (x - med) / mad
        for item, zval in z[z.abs() > OUTLIER_Z].items():
            outliers.append(dict(metric=metric, column=col, item_id=item, value=float(x[item]), robust_z=float(zval)))
    return wide, pd.DataFrame(outliers, columns=["metric", "column", "item_id", "value", "robust_z"])


# ---------------------------------------------------------------- renderers

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip
_LATEX_SYMBOLS = {"↑": r"$\uparrow$", "↓": r"$\downarrow$", "−": "$-$", "–": "--", "†": r"$^\dagger$",
                  "ᶠ": r"$^{f}$", "±": r"$\pm$", "ø": r"{\o}"}  # fmt: skip


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)
    return "".join(_LATEX_SYMBOLS.get(ch, ch) for ch in out)


def _latex_cell(cell: Cell) -> str:
    if cell.value is None or not math.isfinite(cell.value):
        body = latex_escape(cell.plain())
    else:
        body = f"{cell.value:.{cell.digits}f}"
        if cell.bold:
            body = rf"\textbf{{{body}}}"
        if cell.half is not None and math.isfinite(cell.half):
            body += rf"{{\scriptsize$\pm${cell.half:.{cell.digits}f}}}"
        return body + latex_escape(cell.mark)
    return rf"\textbf{{{body}}}" if cell.bold else body


def to_latex(table: Table, label: str = "") -> str:
    """A ``table`` environment with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    n = len(table.columns)
    lines = [
        "% generated by codecbench report; needs \\usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\footnotesize",
        rf"\caption{{{latex_escape(table.caption)}}}",
    ]
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [
        r"\setlength{\tabcolsep}{3pt}",
        rf"\begin{{tabular}}{{{table.align or 'l' * n}}}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    for i, (title, rows) in enumerate(table.blocks):
        if i > 0:
            lines.append(r"\midrule")
        if title and len(table.blocks) > 1:
            lines.append(rf"\multicolumn{{{n}}}{{l}}{{\emph{{{latex_escape(title)}}}}} \\")
        lines += [" & ".join(_latex_cell(c) for c in row) + r" \\" for row in rows]
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    if table.notes:
        lines.append(rf"\par\smallskip{{\scriptsize {latex_escape('; '.join(table.notes))}.}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_markdown(table: Table) -> str:
    def md(cell: Cell) -> str:
        text = cell.plain().replace("|", "\\|")
        return f"**{text}**" if cell.bold and text else text

    n = len(table.columns)
    align = table.align or "l" * n
    lines = [f"**{table.caption}**", "", "| " + " | ".join(table.columns) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|")
    for title, rows in table.blocks:
        if title and len(table.blocks) > 1:
            lines.append("| " + f"*{title}*" + " |" * n)
        lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    if table.notes:
        lines += [""] + [f"{note}." for note in table.notes]
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    def cell_html(cell: Cell, align: str) -> str:
        text = html_lib.escape(cell.plain())
        text = f"<b>{text}</b>" if cell.bold and text else text
        return f'<td class="{"num" if align == "r" else "txt"}">{text}</td>'

    n = len(table.columns)
    align = table.align or "l" * n
    out = [f"<table><caption>{html_lib.escape(table.caption)}</caption><thead><tr>"]
    out += [f"<th>{html_lib.escape(c)}</th>" for c in table.columns]
    out.append("</tr></thead><tbody>")
    for title, rows in table.blocks:
        if title and len(table.blocks) > 1:
            out.append(f'<tr class="block"><td colspan="{n}">{html_lib.escape(title)}</td></tr>')
        for row in rows:
            out.append("<tr>" + "".join(cell_html(c, a) for c, a in zip(row, align)) + "</tr>")
    out.append("</tbody></table>")
    if table.notes:
        out.append(f'<p class="note">{html_lib.escape("; ".join(table.notes))}.</p>')
    return "".join(out)
