"""The results table: merge the run store's unit records, clip failures and set-level metric rows into one tidy
long table (one row per run, codec, operating point, item, metric; plus set-level rows) with units in the column
names; written as parquet and CSV, failures also to ``failures.csv``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from codecbench.bench.config import RunConfig
from codecbench.bench.core.cache import Cache, make_key
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.datasets import INPUT_COLUMNS, ItemFailure
from codecbench.bench.grid import Unit
from codecbench.bench.pairing import PAIR_COLUMNS
from codecbench.bench.store import RunStore

COLUMNS = [
    "run", "codec", "codec_kind", "is_anchor", "weights", "point", "point_params",
    "bitrate_kbps", "serialized_kbps", "container_overhead_kbps", "entropy_coded_kbps", "frame_rate_hz",
    "compression_ratio", "rate_source", "params_count", "algorithmic_latency_ms", "encode_rtf", "decode_rtf",
    "item_id", "clip_path", "clip_hash", "decoded_key", "duration_s", "level", "metric", "unit",
    "higher_is_better", "value", "status", "stage", "error", "extras", "extras_processing", "seed",
]
# per-item records: what was done to the input file (datasets.InputRecord), to the pair before the metrics
# (pairing.PairRecord), the decoded content hash and the degenerate-model flag (bench/degenerate.py)
RECORD_COLUMNS = [*INPUT_COLUMNS, *PAIR_COLUMNS, "decoded_hash", "degenerate"]
RECORD_NUMERIC = [c for c in RECORD_COLUMNS
                  if c.endswith(("_hz", "_s", "_ms", "_samples", "_frames", "_correlation", "_z"))] + ["input_channels"]
COLUMNS += RECORD_COLUMNS
RATE_COLUMNS = ["bitrate_kbps", "serialized_kbps", "container_overhead_kbps", "entropy_coded_kbps",
                "frame_rate_hz", "compression_ratio", "params_count", "algorithmic_latency_ms",
                "encode_rtf", "decode_rtf"]


def unit_rows(units: Iterable[Unit], store: RunStore) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for unit in units:
        record = store.read(unit.unit_id)
        if record is None:
            continue
        if record.get("status") == "done":
            rows.extend(record["rows"])
        else:  # the whole unit failed (e.g. the codec could not be built): one failed row per item
            for ref in unit.items:
                rows.append({
                    "run": unit.run_name, "codec": unit.codec, "point": unit.point.label,
                    "point_params": unit.point.to_json(), "item_id": ref.item_id, "clip_path": ref.clip_path,
                    "clip_hash": ref.clip_hash, "duration_s": ref.duration_s, "level": "item", "metric": "",
                    "value": math.nan, "status": "failed", "stage": "codec", "error": record.get("error", ""),
                    "seed": unit.seed,
                })
    return rows


def load_failure_rows(run_name: str, failures: list[ItemFailure]) -> list[dict[str, Any]]:
    return [{"run": run_name, "codec": "", "item_id": f.item_id, "clip_path": f.clip_path, "level": "item",
             "metric": "", "value": math.nan, "status": "failed", "stage": "load", "error": f.error}
            for f in failures]


def set_metric_rows(config: RunConfig, item_table: pd.DataFrame, device: str, progress=None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Set-level metrics per (codec, point) over the items whose decode succeeded; values cached by content."""
    from codecbench.bench.runner import metric_instance

    cache = Cache(config.cache_root)
    stats = {"set_computations": 0, "set_cached": 0}
    rows: list[dict[str, Any]] = []
    set_specs = [m for m in config.metrics if metric_instance(m, str(config.cache_root), device).info.level == "set"]
    if not set_specs or item_table.empty:
        return rows, stats
    decoded = item_table[item_table["decoded_key"].notna() & (item_table["decoded_key"] != "")]
    decoded = decoded.drop_duplicates(["codec", "point", "item_id"])
    for (codec, point), group in decoded.groupby(["codec", "point"], sort=False):
        group = group.sort_values("item_id")
        first = group.iloc[0]
        for spec in set_specs:
            metric = metric_instance(spec, str(config.cache_root), device)
            base = {
                "run": config.name, "codec": codec, "codec_kind": first.get("codec_kind", ""),
                "is_anchor": bool(first.get("is_anchor", False)), "weights": first.get("weights", ""),
                "point": point, "point_params": first.get("point_params", ""), "level": "set", "item_id": "",
                "metric": spec.name, "unit": metric.info.unit, "higher_is_better": metric.info.higher_is_better,
                "duration_s": float(group["duration_s"].sum()), "seed": config.seed,
            }
            for column in RATE_COLUMNS:
                if column in group:
                    base[column] = float(np.nanmean(group[column].astype(float))) if group[column].notna().any() else math.nan
            if metric.availability():
                continue  # listed with its reason in the manifest
            key = make_key(metric=metric.identity(), sample_rate_hz=config.dataset.sample_rate_hz,
                           pairs=sorted(zip(group["clip_hash"], group["decoded_key"])))
            entry = cache.get_json("metrics", key)
            if entry is None:
                rate = config.dataset.sample_rate_hz
                references = [cache.get_audio("clips", h, h, rate) for h in group["clip_hash"]]
                degraded = [cache.get_audio("decoded", k) for k in group["decoded_key"]]
                vanished = [i for i, a, b in zip(group["item_id"], references, degraded) if a is None or b is None]
                try:
                    if vanished:  # deleted or damaged since the units ran: a failed row naming them, not a number
                        raise MetricFailure(f"input audio missing or failing verification for items {vanished[:5]} "
                                            "(delete their unit records under units/ to recompute them)")
                    value = metric.compute_set(references, degraded, config.dataset.sample_rate_hz)
                    entry = {"value": value.value, "extras": value.extras}
                    cache.put_json("metrics", key, entry)
                except MetricFailure as failure:
                    entry = {"error": str(failure)}
                except Exception as error:
                    entry = {"error": f"{type(error).__name__}: {error}"}
                stats["set_computations"] += 1
            else:
                stats["set_cached"] += 1
            if "error" in entry:
                rows.append({**base, "value": math.nan, "status": "failed", "stage": "metric", "error": entry["error"]})
            else:
                extras = entry.get("extras", {})  # a value a metric marks unreliable (FAD-inf) keeps its reason
                rows.append({**base, "value": entry["value"], "status": extras.get("status", "ok"),
                             "stage": "" if extras.get("status", "ok") == "ok" else "metric",
                             "error": extras.get("status_reason", ""),
                             "extras": json.dumps(extras, sort_keys=True, default=str)})
            if progress is not None:
                progress.update(1)
    return rows, stats


