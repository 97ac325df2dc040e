"""The runner: executes work units (codec round trip -> decoded-audio cache -> item metrics -> run store) and,
once every unit is in the store, the set-level metrics per operating point; then assembles the results table.

:func:`execute_unit` is a plain top-level function of a picklable :class:`~codecbench.bench.grid.Unit`, so any
executor can run it anywhere that sees the run folder and the cache. It writes its own record atomically; what it
computed before a kill stays in the content-addressed cache and is reused by the rerun.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
from typing import Any

import numpy as np
import torch
from codecbench.bench.config import MetricSpec
from codecbench.bench.core import audio as audio_ops
from codecbench.bench.core.cache import Cache, make_key
from codecbench.bench.grid import ItemRef, Unit
from codecbench.bench.records import COLUMNS, CodecFault, ResultRow, RunStats, UnitOutcome, UnitRecord, fault_kind
from codecbench.bench.scoring import entry_fields, item_metric_key, metric_key  # noqa: F401  (keys live in scoring)
from codecbench.bench.store import RunStore
from codecbench.codecs.base import Codec

# Models stay loaded between the units a process runs (keyed by name, options, device).
_CODECS: dict[str, Codec] = {}
_METRICS: dict[str, Any] = {}


def codec_instance(name: str, options: dict[str, Any], device: str) -> Codec:
    from codecbench.codecs import registry

    key = make_key(name=name, options=options, device=device)
    if key not in _CODECS:
        _CODECS[key] = registry.create(name, device=device, **options)
    return _CODECS[key]


def metric_instance(spec: MetricSpec, cache_dir: str, device: str):
    from codecbench.bench.metrics import registry

    key = make_key(name=spec.name, options=dict(spec.options), cache=cache_dir, device=device)
    if key not in _METRICS:
        _METRICS[key] = registry.create(spec.name, cache_dir=cache_dir, device=device, **dict(spec.options))
    return _METRICS[key]


def decoded_key(unit: Unit, codec: Codec, clip_hash: str) -> str:
    """Content key of one decoded item (DESIGN.md): input content, codec identity, point, preprocessing."""
    return make_key(
        clip=clip_hash,
        codec=codec.identity(),
        point=unit.point.as_dict(),
        evaluation={"sample_rate_hz": unit.sample_rate_hz, "channels": unit.channels, "resampler": audio_ops.RESAMPLER},
    )


def save_code_streams(cache: Cache, key: str, bitstream: Any) -> None:
    """Keep an item's integer code streams (for entropy coding after the run), as ``decoded/<key>.codes.npz``."""
    import io

    buffer = io.BytesIO()
    arrays = {f"codes_{i}": np.asarray(s.codes) for i, s in enumerate(bitstream.streams)}
    layout = [{"name": s.name, "alphabet_size": s.alphabet_size, "frame_rate_hz": s.frame_rate_hz} for s in bitstream.streams]
    np.savez_compressed(buffer, layout=np.array(json.dumps(layout)), **arrays)
    cache.put_bytes("decoded", key, ".codes.npz", buffer.getvalue())  # verified on read (key and digest)


def load_code_streams(cache: Cache, key: str) -> tuple | None:
    """The code streams saved by :func:`save_code_streams` (a tuple of CodeStream), or None."""
    import io

    from codecbench.codecs.base import CodeStream

    blob = cache.get_bytes("decoded", key, ".codes.npz")
    if blob is None:
        return None
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        layout = json.loads(str(data["layout"]))
        return tuple(CodeStream(data[f"codes_{i}"], s["alphabet_size"], s["frame_rate_hz"], s["name"])
                     for i, s in enumerate(layout))


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _base_row(unit: Unit, codec: Codec | None, ref: ItemRef) -> dict[str, Any]:
    info = codec.info if codec is not None else None
    return {
        "run": unit.run_name,
        "codec": unit.codec,
        "codec_kind": info.kind if info else "",
        "is_anchor": bool(info.is_anchor) if info else False,
        "weights": codec.weights_status() if codec is not None else "",
        "point": unit.point.label,
        "point_params": unit.point.to_json(),
        "item_id": ref.item_id,
        "clip_path": ref.clip_path,
        "clip_hash": ref.clip_hash,
        "duration_s": ref.duration_s,
        "seed": unit.seed,
        "level": "item",
    }


