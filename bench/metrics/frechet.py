"""Frechet distance between Gaussian fits of frame embeddings (FAD, Kilgour et al. 2019) and FAD-inf.

Math (float64 throughout)::

    FD = ||mu_r - mu_d||^2 + tr(S_r) + tr(S_d) - 2 tr( (S_r^1/2 S_d S_r^1/2)^1/2 )

``S_r^1/2`` and the outer square root are symmetric eigen-decompositions with eigenvalues clipped at 0, so the
trace term is real and the result cannot be complex; FD is clipped at 0 (the exact value is >= 0; a clip beyond
round-off is reported in ``extras["clipped_negative"]``). Covariances use the unbiased estimator (ddof 1), as
frechet-audio-distance and fadtk. N (frames) must exceed the embedding dimension D, otherwise the covariance is
singular and the value meaningless: :class:`MetricFailure` names N and D.

FAD-inf (Gui et al., ICASSP 2024, "Adapting Frechet Audio Distance for Generative Music Evaluation"): FAD on
seeded subsets of several sizes, a least-squares line FAD = a + b / n, FAD-inf = a (the value at n -> infinity),
with the fit's R^2 and a status. Two estimators (:func:`fad_inf`): codecbench's own (default; both sets subsampled
without replacement at one fraction, repeated draws) and fadtk's (degraded subsets drawn with replacement against
the full reference). On Gaussians with a known Frechet distance the default is closer to the truth
(tests/test_metrics_frechet.py, bench/benchmarks/fad_inf_estimators.py).
"""

from __future__ import annotations

import math
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


FAD_INF_ESTIMATORS = ("codecbench", "fadtk")
FAD_INF_MIN_SIZES = 5  # distinct subset sizes a fit needs
FAD_INF_MIN_R_SQUARED = 0.9  # a fit below this is "unreliable" ...
FAD_INF_MAX_RELATIVE_SE = 0.02  # ... when the intercept's standard error also exceeds this share of the value
FAD_INF_MIN_FRAMES_PER_DIM = 2  # smallest subset (each set) must hold at least this many frames per dimension


@dataclass(frozen=True)
class FadInf:
    """FAD-inf: intercept of FAD vs 1/n, slope, R^2 of the fit, the subset sizes used and the value's status.

    ``status`` is ``"ok"`` or ``"unreliable"`` with ``reason`` (too few frames, a poor fit, a negative intercept).
    """

    value: float
    slope: float
    r_squared: float
    sizes: tuple[int, ...]
    fads: tuple[float, ...]
    estimator: str = "codecbench"
    status: str = "ok"
    reason: str = ""
    intercept_se: float = math.nan