def add_entropy_coded_rates(table: pd.DataFrame, config: RunConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``entropy_coded_kbps`` for codecs with integer code streams: per operating point, static per-codebook models
    are fitted on a fit split of the items (``entropy_fit_fraction``, in item-id order) and the other items are
    entropy-coded with them (constriction's ANS coder, real coded sizes). Fit items keep NaN: no item is coded with a
    model fitted on itself. Returns the table and a summary for the manifest."""
    from codecbench.bench.runner import load_code_streams
    from codecbench.codecs import entropy
    from codecbench.codecs.base import CodeBitstream

    cache = Cache(config.cache_root)
    summary: dict[str, Any] = {"fit_fraction": config.entropy_fit_fraction, "coder": "constriction ANS, static per-codebook models", "points": {}}
    items = table[(table["level"] == "item") & (table["decoded_key"] != "")].drop_duplicates(["codec", "point", "item_id"])
    updates: dict[tuple[str, str, str], float] = {}
    stats_rows: list[dict[str, Any]] = []  # bitstream statistics per codebook (codecs/bitstream_stats.py)
    for (codec, point), group in items.groupby(["codec", "point"], sort=False):
        group = group.sort_values("item_id")
        streams = [load_code_streams(cache, key) for key in group["decoded_key"]]
        if streams and all(s is not None for s in streams):
            from codecbench.codecs import bitstream_stats

            stats_rows += [{**row, "bitrate_kbps": float(group["bitrate_kbps"].median())}
                           for row in bitstream_stats.rows(codec, point, streams)]
        if any(s is None for s in streams) or len(group) < 2:
            continue
        bitstreams = [CodeBitstream(1, max(1, int(round(d * 1000))), streams=s) for s, d in zip(streams, group["duration_s"])]
        fit_items, eval_items = entropy.split_fit_eval(list(zip(group["item_id"], bitstreams, group["duration_s"])),
                                                       config.entropy_fit_fraction)
        key = make_key(kind="entropy", fit=[k for k in group["decoded_key"]], fraction=config.entropy_fit_fraction)
        cached = cache.get_json("metrics", key)
        if cached is None:
            model = entropy.fit([b for _, b, _ in fit_items])
            cached = {item_id: entropy.coded_bits(model, b) / d / 1000.0 for item_id, b, d in eval_items}
            cache.put_json("metrics", key, cached)
        for item_id, kbps in cached.items():
            updates[(codec, point, item_id)] = kbps
        summary["points"][f"{codec} {point}"] = {"fit_items": [i for i, _, _ in fit_items], "coded_items": len(eval_items)}
    if updates:
        index = list(zip(table["codec"], table["point"], table["item_id"]))
        table["entropy_coded_kbps"] = [updates.get(k, v) for k, v in zip(index, table["entropy_coded_kbps"])]
    for row in stats_rows:  # next to the held-out ANS-coded rate of the same point (NaN where none was coded)
        coded = [v for (c, p, _), v in updates.items() if (c, p) == (row["codec"], row["point"])]
        row["entropy_coded_kbps"] = float(np.mean(coded)) if coded else math.nan
    summary["bitstream_stats"] = stats_rows  # written to bitstream_stats.csv by the caller, not the manifest
    return table, summary


def to_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> the tidy table with every column of :data:`COLUMNS` in that order and stable dtypes."""
    table = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in table:
            table[column] = np.nan if column in RATE_COLUMNS + RECORD_NUMERIC + ["value", "duration_s"] else ""
    table = table[COLUMNS]
    for column in RATE_COLUMNS + ["value", "duration_s"] + RECORD_NUMERIC:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    for column in ("is_anchor", "higher_is_better", "input_truncation_suspected"):
        table[column] = table[column].map(lambda v: bool(v) if isinstance(v, (bool, np.bool_)) else False)
    text = [c for c in COLUMNS if c not in RATE_COLUMNS + RECORD_NUMERIC + ["value", "duration_s", "is_anchor",
                                                                          "higher_is_better", "seed",
                                                                          "input_truncation_suspected"]]
    table[text] = table[text].fillna("").astype(str)
    table["seed"] = pd.to_numeric(table["seed"], errors="coerce").fillna(-1).astype("int64")
    sort = ["codec", "point", "level", "item_id", "metric"]
    return table.sort_values(sort, kind="stable").reset_index(drop=True)


def write(table: pd.DataFrame, run_dir: Path) -> dict[str, Path]:
    """results.parquet, results.csv and failures.csv, each written atomically."""
    import io

    from codecbench.bench.core.cache import atomic_write_bytes

    paths = {"parquet": run_dir / "results.parquet", "csv": run_dir / "results.csv", "failures": run_dir / "failures.csv"}
    for kind, path in paths.items():  # unique temp names (concurrent writers never share one), then a rename
        buffer = io.BytesIO()
        if kind == "parquet":
            table.to_parquet(buffer, index=False)
        elif kind == "csv":
            table.to_csv(buffer, index=False)
        else:
            table[table["status"] == "failed"][["codec", "point", "item_id", "clip_path", "stage", "metric", "error"]].to_csv(buffer, index=False)
        atomic_write_bytes(path, buffer.getvalue())
    return paths


def read(run_dir: str | Path) -> pd.DataFrame:
    """Load a run's results table."""
    return pd.read_parquet(Path(run_dir) / "results.parquet")
