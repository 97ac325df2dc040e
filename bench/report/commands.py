"""``codecbench report``: figures, tables and an HTML page from one or several finished run folders."""

from __future__ import annotations

import argparse
from pathlib import Path


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, e.g. 1.5,3,6; got '{text}'") from error


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="figures, paper tables and an HTML page from finished runs",
        description=(
            "Rate-quality figures with bootstrap 95%% CI bands, a frame-rate sweep, BD-rate / BD-quality, quality at "
            "given bitrates, paired significance tests (bootstrap CI + Wilcoxon, Holm), LaTeX/Markdown/CSV tables "
            "and a self-contained HTML report with audio players. Several runs are compared in one report."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s), e.g. results/demo")
    p.add_argument(
        "--out", default=None, help="output folder (default: RUN_DIR/report for one run; required for several)"
    )
    p.add_argument("--metrics", nargs="+", default=None, help="metrics to report, in order (default: all)")
    p.add_argument("--format", default="png,pdf", help="figure formats, comma-separated: png,pdf,svg (default png,pdf)")
    p.add_argument("--bd-method", default="pchip", choices=("pchip", "cubic"), help="BD interpolation (default pchip)")
    p.add_argument("--at-kbps", type=_floats, default=None, help="bitrates of the quality-at-X table, e.g. 1.5,3,6")
    p.add_argument("--audio-items", type=int, default=2, help="items with audio players in the HTML (0: none)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples per CI (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from codecbench.bench.report.build import ReportOptions
    from codecbench.bench.report.data import ReportInputError

    if args.out is None:
        if len(args.run_dirs) > 1:
            raise ReportInputError("several run folders: choose the report folder with --out DIR")
        args.out = str(Path(args.run_dirs[0]) / "report")
    if args.metrics:  # accept both "--metrics a b" and "--metrics a,b"
        args.metrics = [m for item in args.metrics for m in item.split(",") if m]
    options = ReportOptions(
        n_resamples=args.resamples, seed=args.seed, bd_method=args.bd_method, targets_kbps=args.at_kbps,
        n_audio_items=args.audio_items,
    )  # fmt: skip
    from codecbench.bench.faults import build_atomic

    # built aside and moved into place file by file (atomic renames): a kill leaves no half-written file
    result = build_atomic(args.run_dirs, args.out, args.metrics, args.format.split(","), options=options)
    print(f"report: {result.index_html}")
    print(f"  {len(result.figures)} figure files, {len(result.tables)} table files in {result.out_dir}")
    if result.n_failed_rows:
        print(f"  {result.n_failed_rows} failed row(s) excluded (listed in the report)")
    return 0
