"""The scoring engine: one way to score paired (reference, decoded) items with item metrics and groups of them
with set metrics, used by the runner (``run``), the set-metric pass (:mod:`codecbench.bench.results`) and
``codecbench score``.

- :func:`item_metric_key`: the cache key of one item-metric value (the metric, both signals, how they were paired).
- :func:`score_items`: one item metric over paired items: cached values where a key is given and the cache has
  them, one ``score_batch`` call for the rest; a failure (a metric's :class:`MetricFailure` in place, or the whole
  batch raising) is an entry with its reason, never a number, and is not cached.
- :func:`score_set`: one set metric over a group (an operating point, a decoded folder), cached likewise.
- :func:`entry_fields`: an entry -> the ``value``, ``status``, ``stage``, ``error``, ``extras`` fields of a
  :class:`~codecbench.bench.records.ResultRow`.

An entry is ``{"value": float, "extras": dict}`` or ``{"error": str}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from codecbench.bench.core.cache import Cache, make_key
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.records import RunStats, error_text


def metric_key(metric_identity: dict[str, Any], reference_hash: str, degraded_hash: str, sample_rate_hz: int) -> str:
    return make_key(metric=metric_identity, reference=reference_hash, degraded=degraded_hash, sample_rate_hz=sample_rate_hz)


def item_metric_key(metric_identity: dict[str, Any], clip_hash: str, decoded_record: dict[str, Any],
                    sample_rate_hz: int, length_policy: str, lag_samples: int) -> str:
    """Key of one item-metric value: the metric, both signals and how they were paired (length policy, lag)."""
    pairing_done = {"length_policy": length_policy, "lag_samples": int(lag_samples),
                    "decoded_padded_samples": decoded_record.get("decoded_padded_samples", 0)}
    return metric_key({**metric_identity, "pairing": pairing_done}, clip_hash, decoded_record["decoded_hash"],
                      sample_rate_hz)


@dataclass(frozen=True)
class PairedItem:
    """One paired item ready for the metrics: [C, T] arrays of equal length; ``key`` None: not cached."""

    item_id: str
    reference: np.ndarray
    degraded: np.ndarray
    key: str | None = None


def failure_entry(error: BaseException | str) -> dict[str, str]:
    if isinstance(error, str):
        return {"error": error}
    if isinstance(error, MetricFailure):
        return {"error": str(error) or type(error).__name__}
    return {"error": error_text(error)}


def score_items(metric: Any, items: Sequence[PairedItem], sample_rate_hz: int, cache: Cache | None = None,
                stats: RunStats | None = None) -> dict[str, dict[str, Any]]:
    """Entry per item id for one item metric (see the module docstring)."""
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for item in items:
        cached = cache.get_json("metrics", item.key) if cache is not None and item.key else None
        if cached is not None:
            results[item.item_id] = cached
            if stats is not None:
                stats.cached_metric_values += 1
        else:
            todo.append(item)
    if not todo:
        return results
    try:
        scores = metric.score_batch([i.reference for i in todo], [i.degraded for i in todo], sample_rate_hz)
    except Exception as error:  # the whole batch: every item fails with the reason
        scores = [MetricFailure(error_text(error))] * len(todo)
    if stats is not None:
        stats.metric_computations += len(todo)
    for item, score in zip(todo, scores):
        if isinstance(score, BaseException):
            entry = failure_entry(score)
        else:
            entry = {"value": score.value, "extras": score.extras}
            if cache is not None and item.key:
                cache.put_json("metrics", item.key, entry)  # failures are not cached: a fixed setup may succeed later
        results[item.item_id] = entry
    return results


def score_set(metric: Any, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int,
              cache: Cache | None = None, key: str | None = None) -> tuple[dict[str, Any], bool]:
    """The entry of one set metric over a group, and whether it was computed (False: read from the cache)."""
    entry = cache.get_json("metrics", key) if cache is not None and key else None
    if entry is not None:
        return entry, False
    try:
        value = metric.compute_set(references, degraded, sample_rate_hz)
        entry = {"value": value.value, "extras": value.extras}
        if cache is not None and key:
            cache.put_json("metrics", key, entry)
    except Exception as error:
        entry = failure_entry(error)
    return entry, True


def entry_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """``value``, ``status``, ``stage``, ``error``, ``extras`` of a row from an entry. A value a metric marks
    unreliable (``extras["status"]``, e.g. FAD-inf) keeps that status and its reason."""
    if "error" in entry:
        return {"value": math.nan, "status": "failed", "stage": "metric", "error": str(entry["error"]), "extras": ""}
    extras = entry.get("extras", {})
    status = extras.get("status", "ok")
    return {"value": entry["value"], "status": status, "stage": "" if status == "ok" else "metric",
            "error": extras.get("status_reason", ""), "extras": json.dumps(extras, sort_keys=True, default=str)}
