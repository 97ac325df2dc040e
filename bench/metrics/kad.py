"""KAD: kernel audio distance, the unbiased squared MMD between frame-embedding sets (Chung et al. 2025,
"KAD: No More FAD! An Effective and Efficient Evaluation Metric for Audio Generation"; Gretton et al. 2012).

Definition (float64)::

    k(x, y) = exp(-||x - y||^2 / (2 sigma^2))                      Gaussian RBF kernel
    sigma   = median of the pairwise Euclidean distances ||x_i - x_j||, i < j, within the REFERENCE set
              (on a seeded subset of at most 4096 reference frames when N_r is larger)
    KAD     = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j) - 2/(mn) sum_{i, j} k(x_i, y_j)

with x the m reference frames and y the n degraded frames. Unbiased, so it may be slightly negative when the two
sets come from the same distribution; it is reported as is (no clipping), unscaled (kadtk multiplies by 1000).
Computed in row blocks, so memory is O(block x N), not O(N^2).
"""

from __future__ import annotations

import numpy as np
from codecbench.bench.core.errors import MetricFailure

MEDIAN_SUBSET = 4096
BLOCK_ROWS = 1024


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def median_bandwidth(reference: np.ndarray, seed: int = 0, max_points: int = MEDIAN_SUBSET) -> float:
    """Median pairwise Euclidean distance within ``reference`` [N, D] (seeded subset of ``max_points``)."""
    x = np.asarray(reference, dtype=np.float64)
    if x.shape[0] > max_points:
        x = x[np.random.default_rng(seed).choice(x.shape[0], size=max_points, replace=False)]
    iu = np.triu_indices(x.shape[0], k=1)
    dist = np.sqrt(_sq_dists(x, x)[iu])
    return float(np.median(dist))


def _kernel_sum(a: np.ndarray, b: np.ndarray, gamma: float, exclude_diagonal: bool) -> float:
    total = 0.0
    for start in range(0, a.shape[0], BLOCK_ROWS):
        block = np.exp(-gamma * _sq_dists(a[start : start + BLOCK_ROWS], b))
        if exclude_diagonal:
            rows = np.arange(block.shape[0])
            block[rows, rows + start] = 0.0
        total += float(block.sum())
    return total


def kernel_audio_distance(
    reference: np.ndarray, degraded: np.ndarray, bandwidth: float | None = None, seed: int = 0
) -> tuple[float, float]:
    """(KAD, bandwidth sigma) between ``reference`` [m, D] and ``degraded`` [n, D] frame embeddings."""
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(degraded, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise MetricFailure(f"kad: expected [N, D] embeddings with equal D, got {x.shape} and {y.shape}")
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise MetricFailure(f"kad: needs at least 2 frames per set, got {m} reference and {n} degraded")
    sigma = median_bandwidth(x, seed) if bandwidth is None else float(bandwidth)
    if not sigma > 0:
        raise MetricFailure("kad: kernel bandwidth is 0 (all reference frames identical)")
    gamma = 1.0 / (2.0 * sigma * sigma)
    kxx = _kernel_sum(x, x, gamma, True) / (m * (m - 1))
    kyy = _kernel_sum(y, y, gamma, True) / (n * (n - 1))
    kxy = _kernel_sum(x, y, gamma, False) / (m * n)
    return kxx + kyy - 2.0 * kxy, sigma
