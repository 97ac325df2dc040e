"""``codecbench score``: score folders of decoded files against a folder of references, without a run.

    codecbench score REF_DIR DEG_DIR [DEG_DIR ...] [--metrics si_sdr,mel_distance] [--out scores.parquet|.csv]
                     [--sample-rate-hz 48000] [--tolerance 0.03] [--deg-sample-rate-hz HZ] [--wide]
                     [--length-policy trim|pad] [--max-lag-ms MS] [--align-per condition|item]

Files are paired and read by the reader of precomputed outputs (:mod:`codecbench.codecs.precomputed`: same
pairing, resampling, length tolerance and header-rate check); then :mod:`codecbench.bench.pairing` applies the
length policy (default ``trim`` to the common length) and, only when asked (``--max-lag-ms``), a measured lag per
condition or item that must pass a significance test. Each row records what was done to its files
(``input_*`` columns of the reference file, the decoded file's alignment columns, ``length_*`` and ``lag_*``). Item metrics are scored per item
(``score_batch``), set metrics once per decoded folder (``compute_set``); a metric that cannot score an item gives
a failed row with its reason, never a number.

Python API: :func:`score` returns the long table (one row per folder, item and metric, plus one row per folder and
set metric); :func:`wide` pivots it to one row per item with one column per metric, named with its unit
(``si_sdr_db``); :func:`summary` gives the per-folder means with bootstrap 95 % confidence intervals.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codecbench.bench.core.errors import ConfigError, MetricFailure

if TYPE_CHECKING:
    import pandas as pd
    from codecbench.bench.metrics.base import Metric
    from codecbench.bench.pairing import AlignmentSpec
    from codecbench.codecs.precomputed import AlignedFolder

DEFAULT_METRICS = ("si_sdr", "mel_distance")
OUTPUT_SUFFIXES = (".parquet", ".csv")

# alignment columns copied from the decoded file's AlignmentRecord (units in the names)
_ALIGNMENT_COLUMNS = (
    "header_sample_rate_hz", "read_sample_rate_hz", "rate_override", "eval_sample_rate_hz", "sample_format",
    "file_channels", "channel_policy", "file_samples", "trimmed_samples", "padded_samples", "length_ratio",
    "resampler",
)


def _metric_instances(metrics: Sequence[str | Metric], cache_dir: str | None, device: str) -> list[Metric]:
    from codecbench.bench.metrics import registry
    from codecbench.bench.metrics.base import Metric

    out = []
    for metric in metrics:
        if isinstance(metric, Metric):
            out.append(metric)
        else:
            out.append(registry.create(str(metric), cache_dir=cache_dir, device=device))
    names = [m.info.name for m in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"--metrics: a metric is listed twice: {names}")
    if not out:
        raise ConfigError(f"--metrics: no metric given; known: {', '.join(registry.names())}")
    return out


def _folder_rows(folder: AlignedFolder, metrics: Sequence[Metric], sample_rate_hz: int,
                 alignment: AlignmentSpec | None = None, length_policy: str = "trim") -> list[dict[str, Any]]:
    """The long-table rows of one aligned decoded folder."""
    from codecbench.bench import pairing
    from codecbench.bench.core.audio import content_hash
    from codecbench.bench.datasets import reader_input_record, truncation_check

    spec = folder.spec
    declared = spec.declared_rates()
    common = {
        "condition": spec.condition,
        "codec": spec.codec,
        "decoded_dir": str(spec.folder),
        "bitrate_kbps": declared.get("bitrate_kbps", math.nan),
        "frame_rate_hz": declared.get("frame_rate_hz", math.nan),
        "compression_ratio": declared.get("compression_ratio", math.nan),
        "rate_source": spec.rate_source,
    }
    references, decoded, pair_records = pairing.prepare(
        [item.reference for item in folder.items], [item.decoded for item in folder.items], sample_rate_hz,
        alignment=alignment or pairing.AlignmentSpec(), length_policy=length_policy,
        padded_samples=[item.decoded_record.padded_samples for item in folder.items])
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        info = metric.info
        described = {"metric": info.name, "unit": info.unit, "value_column": info.column,
                     "higher_is_better": info.higher_is_better, "level": info.level}
        reason = metric.availability()
        if info.level == "item":
            if reason is not None:
                results: list[Any] = [MetricFailure(f"unavailable: {reason}")] * len(folder.items)
            else:
                results = metric.score_batch(references, decoded, sample_rate_hz)
            for item, result, pair in zip(folder.items, results, pair_records):
                record = item.decoded_record
                rows.append({
                    **common, **described,
                    "item_id": item.item,
                    "reference_path": item.reference_record.path,
                    "decoded_path": record.path,
                    "duration_s": item.reference.shape[-1] / sample_rate_hz,
                    **_value(result),
                    **{column: getattr(record, column) for column in _ALIGNMENT_COLUMNS},
                    "reference_sample_format": item.reference_record.sample_format,
                    "reference_resampled_from_hz": item.reference_record.read_sample_rate_hz,
                    "alignment": record.summary(),
                    "decoded_hash": content_hash(item.decoded, sample_rate_hz),
                    "decoded_truncation_suspected": truncation_check(Path(record.path), record.file_samples)[0],
                    **reader_input_record(item.reference_record).columns(),
                    **pair.columns(),
                })
        else:
            if reason is not None:
                result: Any = MetricFailure(f"unavailable: {reason}")
            else:
                try:
                    result = metric.compute_set(references, decoded, sample_rate_hz)
                except MetricFailure as failure:
                    result = failure
            rows.append({**common, **described, "item_id": "", "reference_path": "", "decoded_path": "",
                         "duration_s": sum(r.shape[-1] for r in references) / sample_rate_hz, **_value(result)})
    return rows


def _value(result: Any) -> dict[str, Any]:
    if isinstance(result, MetricFailure):
        return {"value": math.nan, "status": "failed", "error": str(result), "extras": "{}"}
    return {"value": result.value, "status": result.extras.get("status", "ok"),  # FAD-inf may say "unreliable"
            "error": result.extras.get("status_reason", ""),
            "extras": json.dumps(result.extras, sort_keys=True, default=str)}


def score(
    reference_dir: str | Path,
    decoded_dirs: str | Path | Sequence[str | Path],
    *,
    metrics: Sequence[str | Metric] = DEFAULT_METRICS,
    sample_rate_hz: int = 48000,
    length_tolerance: float | None = None,
    decoded_sample_rate_hz: int | None = None,
    cache_dir: str | None = None,
    device: str = "cpu",
    alignment: AlignmentSpec | None = None,
    length_policy: str = "trim",
    progress: bool = False,
) -> pd.DataFrame:
    """Score every decoded folder against ``reference_dir``; returns the long table (see module docstring).

    Args:
        reference_dir: the references, one file per item.
        decoded_dirs: one folder of decoded files (same name stems), or several.
        metrics: registry names (created with ``cache_dir`` and ``device``) or metric instances.
        sample_rate_hz: evaluation rate every file is resampled to.
        length_tolerance: largest length mismatch trimmed or padded, as a fraction (default 3 %, at most 5 %).
        decoded_sample_rate_hz: read every decoded file at this rate instead of its header rate (wrong headers);
            a folder's ``codecbench.yaml`` may set its own ``sample_rate_hz``.
        alignment: measured lag compensation (:class:`~codecbench.bench.pairing.AlignmentSpec`); default off.
        length_policy: ``trim`` (default; both cut to the common length) or ``pad`` (decoded zero-padded).
        progress: print one line per folder to stderr as it is read and scored.
    Raises:
        AudioInputError: missing, extra or unreadable files, lengths beyond the tolerance (with a header-rate hint).
        UnknownNameError: an unknown metric name.
    """
    import pandas as pd
    from codecbench.codecs import precomputed

    if isinstance(decoded_dirs, (str, Path)):
        decoded_dirs = [decoded_dirs]
    if not decoded_dirs:
        raise ConfigError("score: give at least one folder of decoded files")
    from codecbench.bench import pairing

    tolerance = precomputed.DEFAULT_LENGTH_TOLERANCE if length_tolerance is None else length_tolerance
    length_policy = pairing.check_length_policy(length_policy, "--length-policy")
    instances = _metric_instances(metrics, cache_dir, device)
    say = _progress_printer(progress)
    folders = []
    for folder in decoded_dirs:
        folders.append(precomputed.read_pairs(reference_dir, folder, sample_rate_hz=sample_rate_hz,
                                              length_tolerance=tolerance, decoded_sample_rate_hz=decoded_sample_rate_hz,
                                              override_source="--deg-sample-rate-hz"))
    # every folder is read (and checked) before any metric runs
    conditions = [folder.spec.condition for folder in folders]
    if len(set(conditions)) != len(conditions):
        raise ConfigError(f"score: two decoded folders share a name ({conditions}); names label the results")
    rows = []
    for index, folder in enumerate(folders):
        say(f"scoring {index + 1}/{len(folders)}: {folder.spec.condition} ({len(folder.items)} items)")
        rows.extend(_folder_rows(folder, instances, sample_rate_hz, alignment, length_policy))
    table = pd.DataFrame(rows)
    from codecbench.bench import degenerate

    table = degenerate.mark_score_table(table)
    for column in _ALIGNMENT_COLUMNS + ("reference_sample_format", "reference_resampled_from_hz", "alignment"):
        if column not in table:  # only set metrics were asked for
            table[column] = None
    return table


def _progress_printer(enabled: bool):
    """A function printing one progress line to stderr (flushed, so it shows when the output is piped)."""
    import sys

    def say(text: str) -> None:
        if enabled:
            print(f"codecbench score: {text}", file=sys.stderr, flush=True)

    return say


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (condition, item): one column per item metric named with its unit (``si_sdr_db``), and
    ``<column>_error`` holding the reason where an item failed (empty otherwise)."""
    items = table[table["level"] == "item"]
    keys = ["condition", "codec", "item_id"]
    values = items.pivot_table(index=keys, columns="value_column", values="value", aggfunc="first", dropna=False)
    errors = items.pivot_table(index=keys, columns="value_column", values="error", aggfunc="first")
    errors.columns = [f"{c}_error" for c in errors.columns]
    first = items.drop_duplicates(keys).set_index(keys)
    context = first[["bitrate_kbps", "frame_rate_hz", "rate_source", "alignment"]]
    return context.join(values).join(errors).reset_index()


