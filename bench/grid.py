"""The grid: a validated config and its prepared items -> work units (codec operating point x item shard).

A unit's id is a content key over everything that determines its results (codec, options, point, the content
hashes of its items, metrics, evaluation format, seed), so a finished unit is recognised on any rerun, whatever
the scheduling order. Each unit derives its own seed from the run seed and its identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from codecbench.bench.config import MetricSpec, RunConfig
from codecbench.bench.core.cache import make_key
from codecbench.bench.datasets import Item
from codecbench.bench.pairing import AlignmentSpec
from codecbench.bench.pairing import identity as pairing_identity
from codecbench.codecs.base import OperatingPoint


@dataclass(frozen=True)
class ItemRef:
    """What a unit needs to find an item: its id, source, and the content hash of its prepared audio."""

    item_id: str
    clip_path: str
    clip_hash: str
    duration_s: float
    input_columns: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)  # InputRecord.columns()


@dataclass(frozen=True)
class Unit:
    """One work unit. Plain data (picklable), so any executor can ship it to another process or node."""

    unit_id: str
    run_name: str
    codec: str
    codec_options: Mapping[str, Any]
    point: OperatingPoint
    items: tuple[ItemRef, ...]
    metrics: tuple[MetricSpec, ...]
    seed: int
    sample_rate_hz: int
    channels: int
    batch_size: int
    device: str
    run_dir: str
    cache_dir: str
    weights_dir: str | None
    alignment: AlignmentSpec = AlignmentSpec()
    length_policy: str = "trim"


def shards(items: list[Item], shard_size: int) -> list[list[Item]]:
    return [items[i : i + shard_size] for i in range(0, len(items), shard_size)]


def expand(config: RunConfig, items: list[Item], device: str) -> list[Unit]:
    """Every (codec operating point, item shard) unit of the run, in config order."""
    units = []
    evaluation = {"sample_rate_hz": config.dataset.sample_rate_hz, "channels": config.dataset.channels}
    metric_ids = [{"name": m.name, "options": dict(m.options)} for m in config.metrics]
    for codec in config.codecs:
        for point in codec.points:
            for shard in shards(items, config.shard_size):
                identity = {
                    "codec": codec.name,
                    "options": dict(codec.options),
                    "point": point.as_dict(),
                    "items": [item.clip_hash for item in shard],
                    "ids": [item.item_id for item in shard],
                    "evaluation": evaluation,
                    "run_seed": config.seed,
                }
                unit_id = make_key(**identity, metrics=metric_ids,
                                   pairing=pairing_identity(config.alignment, config.length_policy))[:24]
                units.append(
                    Unit(
                        unit_id=unit_id,
                        run_name=config.name,
                        codec=codec.name,
                        codec_options=dict(codec.options),
                        point=point,
                        items=tuple(ItemRef(i.item_id, i.clip_path, i.clip_hash, i.duration_s,
                                           i.input_record.columns() if i.input_record else {}) for i in shard),
                        metrics=config.metrics,
                        seed=int(make_key(**identity)[:8], 16),
                        sample_rate_hz=config.dataset.sample_rate_hz,
                        channels=config.dataset.channels,
                        batch_size=config.batch_size,
                        device=device,
                        run_dir=str(config.run_dir),
                        cache_dir=str(config.cache_root),
                        weights_dir=config.weights_dir,
                        alignment=config.alignment,
                        length_policy=config.length_policy,
                    )
                )
    return units
