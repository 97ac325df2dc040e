"""The metric registry: built-ins from :mod:`codecbench.bench.metrics.catalogue`, third parties from the
``codecbench.metrics`` entry-point group. Same mechanism as the codec registry."""

from __future__ import annotations

from codecbench.bench.core.registry import Registry
from codecbench.bench.metrics.base import Metric

ENTRY_POINT_GROUP = "codecbench.metrics"


def _builtins() -> dict[str, str]:
    from codecbench.bench.metrics.catalogue import BUILTIN_METRICS

    return BUILTIN_METRICS


REGISTRY: Registry[Metric] = Registry("metric", Metric, _builtins, ENTRY_POINT_GROUP)
register, names, source, get, create, classes = (
    REGISTRY.register, REGISTRY.names, REGISTRY.source, REGISTRY.get, REGISTRY.create, REGISTRY.classes,
)
