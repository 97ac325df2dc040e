"""Core subcommands: ``codecbench demo``, ``codecbench run CONFIG``, ``codecbench codecs``."""

from __future__ import annotations

import argparse

EXIT_FAILURES = 4  # `run`: a unit failed (codec or environment) or an input file could not be loaded
RECHECK_HELP = ("verify every unit and cache entry even when the run folder's stamp says nothing changed "
                "(default: such a rerun is answered from the folder without importing torch)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the built-in demo benchmark (classic codecs + anchors, generated SFX)")
    demo.add_argument("--out", default="results/demo", help="run folder (default: results/demo)")
    demo.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None, help="device (default: auto)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.add_argument("--allow-downloads", action="store_true",
                      help="let metric models fetch absent weights (default: offline, such metrics are listed as unavailable)")
    demo.add_argument("--allow-failures", action="store_true",
                      help=f"exit 0 even when units failed (default: exit {EXIT_FAILURES})")
    demo.add_argument("--recheck", action="store_true", help=RECHECK_HELP)
    demo.set_defaults(func=_demo)

    run = sub.add_parser("run", help="run or resume a benchmark from a YAML config")
    run.add_argument("config", help="YAML config file (see README: Config)")
    run.add_argument("--out", default=None, help="run folder (default: the config's output, else results/<name>)")
    run.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None, help="device (default: the config's)")
    run.add_argument("--executor", default=None, help="executor name (default: the config's, else local)")
    run.add_argument("--workers", type=int, default=None, help="local executor: parallel worker processes")
    run.add_argument("--no-report", action="store_true", help="skip figures and tables at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--allow-failures", action="store_true",
                     help=f"exit 0 even when units or inputs failed (default: exit {EXIT_FAILURES}); "
                     "the failure summary is printed either way")
    run.add_argument("--recheck", action="store_true", help=RECHECK_HELP)
    run.set_defaults(func=_run)

    codecs = sub.add_parser("codecs", help="print the codec catalogue (operating points and computed bitrates)")
    codecs.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    codecs.add_argument("--costs", action="store_true",
                        help="also parameter counts and algorithmic latency (builds each architecture; slower)")
    codecs.set_defaults(func=_codecs)


def _summary(result) -> None:
    from rich.console import Console

    stats = result.stats
    console = Console(stderr=True)
    console.print(
        f"[bold]{result.run_dir}[/bold]: {stats['units']} units "
        f"({stats['units'] - stats['units_cached']} run, {stats['units_cached']} cached, {stats['units_failed']} failed), "
        f"{stats['codec_calls']} codec calls, {stats['metric_computations']} metric computations, "
        f"{stats['clips_failed']} clips failed, {stats['seconds']:.1f} s"
    )
    table = result.table
    failed = table[table["status"] == "failed"]
    if len(failed):
        console.print(f"{len(failed)} failed rows (see {result.run_dir / 'failures.csv'}); first reasons:")
        for reason in failed["error"].drop_duplicates().head(5):
            console.print(f"  - {reason}")
    import json

    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    for name, reason in manifest.get("metrics_unavailable", {}).items():
        console.print(f"[yellow]unavailable[/yellow] {name}: {reason}")
    sets = table[(table["level"] == "set") & (table["status"] == "ok")]
    for row in sets.itertuples():
        extras = json.loads(row.extras or "{}")
        console.print(f"{row.metric} {row.codec} {row.point}: {row.value:.4g} (N={extras.get('n', '?')} frames, "
                      f"dims={extras.get('dims', '?')})")
    report = result.run_dir / "report" / "index.html"
    console.print(f"table: {result.run_dir / 'results.parquet'} (and .csv); manifest: {result.run_dir / 'manifest.json'}"
                  + (f"; report: {report}" if report.is_file() else ""))


