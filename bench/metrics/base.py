"""The metric contract.

Two kinds, both with read-only metadata in ``info`` (:class:`MetricInfo`):

- :class:`ItemMetric` scores one (reference, degraded) pair: ``score(reference [C, T], degraded [C, T],
  sample_rate_hz) -> MetricValue``; ``score_batch`` may batch model calls. torchmetrics-style ``update`` /
  ``compute`` accumulate a mean.
- :class:`SetMetric` scores a set per operating point (FAD, KAD): ``compute_set(references, degraded,
  sample_rate_hz) -> MetricValue`` whose ``extras`` report N, dims and durations.

A metric that cannot score raises :class:`~codecbench.bench.core.errors.MetricFailure` with the reason; the runner
records it as a failed row (status "failed", the reason in "error"), never as 0 and never as a silent NaN.
Metrics receive audio at the evaluation rate and resample to their working rate themselves (recorded in extras).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from codecbench.bench.core.errors import MetricFailure


@dataclass(frozen=True)
class MetricInfo:
    """Catalogue metadata of a metric.

    Args:
        name: registry name, e.g. "si_sdr".
        unit: "dB", "" (unitless), ...; the wide table's column is ``f"{name}_{unit}"`` where a unit exists.
        higher_is_better: direction.
        needs_reference: paired metric (True) or reference-free.
        level: "item" or "set".
        sample_rate_hz: the rate it works at (None: the evaluation rate).
        version: bump when the definition changes (part of every cache key).
        citation: the paper or reference implementation.
        needs_weights: a model whose weights may be absent.
    """

    name: str
    unit: str
    higher_is_better: bool
    needs_reference: bool
    level: str
    sample_rate_hz: int | None
    version: str
    citation: str
    description: str = ""
    needs_weights: bool = False
    dependencies: tuple[str, ...] = ()

    @property
    def column(self) -> str:
        """Column name with its unit, e.g. ``si_sdr_db``."""
        unit = self.unit.lower().replace(" ", "_").replace("/", "_per_")
        return f"{self.name}_{unit}" if unit else self.name


@dataclass
class MetricValue:
    """One score and what goes with it (lag, resampling, N, dims, ...). ``value`` is always finite."""

    value: float
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.value = float(self.value)
        if not math.isfinite(self.value):
            raise MetricFailure(f"non-finite value {self.value}")


class Metric(ABC):
    """Shared parts of item and set metrics."""

    info: ClassVar[MetricInfo]

    def __init__(self, *, cache_dir: str | None = None, device: str = "cpu", **options: Any):
        """``options`` come from the config and define the metric (part of its identity); ``cache_dir`` (embedding
        cache root, a :class:`~codecbench.bench.core.cache.Cache`) and ``device`` do not change values."""
        from codecbench.bench.core.cache import Cache

        self.options = dict(options)
        self.cache = Cache(cache_dir) if cache_dir else None
        self.device = device

    def identity(self) -> dict[str, Any]:
        """What identifies this metric's values in cache keys: name, version and options."""
        return {"name": self.info.name, "version": self.info.version, "options": self.options}

    def availability(self) -> str | None:
        """None when the metric can run here, else the reason it cannot (e.g. absent weights, named)."""
        return None


class ItemMetric(Metric):
    """A metric scored per item (paired when ``info.needs_reference``)."""

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._sum, self._count = 0.0, 0

    @abstractmethod
    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> MetricValue:
        """Score one item: ``reference`` and ``degraded`` float32 [C, T] at ``sample_rate_hz``."""

    def score_batch(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> list[MetricValue | MetricFailure]:
        """Score many items; failures are returned in place, not raised. Override to batch model calls."""
        out: list[MetricValue | MetricFailure] = []
        for ref, deg in zip(references, degraded):
            try:
                out.append(self.score(ref, deg, sample_rate_hz))
            except MetricFailure as failure:
                out.append(failure)
        return out

    # torchmetrics-style accumulation of the mean
    def update(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> None:
        self._sum += self.score(reference, degraded, sample_rate_hz).value
        self._count += 1

    def compute(self) -> float:
        if self._count == 0:
            raise MetricFailure("compute() called before any update()")
        return self._sum / self._count

    def reset(self) -> None:
        self._sum, self._count = 0.0, 0


class BatchedItemMetric(ItemMetric):
    """An item metric whose natural call is a batch (one model pass): :meth:`score` is a batch of one."""

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> MetricValue:
        result = self.score_batch([reference], [degraded], sample_rate_hz)[0]
        if isinstance(result, MetricFailure):
            raise result
        return result

    @abstractmethod
    def score_batch(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> list[MetricValue | MetricFailure]:
        """Score many items in as few model calls as possible; failures returned in place, never raised."""


class EmbeddingSimilarityMetric(BatchedItemMetric):
    """An item metric comparing the embeddings of reference and degraded (``self.embeddings``, an
    :class:`~codecbench.bench.metrics.embeddings.EmbeddingCache`): one embedding pass over all items, then
    :meth:`compare` per pair. When the pass fails, each item is embedded alone so only the failing ones fail."""

    embeddings: Any

    @abstractmethod
    def compare(self, reference_embedding: np.ndarray, degraded_embedding: np.ndarray) -> MetricValue:
        """The metric value of one pair of embeddings (frames x dims); raise MetricFailure when undefined."""

    def score_batch(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> list[MetricValue | MetricFailure]:
        try:
            embedded = self.embeddings.embed(list(references) + list(degraded), sample_rate_hz)
        except MetricFailure as failure:
            if len(references) == 1:  # already isolated
                return [failure]
            return [self.score_batch([r], [d], sample_rate_hz)[0] for r, d in zip(references, degraded)]
        n = len(references)
        out: list[MetricValue | MetricFailure] = []
        for reference_embedding, degraded_embedding in zip(embedded[:n], embedded[n:]):
            try:
                out.append(self.compare(reference_embedding, degraded_embedding))
            except MetricFailure as failure:
                out.append(failure)
        return out


class SetMetric(Metric):
    """A metric scored over a set of items (one value per operating point)."""

    @abstractmethod
    def compute_set(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> MetricValue:
        """Score the set; ``extras`` must report ``n`` (what N counts), ``dims`` and durations where relevant."""