def _fit(sizes: np.ndarray, fads: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares line FAD = a + b / n; (a, b, R^2, standard error of a)."""
    x = 1.0 / sizes.astype(np.float64)
    slope, intercept = np.polyfit(x, fads, 1)
    residual = fads - (intercept + slope * x)
    total = np.sum((fads - fads.mean()) ** 2)
    r_squared = 1.0 - float(np.sum(residual**2) / total) if total > 0 else 1.0
    m = x.size
    sxx = float(np.sum((x - x.mean()) ** 2))
    sigma2 = float(np.sum(residual**2)) / max(m - 2, 1)
    intercept_se = float(np.sqrt(sigma2 * (1.0 / m + x.mean() ** 2 / sxx))) if sxx > 0 else math.nan
    return float(intercept), float(slope), r_squared, intercept_se


def fad_inf(
    reference: np.ndarray,
    degraded: np.ndarray,
    steps: int | None = None,
    n_min: int | None = None,
    seed: int = 0,
    *,
    estimator: str = "codecbench",
    repeats: int = 4,
    min_r_squared: float = FAD_INF_MIN_R_SQUARED,
    max_relative_se: float = FAD_INF_MAX_RELATIVE_SE,
) -> FadInf:
    """FAD-inf of ``degraded`` [N_d, D] against ``reference`` [N_r, D].

    ``estimator="codecbench"`` (default): both sets are subsampled **without replacement at the same fraction f**
    (the reference to f N_r, the degraded set to f N_d frames), ``repeats`` seeded draws per size averaged, at
    ``steps`` (default 8) fractions evenly spaced in 1/f from 1/f_min to 1, and FAD = a + b / n_d is fitted. The
    finite-sample bias of FAD is about c_r / n_r + c_d / n_d, which is proportional to 1/f here, so the
    intercept removes the bias of **both** sets (the reference's too).

    ``estimator="fadtk"``: as fadtk's ``score_inf``: the full reference statistics, one subset of the degraded
    frames per size **drawn with replacement**, sizes ``linspace(n_min, N_d, steps)`` (default 25 steps, n_min 500
    when N_d > 1000). Subsets drawn with replacement are samples of the *empirical* degraded distribution, so the
    fit extrapolates to the FAD of the full finite set (its c_d / N_d bias stays), and the reference bias stays too.

    ``n_min`` (smallest degraded subset) defaults to max(2 D, N_d // 4), capped below N_d. The result's status is
    ``unreliable`` (with the reason) when the smallest subset of either set holds fewer than 2 D frames, when the
    sizes span less than a factor 2 (N < 4 D), when fewer than 5 distinct sizes remain, when R^2 < ``min_r_squared`` (0.9) while the intercept's standard
    error exceeds ``max_relative_se`` (2 %) of its value (a low R^2 alone also happens when FAD barely depends on n,
    i.e. the bias is already small, and the value is then precise), or when the intercept is negative (the exact
    distance is >= 0: a negative value means the sets are indistinguishable at this N, never a valid result).
    """
    if estimator not in FAD_INF_ESTIMATORS:
        raise ValueError(f"fad_inf: estimator must be one of {FAD_INF_ESTIMATORS}, got {estimator!r}")
    steps = (8 if estimator == "codecbench" else 25) if steps is None else int(steps)
    if steps < FAD_INF_MIN_SIZES:
        raise ValueError(f"fad_inf: steps must be >= {FAD_INF_MIN_SIZES}, got {steps}")
    if repeats < 1:
        raise ValueError(f"fad_inf: repeats must be >= 1, got {repeats}")
    ref = np.asarray(reference, dtype=np.float64)
    deg = np.asarray(degraded, dtype=np.float64)
    n_deg, dims = deg.shape
    n_ref = ref.shape[0]
    if n_min is None:
        n_min = min(max(FAD_INF_MIN_FRAMES_PER_DIM * dims, n_deg // 4), n_deg - 1)
        if estimator == "fadtk" and n_deg > 1000:
            n_min = 500
    if n_min <= dims or n_min >= n_deg:
        raise MetricFailure(
            f"fad_inf: needs D = {dims} < n_min = {n_min} < N = {n_deg} degraded frames; use more or longer items"
        )
    rng = np.random.default_rng(seed)
    fads: list[float] = []
    if estimator == "fadtk":
        ref_stats = gaussian_stats(ref, "reference set")
        sizes = np.unique(np.linspace(n_min, n_deg, steps).astype(int))
        for size in sizes:
            stats = gaussian_stats(deg[rng.choice(n_deg, size=int(size), replace=True)], "degraded subset")
            fads.append(frechet_distance(ref_stats.mean, ref_stats.cov, stats.mean, stats.cov))
        smallest_ref = n_ref
    else:
        f_min = n_min / n_deg
        if round(f_min * n_ref) <= dims:
            raise MetricFailure(f"fad_inf: the reference subset at fraction {f_min:.3f} has "
                                f"{round(f_min * n_ref)} frames <= D = {dims}; use more or longer items")
        fractions = 1.0 / np.linspace(1.0 / f_min, 1.0, steps)
        pairs = sorted({(int(round(f * n_deg)), int(round(f * n_ref))) for f in fractions})
        sizes = np.array([p[0] for p in pairs])
        for size_d, size_r in pairs:
            draws = 1 if size_d == n_deg and size_r == n_ref else repeats
            values = []
            for _ in range(draws):
                r = gaussian_stats(ref[rng.choice(n_ref, size=size_r, replace=False)], "reference subset")
                d = gaussian_stats(deg[rng.choice(n_deg, size=size_d, replace=False)], "degraded subset")
                values.append(frechet_distance(r.mean, r.cov, d.mean, d.cov))
            fads.append(float(np.mean(values)))
        smallest_ref = pairs[0][1]
    y = np.asarray(fads)
    intercept, slope, r_squared, intercept_se = _fit(sizes, y)
    reasons = []
    need = FAD_INF_MIN_FRAMES_PER_DIM * dims
    if int(sizes[0]) < need or smallest_ref < need:
        reasons.append(f"smallest subsets hold {int(sizes[0])} degraded / {smallest_ref} reference frames, fewer "
                       f"than {FAD_INF_MIN_FRAMES_PER_DIM} D = {need}: too few frames for the 1/n model")
    if sizes[-1] < 2 * sizes[0]:
        reasons.append(f"subset sizes span only {int(sizes[0])}-{int(sizes[-1])} frames, less than a factor 2: N = "
                       f"{n_deg} is too small to extrapolate (N >= 4 D = {4 * dims} needed)")
    if sizes.size < FAD_INF_MIN_SIZES:
        reasons.append(f"only {sizes.size} distinct subset sizes (N = {n_deg} frames), fewer than {FAD_INF_MIN_SIZES}")
    relative_se = intercept_se / abs(intercept) if intercept != 0 else math.inf
    if r_squared < min_r_squared and not relative_se <= max_relative_se:
        reasons.append(f"R^2 = {r_squared:.3f} of the 1/n fit is below {min_r_squared} and the intercept's standard "
                       f"error is {100 * relative_se:.1f} % of it (> {100 * max_relative_se:g} %)")
    if intercept < 0:
        reasons.append(f"negative extrapolation {intercept:.4g} (the distance is >= 0; the sets are "
                       "indistinguishable at this N)")
    return FadInf(intercept, slope, r_squared, tuple(int(s) for s in sizes), tuple(float(f) for f in y), estimator,
                  "unreliable" if reasons else "ok", "; ".join(reasons), intercept_se)
