"""Bootstrap confidence intervals, shared by metrics, reports and the MUSHRA analysis.

Percentile bootstrap (Efron & Tibshirani 1993, ch. 13) with a seeded generator, so a rerun gives the same
interval. ``n_resamples`` defaults to 10 000.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    method: str = "percentile bootstrap"


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap CI of ``statistic`` (default: the mean) over the items of ``values`` [N] or [N, ...].

    ``statistic`` takes resampled data [R, N, ...] and returns [R]; the default is the mean over axis 1.
    Raises ValueError for an empty input or non-finite values (a failed item must be dropped, not averaged).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] == 0:
        raise ValueError("bootstrap of an empty sample")
    if not np.all(np.isfinite(values)):
        raise ValueError("bootstrap input contains NaN or Inf")
    stat = statistic or (lambda x: x.mean(axis=1))
    estimate = float(stat(values[None])[0])
    n = values.shape[0]
    if n == 1:
        return Interval(estimate, estimate, estimate, confidence, n)
    rng = np.random.default_rng(seed)
    estimates = np.empty(n_resamples)
    for start in range(0, n_resamples, 1000):  # chunks bound the memory for large N
        stop = min(start + 1000, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        estimates[start:stop] = stat(values[idx])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(estimates, [alpha, 1.0 - alpha])
    return Interval(estimate, float(low), float(high), confidence, n)


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, **kwargs) -> Interval:
    """CI of the mean paired difference ``a - b`` (items aligned)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    return bootstrap_ci(a - b, **kwargs)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values [M] for a family of M tests (Holm 1979), in the input order.

    The i-th smallest p-value is multiplied by (M - i + 1) (i from 1), made non-decreasing along the sorted order
    and capped at 1; a test is significant at level alpha when its adjusted p-value is below alpha. NaN entries
    (tests that could not run) stay NaN and do not count towards M.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"holm expects a 1-D array of p-values, got shape {p.shape}")
    finite = np.isfinite(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    adjusted = np.full(p.shape, np.nan)
    idx = np.flatnonzero(finite)
    m = idx.size
    if m == 0:
        return adjusted
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted
