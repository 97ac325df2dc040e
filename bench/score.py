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

from codecbench.bench.core.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from codecbench.bench.metrics.base import Metric
    from codecbench.bench.pairing import AlignmentSpec
    from codecbench.bench.records import ResultRow
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


RUN_NAME = "score"  # the ``run`` column of score tables
POINT_PREFIX = "condition="  # a decoded folder is the operating point ``condition=<folder>`` of its codec


def _folder_rows(folder: AlignedFolder, metrics: Sequence[Metric], sample_rate_hz: int,
                 alignment: AlignmentSpec | None = None, length_policy: str = "trim",
                 audio_cache: Any = None) -> list[ResultRow]:
    """The rows of one aligned decoded folder, in the schema of ``run`` (:class:`ResultRow`): the folder is the
    point ``condition=<folder>`` of its codec (the YAML's ``codec``, else the folder name). With ``audio_cache``
    (a :class:`~codecbench.bench.core.cache.Cache`) the prepared references and decoded files are written to it
    under the rows' ``clip_hash`` and ``decoded_key`` (for reports and MUSHRA bundles)."""
    from codecbench.bench import pairing, scoring
    from codecbench.bench.core.audio import content_hash
    from codecbench.bench.core.cache import make_key
    from codecbench.bench.datasets import reader_input_record, truncation_check
    from codecbench.bench.records import ResultRow

    spec = folder.spec
    declared = spec.declared_rates()
    common = {
        "run": RUN_NAME, "codec": spec.codec, "codec_kind": "precomputed", "point": f"{POINT_PREFIX}{spec.condition}",
        "point_params": json.dumps({"condition": spec.condition}, sort_keys=True),
        "bitrate_kbps": declared.get("bitrate_kbps", math.nan),
        "frame_rate_hz": declared.get("frame_rate_hz", math.nan),
        "compression_ratio": declared.get("compression_ratio", math.nan),
        "rate_source": spec.rate_source,
    }
    references, decoded, pair_records = pairing.prepare(
        [item.reference for item in folder.items], [item.decoded for item in folder.items], sample_rate_hz,
        alignment=alignment or pairing.AlignmentSpec(), length_policy=length_policy,
        padded_samples=[item.decoded_record.padded_samples for item in folder.items])
    per_item = []  # the columns of each item that do not depend on the metric
    for item, pair in zip(folder.items, pair_records):
        record = item.decoded_record
        clip_hash = content_hash(item.reference, sample_rate_hz)
        decoded_hash = content_hash(item.decoded, sample_rate_hz)
        decoded_key = make_key(kind="score-decoded", decoded=decoded_hash, sample_rate_hz=sample_rate_hz)
        if audio_cache is not None:
            audio_cache.put_audio("clips", clip_hash, item.reference, sample_rate_hz)
            audio_cache.put_audio("decoded", decoded_key, item.decoded, sample_rate_hz)
        processing = {  # what the reader of decoded files did (the run's precomputed codec records the same)
            "reader": "codecbench.codecs.precomputed", "decoded_dir": str(spec.folder), "decoded_path": record.path,
            "reference_path": item.reference_record.path, "declared_codec": spec.codec,
            **{column: getattr(record, column) for column in _ALIGNMENT_COLUMNS},
            "alignment": record.summary(),
            "reference_sample_format": item.reference_record.sample_format,
            "reference_resampled_from_hz": item.reference_record.read_sample_rate_hz,
            "decoded_truncation_suspected": bool(truncation_check(Path(record.path), record.file_samples)[0]),
        }
        per_item.append({
            **common, "item_id": item.item, "clip_path": item.reference_record.path, "clip_hash": clip_hash,
            "decoded_key": decoded_key, "decoded_hash": decoded_hash, "level": "item",
            "duration_s": item.reference.shape[-1] / sample_rate_hz,
            "extras_processing": json.dumps(processing, sort_keys=True, default=str),
            **reader_input_record(item.reference_record).columns(), **pair.columns(),
        })
    paired = [scoring.PairedItem(item.item, r, d) for item, r, d in zip(folder.items, references, decoded)]
    rows: list[ResultRow] = []
    for metric in metrics:
        info = metric.info
        described = {"metric": info.name, "unit": info.unit, "value_column": info.column,
                     "higher_is_better": info.higher_is_better}
        reason = metric.availability()
        if info.level == "item":
            if reason is not None:
                entries = {item.item: {"error": f"unavailable: {reason}"} for item in folder.items}
            else:
                entries = scoring.score_items(metric, paired, sample_rate_hz)
            for item, base in zip(folder.items, per_item):
                rows.append(ResultRow(**base, **described, **scoring.entry_fields(entries[item.item])))
        else:
            if reason is not None:
                entry = {"error": f"unavailable: {reason}"}
            else:
                entry, _ = scoring.score_set(metric, references, decoded, sample_rate_hz)
            rows.append(ResultRow(**common, **described, level="set",
                                  duration_s=sum(r.shape[-1] for r in references) / sample_rate_hz,
                                  **scoring.entry_fields(entry)))
    return rows


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
    audio_cache: Any = None,
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
        audio_cache: a :class:`~codecbench.bench.core.cache.Cache` to write the prepared audio into (see
            :func:`write_run_folder`).
    Returns:
        the table in the schema of ``run`` (:class:`~codecbench.bench.records.ResultRow`): ``codec`` is the
        folder's declared codec (else its name), ``point`` is ``condition=<folder>``, the declared rates fill the
        rate columns, and what the reader did per file is ``extras_processing`` (JSON: paths, alignment record).
    Raises:
        AudioInputError: missing, extra or unreadable files, lengths beyond the tolerance (with a header-rate hint).
        UnknownNameError: an unknown metric name.
    """
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
        rows.extend(_folder_rows(folder, instances, sample_rate_hz, alignment, length_policy, audio_cache))
    from codecbench.bench import degenerate, results

    return degenerate.mark(results.to_table(rows))


def _progress_printer(enabled: bool):
    """A function printing one progress line to stderr (flushed, so it shows when the output is piped)."""
    import sys

    def say(text: str) -> None:
        if enabled:
            print(f"codecbench score: {text}", file=sys.stderr, flush=True)

    return say


def condition(point: str) -> str:
    """The decoded folder's name from a score table's ``point`` (``condition=<folder>``)."""
    return point[len(POINT_PREFIX):] if point.startswith(POINT_PREFIX) else point


def _alignment(extras_processing: str) -> str:
    try:
        return str(json.loads(extras_processing or "{}").get("alignment", ""))
    except ValueError:
        return ""


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (decoded folder, item): ``condition``, codec, point, the declared rates, the reader's
    ``alignment`` summary, one column per item metric named with its unit (``si_sdr_db``), and ``<column>_error``
    holding the reason where an item failed (empty otherwise)."""
    items = table[table["level"] == "item"].copy()
    keys = ["codec", "point", "item_id"]
    values = items.pivot_table(index=keys, columns="value_column", values="value", aggfunc="first", dropna=False)
    errors = items.pivot_table(index=keys, columns="value_column", values="error", aggfunc="first")
    errors.columns = [f"{c}_error" for c in errors.columns]
    first = items.drop_duplicates(keys).set_index(keys)
    context = first[["bitrate_kbps", "frame_rate_hz", "rate_source"]].copy()
    context.insert(0, "condition", [condition(p) for p in first.index.get_level_values("point")])
    context["alignment"] = [_alignment(e) for e in first["extras_processing"]]
    return context.join(values).join(errors).reset_index()