def summary(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per (condition, metric): mean of the ok items with its bootstrap CI, counts; set metrics as they are."""
    import pandas as pd
    from codecbench.bench.core.stats import bootstrap_ci

    rows = []
    for (condition, column), group in table.groupby(["condition", "value_column"], sort=False):
        ok = group[group["status"] == "ok"]["value"].to_numpy()
        row = {"condition": condition, "codec": group["codec"].iloc[0], "value_column": column,
               "level": group["level"].iloc[0], "n_ok": len(ok), "n_failed": int((group["status"] != "ok").sum()),
               "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan}
        if len(ok):
            interval = bootstrap_ci(ok, confidence=confidence)
            row.update(mean=interval.estimate, ci_low=interval.low, ci_high=interval.high)
        rows.append(row)
    return pd.DataFrame(rows)


def write(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as parquet or CSV (by suffix), atomically."""
    import io

    from codecbench.bench.core.cache import atomic_write_bytes

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out {path}: unknown suffix {path.suffix!r}; use one of {', '.join(OUTPUT_SUFFIXES)}")
    buffer = io.BytesIO()
    if suffix == ".parquet":
        table.to_parquet(buffer, index=False)
    else:
        table.to_csv(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path


# --------------------------------------------------------------------------------------------------------------
# Printing and the command
# --------------------------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.3f}"


def print_tables(table: pd.DataFrame, console: Any = None) -> None:
    """Per-item values (with the alignment done) and per-folder means with 95 % CIs, as rich tables."""
    import sys

    from rich.console import Console
    from rich.table import Table

    # piped output: no terminal width to fit, so nothing is cut (a terminal gets rich's usual fitting)
    console = console or (Console() if sys.stdout.isatty() else Console(width=1000))
    columns = list(dict.fromkeys(table["value_column"]))
    item_columns = [c for c in columns if (table[table["value_column"] == c]["level"] == "item").all()]
    if item_columns:
        items = Table(title="per item")
        for header in ("condition", "item", *item_columns, "alignment"):
            items.add_column(header, justify="right" if header in item_columns else "left", overflow="fold")
        for row in wide(table).to_dict("records"):  # not itertuples: `pesq_wb_mos-lqo` is no identifier
            cells = []
            for column in item_columns:
                error = row.get(f"{column}_error") or ""
                cells.append(f"failed: {error}" if error else _fmt(row[column]))
            items.add_row(row["condition"], row["item_id"], *cells, row["alignment"])
        console.print(items)
    means = Table(title="means over items (95 % bootstrap CI) and set metrics")
    means.add_column("condition")
    means.add_column("declared rate")
    for column in columns:
        means.add_column(column, justify="right")
    stats = summary(table)
    for condition, group in stats.groupby("condition", sort=False):
        first = table[table["condition"] == condition].iloc[0]
        rate = (f"{first['bitrate_kbps']:g} kbps" if math.isfinite(first["bitrate_kbps"])
                else f"{first['frame_rate_hz']:g} Hz" if math.isfinite(first["frame_rate_hz"]) else "—")
        cells = []
        for column in columns:
            match = group[group["value_column"] == column]
            if match.empty:
                cells.append("")
                continue
            s = match.iloc[0]
            text = _fmt(s["mean"])
            if s["level"] == "item" and s["n_ok"] > 1:
                text += f" [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]"
            if s["n_failed"]:
                text += f" ({s['n_failed']} failed)"
            cells.append(text)
        means.add_row(condition, rate, *cells)
    console.print(means)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score folders of decoded files against a folder of references (paired by file name)",
        description="Score folders of decoded audio against references. Files are paired by name stem, "
        "resampled to the evaluation rate and trimmed or padded within the tolerance (recorded per item).",
    )
    parser.add_argument("reference_dir", metavar="REF_DIR", help="folder of reference files")
    parser.add_argument("decoded_dirs", metavar="DEG_DIR", nargs="+", help="folder(s) of decoded files")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help="comma-separated metric names (default: %(default)s; see `codecbench metrics`)")
    parser.add_argument("--out", metavar="FILE", help="write the table to FILE (.parquet or .csv)")
    parser.add_argument("--wide", action="store_true",
                        help="write one row per item with one column per metric (default: the long table)")
    parser.add_argument("--sample-rate-hz", type=_positive_int, default=48000, help="evaluation rate (default 48000)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest length mismatch trimmed or padded, as a fraction of the reference length "
                        "(default 0.03, at most 0.05)")
    parser.add_argument("--deg-sample-rate-hz", type=_positive_int, default=None,
                        help="read every decoded file at this rate, ignoring its header rate (for wrong headers)")
    parser.add_argument("--length-policy", choices=("trim", "pad"), default="trim",
                        help="trim both signals to their common length (default) or zero-pad the decoded one")
    parser.add_argument("--max-lag-ms", type=float, default=0.0,
                        help="measure and undo a residual lag within +/- this many ms, accepted only when the "
                        "correlation peak is significant (default 0: no lag search)")
    parser.add_argument("--align-per", choices=("condition", "item"), default="condition",
                        help="one lag per decoded folder from all its items (default) or one per item")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--cache-dir", default=None, help="metric embedding cache (optional)")
    parser.add_argument("--device", default="cpu", help="device for model-based metrics (default cpu)")
    parser.set_defaults(func=_command)


