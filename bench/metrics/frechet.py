"""Frechet distance between Gaussian fits of frame embeddings (FAD, Kilgour et al. 2019) and FAD-inf.

Math (float64 throughout)::

    FD = ||mu_r - mu_d||^2 + tr(S_r) + tr(S_d) - 2 tr( (S_r^1/2 S_d S_r^1/2)^1/2 )

``S_r^1/2`` and the outer square root are symmetric eigen-decompositions with eigenvalues clipped at 0, so the
trace term is real and the result cannot be complex; FD is clipped at 0 (the exact value is >= 0; a clip beyond
round-off is reported in ``extras["clipped_negative"]``). Covariances use the unbiased estimator (ddof 1), as
frechet-audio-distance and fadtk. N (frames) must exceed the embedding dimension D, otherwise the covariance is
singular and the value meaningless: :class:`MetricFailure` names N and D.

FAD-inf (Gui et al., ICASSP 2024, "Adapting Frechet Audio Distance for Generative Music Evaluation", as fadtk):
FAD is computed on ``steps`` seeded random subsets (without replacement) of the degraded frames of sizes
``linspace(n_min, N_deg, steps)`` against the full reference statistics, a line FAD = a + b / n is fitted by least
squares, and FAD-inf = a (the value at n -> infinity), reported with the fit's R^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from codecbench.bench.core.errors import MetricFailure


@dataclass(frozen=True)
class GaussianStats:
    """Mean [D] and unbiased covariance [D, D] (float64) of N frame embeddings."""

    mean: np.ndarray
    cov: np.ndarray
    n: int

    @property
    def dims(self) -> int:
        return int(self.mean.shape[0])


def gaussian_stats(embeddings: np.ndarray, what: str = "embeddings") -> GaussianStats:
    """Statistics of ``embeddings`` [N, D]; :class:`MetricFailure` when N <= D (singular covariance)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise MetricFailure(f"{what}: expected [N, D] embeddings, got shape {x.shape}")
    n, dims = x.shape
    if n <= dims:
        raise MetricFailure(
            f"{what}: N = {n} frames is not above the embedding dimension D = {dims}; the covariance is singular "
            f"and the Frechet distance meaningless. Use more or longer items (N > D, ideally N >> D)."
        )
    return GaussianStats(x.mean(axis=0), np.cov(x, rowvar=False, ddof=1), n)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    sym = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(sym)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_parts(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> tuple[float, float]:
    """(FD clipped at 0, FD before clipping) between N(mu1, sigma1) and N(mu2, sigma2); float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"frechet_distance: shapes differ: {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    values = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_covmean = float(np.sum(np.sqrt(np.clip(values, 0.0, None))))
    diff = mu1 - mu2
    raw = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(raw, 0.0), raw


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance (>= 0) between two Gaussians: means [D], covariances [D, D]."""
    return frechet_distance_parts(mu1, sigma1, mu2, sigma2)[0]


def fad_from_embeddings(reference: np.ndarray, degraded: np.ndarray) -> float:
    """FAD between frame embeddings ``reference`` [N_r, D] and ``degraded`` [N_d, D]."""
    r, d = gaussian_stats(reference, "reference set"), gaussian_stats(degraded, "degraded set")
    return frechet_distance(r.mean, r.cov, d.mean, d.cov)


@dataclass(frozen=True)
class FadInf:
    """FAD-inf: intercept of FAD vs 1/n, slope, R^2 of the fit, and the subset sizes used."""

    value: float
    slope: float
    r_squared: float
    sizes: tuple[int, ...]
    fads: tuple[float, ...]


def fad_inf(
    reference: np.ndarray,
    degraded: np.ndarray,
    steps: int = 20,
    n_min: int | None = None,
    seed: int = 0,
) -> FadInf:
    """FAD-inf of ``degraded`` [N_d, D] against ``reference`` [N_r, D] (see module docstring).

    ``n_min`` defaults to max(2 D, N_d // 4), capped below N_d; it must exceed D.
    """
    ref = gaussian_stats(reference, "reference set")
    deg = np.asarray(degraded, dtype=np.float64)
    n_deg, dims = deg.shape
    if n_min is None:
        n_min = min(max(2 * dims, n_deg // 4), n_deg - 1)
    if n_min <= dims or n_min >= n_deg:
        raise MetricFailure(
            f"fad_inf: needs D = {dims} < n_min = {n_min} < N = {n_deg} degraded frames; use more or longer items"
        )
    if steps < 3:
        raise ValueError(f"fad_inf: steps must be >= 3, got {steps}")
    rng = np.random.default_rng(seed)
    sizes = np.unique(np.linspace(n_min, n_deg, steps).astype(int))
    fads = []
    for size in sizes:
        subset = deg[rng.choice(n_deg, size=int(size), replace=False)]
        stats = gaussian_stats(subset, "degraded subset")
        fads.append(frechet_distance(ref.mean, ref.cov, stats.mean, stats.cov))
    x = 1.0 / sizes.astype(np.float64)
    y = np.asarray(fads)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r_squared = 1.0 - float(np.sum(residual**2) / total) if total > 0 else 1.0
    return FadInf(float(intercept), float(slope), r_squared, tuple(int(s) for s in sizes), tuple(float(f) for f in y))
