"""The results table: merge the run store's unit records, clip failures and set-level metric rows into one tidy
long table (one row per run, codec, operating point, item, metric; plus set-level rows) with units in the column
names; written as parquet and CSV, failures also to ``failures.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from codecbench.bench import records, scoring
from codecbench.bench.config import RunConfig
from codecbench.bench.core.cache import Cache, make_key
from codecbench.bench.datasets import ItemFailure
from codecbench.bench.grid import Unit
from codecbench.bench.records import ResultRow, UnitRecord
from codecbench.bench.store import RunStore

COLUMNS = list(records.COLUMNS)  # the table's columns, in order: the fields of records.ResultRow
RATE_COLUMNS = ["bitrate_kbps", "serialized_kbps", "container_overhead_kbps", "entropy_coded_kbps",
                "frame_rate_hz", "compression_ratio", "params_count", "algorithmic_latency_ms",
                "encode_rtf", "decode_rtf"]


def unit_rows(units: Iterable[Unit], store: RunStore) -> list[ResultRow]:
    rows: list[ResultRow] = []
    for unit in units:
        body = store.read(unit.unit_id)
        if body is None:
            continue
        record = UnitRecord.from_json(body)
        if record.rows:
            rows.extend(record.rows)  # a failed unit keeps what it computed: ok rows and failed rows with reasons
        elif record.outcome.failed:  # the whole unit failed (e.g. the codec could not be built): a failed row per item
            for ref in unit.items:
                rows.append(ResultRow(
                    run=unit.run_name, codec=unit.codec, point=unit.point.label, point_params=unit.point.to_json(),
                    item_id=ref.item_id, clip_path=ref.clip_path, clip_hash=ref.clip_hash, duration_s=ref.duration_s,
                    level="item", value=math.nan, status="failed", stage="codec",
                    error=record.outcome.reason or f"unit {unit.unit_id} failed", seed=unit.seed))
    return rows


def decoded_items(units: Iterable[Unit], store: RunStore) -> list[dict[str, Any]]:
    """Every decoded item of the units' records (codec, point, item id, clip hash, decoded key, rates): the inputs
    of the set metrics, also where no item metric gave a row (a config with set metrics only)."""
    out: list[dict[str, Any]] = []
    for unit in units:
        body = store.read(unit.unit_id)
        if body is not None:
            out.extend(UnitRecord.from_json(body).decoded)
    return out


def load_failure_rows(run_name: str, failures: list[ItemFailure]) -> list[ResultRow]:
    return [ResultRow(run=run_name, item_id=f.item_id, clip_path=f.clip_path, level="item", value=math.nan,
                      status="failed", stage="load", error=f.error) for f in failures]


def set_metric_rows(config: RunConfig, item_table: pd.DataFrame, device: str, progress=None,
                    decoded: list[dict[str, Any]] | None = None) -> tuple[list[ResultRow], dict[str, int]]:
    """Set-level metrics per (codec, point) over the items whose decode succeeded; values cached by content.
    The items are the item table's decoded rows, plus the ``decoded`` items of the unit records that have no row
    there (:func:`decoded_items`)."""
    from codecbench.bench.runner import metric_instance

    cache = Cache(config.cache_root)
    stats = {"set_computations": 0, "set_cached": 0}
    rows: list[ResultRow] = []
    set_specs = [m for m in config.metrics if metric_instance(m, str(config.cache_root), device).info.level == "set"]
    if not set_specs or (item_table.empty and not decoded):
        return rows, stats
    from_rows = item_table[item_table["decoded_key"].notna() & (item_table["decoded_key"] != "")]
    decoded = pd.concat([from_rows, pd.DataFrame(decoded)]) if decoded else from_rows
    decoded = decoded[decoded["decoded_key"].notna() & (decoded["decoded_key"] != "")]
    decoded = decoded.drop_duplicates(["codec", "point", "item_id"])  # the item table's row first
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
                "value_column": metric.info.column,
                "duration_s": float(group["duration_s"].sum()), "seed": config.seed,
            }
            for column in RATE_COLUMNS:
                if column in group:
                    base[column] = float(np.nanmean(group[column].astype(float))) if group[column].notna().any() else math.nan
            if metric.availability():
                continue  # listed with its reason in the manifest
            key = make_key(metric=metric.identity(), sample_rate_hz=config.dataset.sample_rate_hz,
                           pairs=sorted(zip(group["clip_hash"], group["decoded_key"])))
            rate = config.dataset.sample_rate_hz
            if cache.get_json("metrics", key) is None:
                references = [cache.get_audio("clips", h, h, rate) for h in group["clip_hash"]]
                degraded = [cache.get_audio("decoded", k) for k in group["decoded_key"]]
            else:
                references, degraded = [], []  # read back from the cache by the engine
            vanished = [i for i, a, b in zip(group["item_id"], references, degraded) if a is None or b is None]
            if vanished:  # deleted or damaged since the units ran: a failed row naming them, not a number
                entry, computed = {"error": f"input audio missing or failing verification for items {vanished[:5]} "
                                            "(delete their unit records under units/ to recompute them)"}, True
            else:
                entry, computed = scoring.score_set(metric, references, degraded, rate, cache, key)
            stats["set_computations" if computed else "set_cached"] += 1
            rows.append(ResultRow(**base, **scoring.entry_fields(entry)))
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


def to_table(rows: Iterable[ResultRow | dict[str, Any]]) -> pd.DataFrame:
    """Rows (:class:`~codecbench.bench.records.ResultRow`, or mappings of its columns) -> the tidy table: the
    columns and their kinds are ResultRow's fields (float, int, bool, str), in that order."""
    table = pd.DataFrame([row.as_tuple() for row in records.rows_of(rows)], columns=COLUMNS)
    for column, kind in records.column_kinds().items():
        if kind == "float":
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
        elif kind == "int":
            table[column] = pd.to_numeric(table[column], errors="coerce").fillna(-1).astype("int64")
        elif kind == "bool":
            table[column] = table[column].map(lambda v: bool(v) if isinstance(v, (bool, np.bool_)) else False)
        else:
            table[column] = table[column].fillna("").astype(str)
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