def _alignment_arg(max_lag_ms: float, per: str) -> AlignmentSpec:
    from codecbench.bench.pairing import AlignmentSpec, check_alignment

    check_alignment(max_lag_ms, per, "--max-lag-ms/--align-per")
    return AlignmentSpec(max_lag_ms=float(max_lag_ms), per=per)


def _command(args: argparse.Namespace) -> int:
    names = [name.strip() for name in str(args.metrics).split(",") if name.strip()]
    if args.out and Path(args.out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out {args.out}: unknown suffix {Path(args.out).suffix!r}; use .parquet or .csv")
    table = score(
        args.reference_dir, args.decoded_dirs, metrics=names, sample_rate_hz=args.sample_rate_hz,
        length_tolerance=args.tolerance, decoded_sample_rate_hz=args.deg_sample_rate_hz,
        cache_dir=args.cache_dir, device=args.device, length_policy=args.length_policy,
        alignment=_alignment_arg(args.max_lag_ms, args.align_per), progress=not args.quiet,
    )
    print_tables(table)
    if args.out:
        path = write(wide(table) if args.wide else table, args.out)
        print(f"wrote {path}")
    failed = int((table["status"] != "ok").sum())
    if failed:
        print(f"{failed} value(s) failed; their reasons are in the tables")
    return 0


__all__ = ["score", "wide", "summary", "write", "print_tables", "add_commands"]