def summary(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per (decoded folder, metric): mean of the ok items with its bootstrap CI, counts; set metrics as they are."""
    import pandas as pd
    from codecbench.bench.core.stats import bootstrap_ci

    rows = []
    for (codec, point, column), group in table.groupby(["codec", "point", "value_column"], sort=False):
        ok = group[group["status"] == "ok"]["value"].to_numpy()
        row = {"condition": condition(point), "codec": codec, "point": point, "value_column": column,
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


def write_run_folder(table: pd.DataFrame, out_dir: str | Path, cache_dir: str | Path, *, reference_dir: str | Path,
                     decoded_dirs: Sequence[str | Path], sample_rate_hz: int, metrics: Sequence[str]) -> Path:
    """A run-like folder from a score table: ``results.parquet``/``.csv``, ``failures.csv`` and ``manifest.json``
    (with the ``cache_dir`` holding the audio written by :func:`score` with ``audio_cache``), so that
    ``codecbench report`` and ``codecbench mushra build`` read it like a run folder."""
    from codecbench.bench import degenerate, manifest, results
    from codecbench.bench.faults import write_manifest

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results.write(table, out_dir)
    failed = table[table["status"] == "failed"]
    write_manifest(out_dir / "manifest.json", {
        "run": RUN_NAME, "kind": "score",
        "config": {"name": RUN_NAME, "dataset": {"path": str(Path(reference_dir).resolve()),
                                                 "sample_rate_hz": int(sample_rate_hz)},
                   "decoded_dirs": [str(Path(d).resolve()) for d in decoded_dirs], "metrics": list(metrics)},
        "versions": manifest.package_versions(), "cache_dir": str(Path(cache_dir).resolve()),
        "evaluation": {"sample_rate_hz": int(sample_rate_hz)},
        "degenerate_points": degenerate.note(table),
        "counts": {"rows": len(table), "failed_rows": len(failed)},
        "finished_at": manifest.now(),
    })
    return out_dir


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
                cells.append(f"failed: {error}" if error else _fmt(row.get(column, math.nan)))
            items.add_row(row["condition"], row["item_id"], *cells, row["alignment"])
        console.print(items)
    means = Table(title="means over items (95 % bootstrap CI) and set metrics")
    means.add_column("condition")
    means.add_column("declared rate")
    for column in columns:
        means.add_column(column, justify="right")
    stats = summary(table)
    for (_, point), group in stats.groupby(["codec", "point"], sort=False):
        first = table[table["point"] == point].iloc[0]
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
        means.add_row(condition(point), rate, *cells)
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
    parser.add_argument("--out-dir", metavar="DIR",
                        help="write a run-like folder (results.parquet/.csv, failures.csv, manifest.json; the audio "
                        "in --cache-dir, default DIR/.cache) that `codecbench report` and `codecbench mushra build` read")
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
    audio_cache = None
    cache_dir = args.cache_dir
    if args.out_dir:
        from codecbench.bench.core.cache import Cache

        cache_dir = cache_dir or str(Path(args.out_dir) / ".cache")
        audio_cache = Cache(cache_dir)
    table = score(
        args.reference_dir, args.decoded_dirs, metrics=names, sample_rate_hz=args.sample_rate_hz,
        length_tolerance=args.tolerance, decoded_sample_rate_hz=args.deg_sample_rate_hz,
        cache_dir=cache_dir, device=args.device, length_policy=args.length_policy,
        alignment=_alignment_arg(args.max_lag_ms, args.align_per), progress=not args.quiet,
        audio_cache=audio_cache,
    )
    written = []  # every output is written before anything is printed: a printer fault cannot lose the scores
    if args.out:
        written.append(write(wide(table) if args.wide else table, args.out))
    if args.out_dir:
        written.append(write_run_folder(table, args.out_dir, cache_dir, reference_dir=args.reference_dir,
                                        decoded_dirs=args.decoded_dirs, sample_rate_hz=args.sample_rate_hz,
                                        metrics=names))
    print_tables(table)
    for path in written:
        print(f"wrote {path}")
    failed = int((table["status"] != "ok").sum())
    if failed:
        print(f"{failed} value(s) failed; their reasons are in the tables")
    return 0


__all__ = ["score", "wide", "summary", "write", "write_run_folder", "condition", "print_tables", "add_commands"]
