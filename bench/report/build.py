"""``build_report``: every figure, table and the HTML page of one or several finished runs, in one folder.

Output folder layout::

    index.html                      the report (opens from disk)
    figures/<metric>.{png,pdf,svg}  rate-quality figures; figures/frame_rate_sweep.*
    tables/summary_{discrete,continuous}.{tex,md}, summary.csv (wide), summary_long.csv
    tables/bd_rate.{csv,tex,md}, quality_at_kbps.csv, quality_at_<metric>.{tex,md}
    tables/comparisons.{csv,tex,md}, per_item_<metric>.csv, outliers.csv, tables.md (all Markdown tables)
    audio/                          FLAC copies for the players
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from codecbench.bench.report import bdrate, tables
from codecbench.bench.report.aggregate import add_system_columns, metric_info, summarise
from codecbench.bench.report.data import ReportInputError, combine, dataset_mismatch, load_run

FORMATS: tuple[str, ...] = ("png", "pdf", "svg")


@dataclass(frozen=True)
class ReportOptions:
    """Settings of a report (all keyword, all with defaults).

    Args:
        n_resamples: bootstrap resamples of every CI.
        seed: bootstrap seed (a rerun gives the same intervals).
        bd_method: "pchip" or "cubic" (see :mod:`codecbench.bench.report.bdrate`).
        targets_kbps: bitrates of the quality-at-X table; None = every measured discrete bitrate.
        match_rel_tol: operating points within this relative rate difference are compared (significance).
        alpha: significance level after Holm's correction.
        n_audio_items: items with audio players; 0 = none.
        max_audio_s: seconds of each player file.
    """

    n_resamples: int = 10_000
    seed: int = 0
    bd_method: str = "pchip"
    targets_kbps: tuple[float, ...] | None = None
    match_rel_tol: float = 0.05
    alpha: float = 0.05
    n_audio_items: int = 2
    max_audio_s: float = 5.0


@dataclass(frozen=True)
class ReportResult:
    """What was written: the folder, the page, and every figure and table file."""

    out_dir: Path
    index_html: Path
    figures: tuple[Path, ...]
    tables: dict[str, Path] = field(default_factory=dict)
    n_failed_rows: int = 0


def _check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    formats = tuple(f.strip().lower().lstrip(".") for f in formats if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ReportInputError(f"unknown figure format(s) {bad or '(none)'}; valid: {', '.join(FORMATS)}")
    return formats if "png" in formats else ("png", *formats)  # the HTML page shows the PNG


def bd_comparisons(summary: pd.DataFrame, metrics: Sequence[str], method: str) -> pd.DataFrame:
    """BD-rate and BD-quality of every pair of discrete systems (reference = first in sorted order) per metric."""
    rows = []
    for metric in metrics:
        part = summary[(summary["metric"] == metric) & (summary["group"] == "discrete")]
        part = part[np.isfinite(part["bitrate_kbps"])]
        curves = {s: (g["bitrate_kbps"].to_numpy(float), g["mean"].to_numpy(float)) for s, g in part.groupby("system")}
        if not curves:
            continue
        unit, hib = str(part["unit"].iloc[0]), bool(part["higher_is_better"].iloc[0])
        for ref, test in itertools.combinations(sorted(curves), 2):
            base = dict(metric=metric, unit=unit, higher_is_better=hib, reference=ref, test=test, method=method)
            try:
                r = bdrate.bjontegaard(*curves[ref], *curves[test], method=method)
            except ValueError as error:  # too few points for the method, duplicate rates
                rows.append(dict(base, bd_rate_percent=np.nan, bd_quality=np.nan, range_low_kbps=np.nan,
                                 range_high_kbps=np.nan, note=str(error)))  # fmt: skip
                continue
            lo, hi = r.rate_range_kbps
            rows.append(dict(base, bd_rate_percent=r.bd_rate_percent, bd_quality=r.bd_quality,
                             range_low_kbps=lo if hi > lo else np.nan, range_high_kbps=hi if hi > lo else np.nan,
                             note=r.note))  # fmt: skip
    cols = ["metric", "unit", "higher_is_better", "reference", "test", "method", "bd_rate_percent", "bd_quality",
            "range_low_kbps", "range_high_kbps", "note"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def quality_at_targets(
    summary: pd.DataFrame, metrics: Sequence[str], targets_kbps: Sequence[float] | None, method: str
) -> pd.DataFrame:
    """Quality of each discrete system at each target bitrate (interpolated in log-rate, never extrapolated)."""
    disc = summary[(summary["group"] == "discrete") & np.isfinite(summary["bitrate_kbps"])]
    if targets_kbps is None:  # every measured bitrate, merging those within 1 % of each other
        targets_kbps = []
        for b in sorted(disc.loc[disc["group"] == "discrete", "bitrate_kbps"].unique()):
            if not targets_kbps or b > targets_kbps[-1] * 1.01:
                targets_kbps.append(float(b))
    rows = []
    for metric in metrics:
        part = disc[disc["metric"] == metric]
        for system, g in part.groupby("system", sort=True):
            g = g.sort_values("bitrate_kbps")
            common = dict(metric=metric, unit=g["unit"].iloc[0], higher_is_better=bool(g["higher_is_better"].iloc[0]))
            try:
                results = bdrate.quality_at(g["bitrate_kbps"], g["mean"], targets_kbps, method="pchip")
            except ValueError as error:  # a single point: no curve
                for t in targets_kbps:
                    exact = np.isclose(g["bitrate_kbps"], t, rtol=1e-9)
                    value = float(g["mean"][exact].iloc[0]) if exact.any() else np.nan
                    rows.append(dict(common, system=system, target_kbps=float(t), value=value,
                                     extrapolation=not exact.any(), note=str(error)))  # fmt: skip
                continue
            for q in results:
                rows.append(dict(common, system=system, target_kbps=q.target_kbps, value=q.value,
                                 extrapolation=q.extrapolation, note=""))  # fmt: skip
    cols = ["metric", "unit", "higher_is_better", "system", "target_kbps", "value", "extrapolation", "note"]
    return pd.DataFrame(rows, columns=cols)


PNG_DPI = 300
CSS_PX_PER_IN = 130
"""Figures are shown at this many CSS pixels per inch of paper (a little larger than print, to stay legible)."""


def _display_width_px(png: Path) -> int | None:
    """Width to show a figure PNG at, from its pixel width (bytes 16-20 of the PNG header) and the save dpi."""
    head = png.read_bytes()[:24]
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int(int.from_bytes(head[16:20], "big") / PNG_DPI * CSS_PX_PER_IN)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def build_report(
    run_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    metrics: Sequence[str] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    *,
    options: ReportOptions = ReportOptions(),
) -> ReportResult:
    """Build the report of ``run_dirs`` into ``out_dir`` (figures, tables, index.html); returns what was written.

    ``metrics``: the metrics to report, in order (default: all in the tables). Raises
    :class:`~codecbench.bench.report.data.ReportInputError` for an unusable run folder, an unknown metric or format.
    """
    from codecbench.bench.report.audio_players import collect_players
    from codecbench.bench.report.frame_rate import plot_frame_rate_sweep
    from codecbench.bench.report.html import Figure, TableBlock, write_index
    from codecbench.bench.report.rate_quality import plot_rate_quality
    from codecbench.bench.report.significance import paired_tests
    from codecbench.bench.report.style import assign_styles

    if not run_dirs:
        raise ReportInputError("no run folder given; pass at least one results/<run-name> folder")
    formats = _check_formats(formats)
    if options.bd_method not in bdrate.METHODS:
        raise ReportInputError(
            f"unknown BD interpolation method '{options.bd_method}'; valid: {', '.join(bdrate.METHODS)}"
        )
    runs = [load_run(d) for d in run_dirs]
    ok, failed = combine(runs)
    several = len(runs) > 1
    ok, failed = add_system_columns(ok, several), add_system_columns(failed, several)
    info = metric_info(ok)
    if metrics:
        unknown = [m for m in metrics if m not in info]
        if unknown:
            raise ReportInputError(f"metric(s) {unknown} not in the results of {', '.join(r.name for r in runs)}; "
                                   f"known: {', '.join(info)}")  # fmt: skip
        metrics = list(metrics)
    else:
        metrics = list(info)
    ok = ok[ok["metric"].isin(metrics)]
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)

    summary = summarise(ok, failed, n_resamples=options.n_resamples, seed=options.seed)
    styles = assign_styles(
        summary.loc[summary["group"] != "anchor", "system"], summary.loc[summary["group"] == "anchor", "system"]
    )

    from codecbench.bench import degenerate

    flagged = degenerate.report_flags(ok)  # identical output at several points: not drawn as a curve
    drawn = summary[~pd.Series([(r, c, p) in flagged for r, c, p in zip(summary["run"], summary["codec"],
                                                                          summary["point"])], index=summary.index,
                               dtype=bool)]
    figures: list[Path] = []
    fig_blocks: list[Figure] = []
    for metric in metrics:
        paths = plot_rate_quality(drawn, metric, out / "figures" / metric, styles=styles, formats=formats)
        figures += paths
        if paths:
            unit, hib = info[metric]
            fig_blocks.append(Figure(f"Rate-quality: {tables.metric_header(metric, unit, hib)}",
                                     f"figures/{metric}.png",
                                     tuple(f"figures/{p.name}" for p in paths if p.suffix != ".png"),
                                     _display_width_px(out / "figures" / f"{metric}.png")))  # fmt: skip
    sweep = plot_frame_rate_sweep(
        drawn, metrics, out / "figures" / "frame_rate_sweep", styles=styles, formats=formats
    )
    figures += sweep
    if sweep:
        fig_blocks.append(Figure("Frame-rate sweep: each metric against the representation's frame rate",
                                 "figures/frame_rate_sweep.png",
                                 tuple(f"figures/{p.name}" for p in sweep if p.suffix != ".png"),
                                 _display_width_px(out / "figures" / "frame_rate_sweep.png")))  # fmt: skip

    written: dict[str, Path] = {}
    blocks: list[TableBlock] = []
    markdown: list[str] = []

    def emit(name: str, table: tables.Table | None, title: str, csv: pd.DataFrame | None = None) -> None:
        if table is None:
            return
        files = []
        written[f"{name}.tex"] = _write(out / "tables" / f"{name}.tex", tables.to_latex(table, label=f"tab:{name}"))
        md = tables.to_markdown(table)
        written[f"{name}.md"] = _write(out / "tables" / f"{name}.md", md)
        markdown.append(f"## {title}\n\n{md}")
        files += [f"tables/{name}.tex", f"tables/{name}.md"]
        if csv is not None:
            written[f"{name}.csv"] = out / "tables" / f"{name}.csv"
            csv.to_csv(written[f"{name}.csv"], index=False)
            files.append(f"tables/{name}.csv")
        blocks.append(TableBlock(title, tables.to_html(table), tuple(files)))

    emit("summary_discrete", tables.summary_table(summary, "discrete", metrics), "Discrete codecs (Table 2 style)")
    emit(
        "summary_continuous", tables.summary_table(summary, "continuous", metrics), "Continuous codecs (Table 1 style)"
    )
    written["summary.csv"] = out / "tables" / "summary.csv"
    tables.summary_wide(summary).to_csv(written["summary.csv"], index=False)
    written["summary_long.csv"] = out / "tables" / "summary_long.csv"
    summary.to_csv(written["summary_long.csv"], index=False)

    bd = bd_comparisons(summary, metrics, options.bd_method)
    emit("bd_rate", tables.bd_table(bd, bdrate.METHOD_DESCRIPTIONS[options.bd_method]), "Bjøntegaard deltas", bd)
    qa = quality_at_targets(summary, metrics, options.targets_kbps, options.bd_method)
    if not qa.empty:
        written["quality_at_kbps.csv"] = out / "tables" / "quality_at_kbps.csv"
        qa.to_csv(written["quality_at_kbps.csv"], index=False)
        for metric in metrics:
            emit(f"quality_at_{metric}", tables.quality_at_table(qa, metric), f"{metric} at matched bitrates")

    tests = paired_tests(ok, summary, metrics=metrics, rel_tol=options.match_rel_tol, alpha=options.alpha,
                         n_resamples=options.n_resamples, seed=options.seed)  # fmt: skip
    emit("comparisons", tables.comparison_table(tests, options.alpha), "Paired comparisons", tests)

    outliers = []
    for metric in metrics:
        if not (ok["metric"].eq(metric) & ok["level"].eq("item")).any():
            continue
        wide, out_rows = tables.per_item_table(ok, metric)
        written[f"per_item_{metric}.csv"] = out / "tables" / f"per_item_{metric}.csv"
        wide.to_csv(written[f"per_item_{metric}.csv"])
        outliers.append(out_rows)
    if outliers:
        all_out = pd.concat(outliers, ignore_index=True)
        written["outliers.csv"] = out / "tables" / "outliers.csv"
        all_out.to_csv(written["outliers.csv"], index=False)
        if not all_out.empty:
            md = all_out.sort_values("robust_z", key=np.abs, ascending=False).head(20)
            text = "<table><thead><tr><th>metric</th><th>system | point</th><th>item</th><th>value</th>"
            text += "<th>robust z</th></tr></thead><tbody>"
            for r in md.itertuples(index=False):
                text += (f"<tr><td>{r.metric}</td><td>{r.column}</td><td>{r.item_id}</td>"
                         f"<td class='num'>{r.value:.4g}</td><td class='num'>{r.robust_z:+.1f}</td></tr>")  # fmt: skip
            text += "</tbody></table>"
            blocks.append(TableBlock(f"Per-item outliers (|robust z| > {tables.OUTLIER_Z:g}, top 20)", text,
                                     ("tables/outliers.csv",)))  # fmt: skip
    written["tables.md"] = _write(out / "tables" / "tables.md", "\n".join(markdown))

    players = None
    if options.n_audio_items > 0:
        players = collect_players(ok, {r.name: r.cache_dir for r in runs}, out,
                                  n_items=options.n_audio_items, max_duration_s=options.max_audio_s)  # fmt: skip

    n_failed = len(failed)
    warnings = []
    if n_failed:
        by_stage = failed.groupby(failed.get("stage", pd.Series([""] * n_failed)).fillna("")).size()
        stages = ", ".join(f"{k or 'unknown'}: {v}" for k, v in by_stage.items())
        warnings.append(f"{n_failed} failed row(s) excluded from every number ({stages}); see failures.csv.")
    random_init = sorted(set(summary.loc[summary["random_init"], "system"]))
    if random_init:
        warnings.append(
            f"Random-init weights (untrained; not the codecs' published quality): {', '.join(random_init)}."
        )
    if flagged:
        points = ", ".join(f"{c} {p}" + (f" ({r})" if several else "") for r, c, p in sorted(flagged))
        warnings.append(f"{degenerate.FLAG} (identical decoded audio; not drawn as a curve): {points}.")
    mismatch = dataset_mismatch(runs)
    if mismatch:
        warnings.append(mismatch)
    n_items = ok.loc[ok["level"] == "item", "item_id"].nunique()
    lines = [
        f"runs: {', '.join(f'{r.name} ({r.run_dir})' for r in runs)}",
        f"{summary[['run', 'codec']].drop_duplicates().shape[0]} codecs, "
        f"{summary[['run', 'codec', 'point']].drop_duplicates().shape[0]} operating points, {n_items} items, "
        f"metrics: {', '.join(metrics)}",
        f"CIs: percentile bootstrap, {options.n_resamples} resamples, 95%, seed {options.seed}; "
        f"BD interpolation: {bdrate.METHOD_DESCRIPTIONS[options.bd_method]}",
    ]
    index = write_index(
        out, title=f"codecbench report: {', '.join(r.name for r in runs)}", summary_lines=lines, warnings=warnings,
        figures=fig_blocks, tables=blocks, players=players, max_duration_s=options.max_audio_s,
        manifests=[(r.name, r.manifest) for r in runs],
    )  # fmt: skip
    return ReportResult(out, index, tuple(figures), written, n_failed)


__all__ = ["FORMATS", "ReportOptions", "ReportResult", "bd_comparisons", "build_report", "quality_at_targets"]