def _decode_items(unit: Unit, codec: Codec, cache: Cache, stats: RunStats) -> dict[str, dict[str, Any] | CodecFault]:
    """Decoded record per item id (from the cache, or by running the codec); a CodecFault where it failed."""
    from codecbench.codecs.base import CodeBitstream, run_system

    records: dict[str, dict[str, Any] | CodecFault] = {}
    misses: list[tuple[ItemRef, str]] = []
    for ref in unit.items:
        key = decoded_key(unit, codec, ref.clip_hash)
        record = cache.get_json("decoded", key)
        if record is not None and cache.has_audio("decoded", key, record.get("decoded_hash"), unit.sample_rate_hz):
            records[ref.item_id] = record
            stats.cached_items += 1
        else:
            misses.append((ref, key))
    for start in range(0, len(misses), unit.batch_size):
        batch = misses[start : start + unit.batch_size]
        try:
            refs = [cache.get_audio("clips", ref.clip_hash, ref.clip_hash, unit.sample_rate_hz) for ref, _ in batch]
            missing = [ref.item_id for (ref, _), audio in zip(batch, refs) if audio is None]
            if missing:
                raise FileNotFoundError(f"prepared clips missing from the cache or failing verification: {missing}")
            lengths = {audio.shape for audio in refs}
            groups = [list(range(len(batch)))] if len(lengths) == 1 else [[i] for i in range(len(batch))]
            for group in groups:
                torch.manual_seed(unit.seed)
                tensor = torch.from_numpy(np.stack([refs[i] for i in group])).to(codec.device)
                result = run_system(codec, tensor, unit.sample_rate_hz, unit.point,  # checked: ProtocolError if not
                                    item_ids=[batch[i][0].item_id for i in group])
                stats.codec_calls += 1
                stats.codec_items += len(group)
                audio_s = sum(batch[i][0].duration_s for i in group)
                for j, i in enumerate(group):
                    ref, key = batch[i]
                    decoded = result.decoded[j].detach().cpu().numpy().astype(np.float32)
                    if not np.all(np.isfinite(decoded)):
                        records[ref.item_id] = CodecFault(
                            f"codec output has {int(np.sum(~np.isfinite(decoded)))} NaN/Inf samples")
                        continue
                    cache.put_audio("decoded", key, decoded, unit.sample_rate_hz)
                    bitstream = result.bitstreams[j]
                    per_item = result.processing.get("items")  # readers of precomputed outputs: one record each
                    record = {
                        "decoded_key": key,
                        "decoded_hash": audio_ops.content_hash(decoded, unit.sample_rate_hz),
                        **bitstream.rate_columns(),
                        "processing": result.processing,
                        "encode_rtf": result.processing.get("encode_s", math.nan) / audio_s,
                        "decode_rtf": result.processing.get("decode_s", math.nan) / audio_s,
                        "decoded_padded_samples": int(per_item[j].get("padded_samples", 0)) if per_item else 0,
                    }
                    if isinstance(bitstream, CodeBitstream):
                        save_code_streams(cache, key, bitstream)
                    cache.put_json("decoded", key, record)
                    records[ref.item_id] = record
        except Exception as error:  # a failing batch fails its items (and so the unit), with the reason
            for ref, _ in batch:
                records.setdefault(ref.item_id, CodecFault(_error_text(error), fault_kind(error)))
    return records


def _pair_items(unit: Unit, cache: Cache, decoded: dict[str, dict[str, Any] | CodecFault]) -> dict[str, Any]:
    """Per decoded item: (reference, degraded, PairRecord) after the unit's length policy and alignment
    (:mod:`codecbench.bench.pairing`; with ``per: condition`` one lag for the unit's items), or an error string."""
    from codecbench.bench import pairing

    pairs: dict[str, Any] = {}
    ok = []
    for ref in unit.items:
        record = decoded.get(ref.item_id)
        if not isinstance(record, dict):
            continue
        reference = cache.get_audio("clips", ref.clip_hash, ref.clip_hash, unit.sample_rate_hz)
        degraded = cache.get_audio("decoded", record["decoded_key"], record.get("decoded_hash"), unit.sample_rate_hz)
        if reference is None or degraded is None:  # deleted or damaged since written: a failed row, never a missing one
            pairs[ref.item_id] = f"input audio missing or failing verification for item {ref.item_id}"
            continue
        ok.append((ref, reference, degraded, int(record.get("decoded_padded_samples", 0))))
    refs, degs, records = pairing.prepare([o[1] for o in ok], [o[2] for o in ok], unit.sample_rate_hz,
                                          alignment=unit.alignment, length_policy=unit.length_policy,
                                          padded_samples=[o[3] for o in ok])
    for (ref, *_), r, d, rec in zip(ok, refs, degs, records):
        pairs[ref.item_id] = (r, d, rec)
    return pairs