def failure_lines(failures: dict, limit: int = 12) -> list[str]:
    """The one-screen failure summary: failed units grouped by codec, point set, outcome and first error line;
    inputs that could not be loaded (with the first reasons). At most ``limit`` detail lines."""
    from collections import defaultdict

    units, inputs = failures.get("units", []), failures.get("inputs", [])
    lines: list[str] = []
    if units:
        groups: dict[tuple, list] = defaultdict(list)
        for unit in units:
            groups[(unit["codec"], unit["outcome"], unit["error"])].append(unit)
        lines.append(f"{len(units)} unit(s) failed (retried; a rerun retries them again):")
        for (codec, outcome, error), members in list(groups.items())[:limit]:
            points = sorted({m["point"] for m in members})
            shown = ", ".join(points[:4]) + (f", +{len(points) - 4} more" if len(points) > 4 else "")
            attempts = max(m["attempts"] for m in members)
            lines.append(f"  {codec} [{shown}]: {len(members)} unit(s), {outcome}, {attempts} attempt(s): {error[:200]}")
        if len(groups) > limit:
            lines.append(f"  ... and {len(groups) - limit} more groups (codecbench status RUN_DIR lists every unit)")
    if inputs:
        lines.append(f"{len(inputs)} input file(s) failed to load (recorded once, not retried):")
        for entry in inputs[:5]:
            lines.append(f"  {entry['clip_path']}: {entry['error'][:200]}")
        if len(inputs) > 5:
            lines.append(f"  ... and {len(inputs) - 5} more (failures.csv)")
    return lines


def _exit_code(result, allow_failures: bool) -> int:
    """0, or :data:`EXIT_FAILURES` when a unit or an input failed (unless ``allow_failures``); prints the summary."""
    import sys

    failures = result.stats.get("failures", {})
    lines = failure_lines(failures)
    if not lines:
        return 0
    for line in lines:
        print(line, file=sys.stderr)
    if allow_failures:
        print("codecbench: finished with failures (--allow-failures: exit 0)", file=sys.stderr)
        return 0
    print(f"codecbench: finished with failures (exit {EXIT_FAILURES}; --allow-failures to exit 0)", file=sys.stderr)
    return EXIT_FAILURES


def _fast_rerun(config, args: argparse.Namespace, **overrides):
    """A finished run's result from its folder when nothing changed (:mod:`codecbench.bench.rerun`), before the
    full path imports torch and the codecs; None otherwise."""
    if args.recheck:
        return None
    from codecbench.bench import rerun

    return rerun.reuse(rerun.request(config, out=args.out, device=args.device, **overrides))


def _demo(args: argparse.Namespace) -> int:
    from codecbench.bench.core import weights
    from codecbench.bench.demo_set import DEMO_CONFIG

    if not args.allow_downloads:
        weights.set_offline()  # as api.demo does: part of the request the stamp fingerprints
    result = _fast_rerun(DEMO_CONFIG, args)
    if result is None:
        from codecbench.bench import api

        result = api.demo(out=args.out, device=args.device, progress=not args.quiet,
                          allow_downloads=args.allow_downloads, recheck=args.recheck)
    _summary(result)
    return _exit_code(result, args.allow_failures)


def _run(args: argparse.Namespace) -> int:
    report = False if args.no_report else None
    result = _fast_rerun(args.config, args, executor=args.executor, workers=args.workers, report=report)
    if result is None:
        from codecbench.bench import api

        result = api.run(args.config, out=args.out, device=args.device, executor=args.executor, workers=args.workers,
                         progress=not args.quiet, report=report, recheck=args.recheck)
    _summary(result)
    return _exit_code(result, args.allow_failures)


def _codecs(args: argparse.Namespace) -> int:
    from codecbench.bench import api

    table = api.catalogue(costs=args.costs)
    if args.csv:
        print(table.to_csv(index=False), end="")
        return 0
    from rich.console import Console
    from rich.table import Table

    view = Table(title="codecbench codecs (rates computed from each codec's bitstream definition)")
    cost_columns = ["params_count", "algorithmic_latency_ms"] if args.costs else []
    for column in ("codec", "kind", "sample_rate_hz", "point", "bitrate_kbps", "frame_rate_hz", "compression_ratio",
                   *cost_columns, "weights"):
        view.add_column(column, overflow="fold")

    def fmt(value, digits: int) -> str:
        return "-" if value is None or value != value else f"{value:.{digits}f}"

    for row in table.to_dict("records"):
        view.add_row(
            str(row["codec"]), str(row["kind"]), str(row["sample_rate_hz"] if row["sample_rate_hz"] == row["sample_rate_hz"] else ""),
            str(row["point"]), fmt(row["bitrate_kbps"], 3), fmt(row["frame_rate_hz"], 3),
            fmt(row["compression_ratio"], 1),
            *([str(row["params_count"]), fmt(row["algorithmic_latency_ms"], 1)] if args.costs else []),
            str(row["weights"])[:60] + ("" if row["source"] == "built-in" else f" [{row['source']}]"),
        )
    Console(width=200 if args.costs else 170).print(view)
    return 0