def _score_items(unit: Unit, cache: Cache, decoded: dict[str, dict[str, Any] | CodecFault], stats: RunStats,
                 pairs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Item-metric results per (item id, metric name): {"value", "extras"} or {"error"} (bench.scoring)."""
    from codecbench.bench import scoring

    results: dict[str, dict[str, Any]] = {}
    ok = [ref for ref in unit.items if isinstance(pairs.get(ref.item_id), tuple)]
    for spec in unit.metrics:
        metric = metric_instance(spec, unit.cache_dir, unit.device)
        if metric.info.level != "item":
            continue
        if metric.availability():
            continue  # unavailable here (e.g. absent weights): listed with its reason in the manifest, no rows
        for item_id, pair in pairs.items():
            if isinstance(pair, str):
                results[f"{item_id}|{spec.name}"] = {"error": pair}
        items = [scoring.PairedItem(ref.item_id, pairs[ref.item_id][0], pairs[ref.item_id][1],
                                    item_metric_key(metric.identity(), ref.clip_hash, decoded[ref.item_id],
                                                    unit.sample_rate_hz, unit.length_policy,
                                                    pairs[ref.item_id][2].lag.lag_samples))
                 for ref in ok]
        for item_id, entry in scoring.score_items(metric, items, unit.sample_rate_hz, cache, stats).items():
            results[f"{item_id}|{spec.name}"] = entry
    return results


def execute_unit(unit: Unit) -> dict[str, Any]:
    """Run one unit and write its record to the run store; returns the unit's stats.

    Per-item problems (a codec batch failing, a metric failing) become failed rows with their reasons. A unit with
    any codec or environment failure (the codec cannot be built, a batch raises, NaN/Inf output) is recorded with
    status "failed" (:class:`~codecbench.bench.records.UnitOutcome`), keeping every row it computed, and is retried
    (``retries``, and on every rerun). Metric failures are failed rows of a done unit.
    """
    started = time.perf_counter()
    store = RunStore(unit.run_dir)
    existing = store.read(unit.unit_id)
    if existing is not None and existing.get("status") == "done":
        return {**existing["stats"], "skipped": True}
    if unit.weights_dir:
        from codecbench.bench.core import weights

        weights.use_directory(unit.weights_dir)  # this process (a pool worker, a Slurm node) finds the run's weights
    from codecbench.bench.config import resolve_device

    if unit.device not in ("cpu", "cuda"):  # "auto" resolves where the unit runs (e.g. on a Slurm GPU node)
        unit = dataclasses.replace(unit, device=resolve_device(unit.device))
    cache = Cache(unit.cache_dir)
    stats = RunStats()
    attempts = int((existing or {}).get("attempts", 0))
    try:
        codec = codec_instance(unit.codec, dict(unit.codec_options), unit.device)
    except Exception as error:
        outcome = UnitOutcome.from_error(error, len(unit.items))
        record = UnitRecord(outcome, stats=stats, attempts=attempts + 1, traceback=traceback.format_exc())
        store.write(unit.unit_id, record.to_json())
        return {**stats.counts(), "failed": True, "error": outcome.reason, "outcome": outcome.kind}
    decoded = _decode_items(unit, codec, cache, stats)
    pairs = _pair_items(unit, cache, decoded)
    scores = _score_items(unit, cache, decoded, stats, pairs)
    cost = {
        "params_count": codec.num_parameters(),
        "algorithmic_latency_ms": codec.algorithmic_latency_ms(unit.point),
    }
    rows: list[ResultRow] = []
    decoded_items: list[dict[str, Any]] = []  # the set metrics' inputs, also when no item metric gives a row
    for ref in unit.items:
        base = {**_base_row(unit, codec, ref), **cost, **ref.input_columns}
        record = decoded.get(ref.item_id)
        if not isinstance(record, dict):
            stats.failed_items += 1
            rows.append(ResultRow(**base, status="failed", stage="codec", error=str(record), value=math.nan))
            continue
        base.update({k: v for k, v in record.items() if k in COLUMNS})  # rates, decoded key and hash, RTFs
        base["extras_processing"] = json.dumps(record.get("processing", {}), sort_keys=True)  # what the codec did
        decoded_items.append({k: v for k, v in base.items() if k != "extras_processing"})
        if isinstance(pairs.get(ref.item_id), tuple):
            base.update(pairs[ref.item_id][2].columns())
        for spec in unit.metrics:
            entry = scores.get(f"{ref.item_id}|{spec.name}")
            if entry is None:
                continue  # set-level metric
            metric = metric_instance(spec, unit.cache_dir, unit.device)
            described = {**base, "metric": spec.name, "unit": metric.info.unit,
                         "higher_is_better": metric.info.higher_is_better, "value_column": metric.info.column}
            if "error" in entry:
                stats.failed_items += 1
            rows.append(ResultRow(**described, **entry_fields(entry)))
    stats.seconds = time.perf_counter() - started
    unavailable = sorted(spec.name for spec in unit.metrics  # recomputed when they become available (api)
                         if metric_instance(spec, unit.cache_dir, unit.device).info.level == "item"
                         and metric_instance(spec, unit.cache_dir, unit.device).availability())
    outcome = UnitOutcome.from_faults([r for r in decoded.values() if isinstance(r, CodecFault)], len(unit.items))
    # a failed unit is never done: retried, and its rows (ok and failed) still reach the table
    record = UnitRecord(outcome, tuple(rows), stats, attempts + 1 if outcome.failed else attempts,
                        codec.weights_status(), tuple(unavailable), decoded=tuple(decoded_items))
    store.write(unit.unit_id, record.to_json())
    if outcome.failed:
        return {**stats.counts(), "failed": True, "error": outcome.reason, "outcome": outcome.kind}
    return stats.counts()
