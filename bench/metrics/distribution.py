"""Set-level distribution metrics on frame embeddings: FAD, FAD-inf and KAD, one registered class per embedding.

Each class pairs a statistic (:mod:`~codecbench.bench.metrics.frechet`, :mod:`~codecbench.bench.metrics.kad`) with
an :class:`~codecbench.bench.metrics.embeddings.Embedder`. Embeddings go through
:class:`~codecbench.bench.metrics.embeddings.EmbeddingCache` (content-hash keys, batched, never twice).

``compute_set`` returns the value with extras: ``n`` (degraded frames; ``n_counts`` says so), ``n_reference``,
``dims``, ``n_items``, ``reference_duration_s``, ``degraded_duration_s``, the embedder identity and a percentile
bootstrap 95% CI over items (``ci_low``, ``ci_high``; the report's summaries and figures read them) (items resampled with replacement, reference and degraded paired, seeded;
:func:`codecbench.bench.core.stats.bootstrap_ci`). FAD and KAD bootstraps reuse per-item sufficient statistics
(sums and outer products; kernel block sums), so they cost no extra embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from codecbench.bench.core import stats
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics import frechet, kad
from codecbench.bench.metrics.base import MetricInfo, MetricValue, SetMetric
from codecbench.bench.metrics.embeddings import Embedder, EmbeddingCache, LogMelEmbedder

FAD_CITATION = "Kilgour et al., 'Frechet Audio Distance', Interspeech 2019; per-frame embeddings as fadtk"
FAD_INF_CITATION = "Gui et al., 'Adapting Frechet Audio Distance for Generative Music Evaluation', ICASSP 2024"
KAD_CITATION = "Chung et al., 'KAD: No More FAD!', 2025 (unbiased MMD, Gretton et al. 2012)"


class EmbeddingSetMetric(SetMetric):
    """Common part: embedding (cached), set bookkeeping, bootstrap. Subclasses set ``embedder_class``."""

    embedder_class: ClassVar[type[Embedder]]

    def __init__(
        self,
        *,
        bootstrap_resamples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
        batch_size: int = 8,
        cache_dir: str | None = None,
        device: str = "cpu",
    ):
        super().__init__(bootstrap_resamples=bootstrap_resamples, confidence=confidence, seed=seed,
                         cache_dir=cache_dir, device=device)
        if bootstrap_resamples < 0:
            raise ValueError(f"{self.info.name}: bootstrap_resamples must be >= 0, got {bootstrap_resamples}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"{self.info.name}: confidence must be in (0, 1), got {confidence}")
        self.bootstrap_resamples = int(bootstrap_resamples)
        self.confidence = float(confidence)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self._embeddings: EmbeddingCache | None = None

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        ident["options"] = {k: v for k, v in self.options.items() if k not in ("batch_size",)}
        return ident

    def make_embedder(self) -> Embedder:
        return self.embedder_class()

    @property
    def embeddings(self) -> EmbeddingCache:
        if self._embeddings is None:
            self._embeddings = EmbeddingCache(self.make_embedder(), self.cache, self.batch_size)
        return self._embeddings

    def embed_sets(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
        if len(references) == 0 or len(degraded) == 0:
            raise MetricFailure(f"{self.info.name}: empty set ({len(references)} references, {len(degraded)} degraded)")
        if len(references) != len(degraded):
            raise MetricFailure(
                f"{self.info.name}: {len(references)} references but {len(degraded)} degraded items; pass pairs"
            )
        ref_emb = self.embeddings.embed(references, sample_rate_hz)
        deg_emb = self.embeddings.embed(degraded, sample_rate_hz)
        embedder = self.embeddings.embedder
        extras: dict[str, Any] = {
            "n": int(sum(e.shape[0] for e in deg_emb)),
            "n_counts": "degraded embedding frames",
            "n_reference": int(sum(e.shape[0] for e in ref_emb)),
            "dims": embedder.dims,
            "n_items": len(degraded),
            "reference_duration_s": float(sum(np.shape(r)[-1] for r in references) / sample_rate_hz),
            "degraded_duration_s": float(sum(np.shape(d)[-1] for d in degraded) / sample_rate_hz),
            "embedder": embedder.identity(),
        }
        return ref_emb, deg_emb, extras

    def _bootstrap(self, n_items: int, statistic) -> dict[str, Any]:
        """CI of ``statistic(item indices [I]) -> float`` over items; NaN from a failed resample voids the CI."""
        if self.bootstrap_resamples == 0 or n_items < 2:
            return {"ci": "not computed" if self.bootstrap_resamples == 0 else "needs >= 2 items"}

        def over_rows(idx: np.ndarray) -> np.ndarray:
            out = np.empty(idx.shape[0])
            for r, row in enumerate(idx.astype(int)):
                try:
                    out[r] = statistic(row)
                except MetricFailure:
                    out[r] = np.nan
            return out

        interval = stats.bootstrap_ci(
            np.arange(n_items, dtype=np.float64), over_rows, self.confidence, self.bootstrap_resamples, self.seed
        )
        if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
            return {"ci": "unavailable: some item resamples had too few frames (N <= D)"}
        return {
            "ci_low": interval.low,
            "ci_high": interval.high,
            "ci_confidence": interval.confidence,
            "ci_resamples": self.bootstrap_resamples,
            "ci_method": f"{interval.method} over items, seed {self.seed}",
        }


class FrechetAudioDistance(EmbeddingSetMetric):
    """FAD between the reference set and the degraded set (frame embeddings; lower is better)."""

    def compute_set(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> MetricValue:
        """``references``, ``degraded``: paired lists of float32 [C, T_i] at ``sample_rate_hz``."""
        ref_emb, deg_emb, extras = self.embed_sets(references, degraded, sample_rate_hz)
        ref_stats = frechet.gaussian_stats(np.concatenate(ref_emb), f"{self.info.name} reference set")
        deg_stats = frechet.gaussian_stats(np.concatenate(deg_emb), f"{self.info.name} degraded set")
        value, raw = frechet.frechet_distance_parts(ref_stats.mean, ref_stats.cov, deg_stats.mean, deg_stats.cov)
        extras["clipped_negative"] = raw < 0
        extras["n_over_dims"] = extras["n"] / extras["dims"]
        ref_suff, deg_suff = _sufficient(ref_emb), _sufficient(deg_emb)

        def statistic(rows: np.ndarray) -> float:
            weights = np.bincount(rows, minlength=len(ref_emb)).astype(np.float64)
            r, d = _stats_from(ref_suff, weights), _stats_from(deg_suff, weights)
            return frechet.frechet_distance(r.mean, r.cov, d.mean, d.cov)

        extras.update(self._bootstrap(len(degraded), statistic))
        return MetricValue(value, extras)


class FadInfinity(EmbeddingSetMetric):
    """FAD-inf: FAD extrapolated to infinitely many frames (:func:`codecbench.bench.metrics.frechet.fad_inf`).

    Options: ``estimator`` (``"codecbench"``, the default, or ``"fadtk"``), ``steps`` (subset sizes, >= 5),
    ``repeats`` (draws per size, codecbench estimator), ``bootstrap_resamples`` (item bootstrap of the whole
    estimate, default 50; each resample refits the whole estimate). ``extras["status"]`` is ``unreliable`` with
    ``extras["status_reason"]`` when the frames are too few, the fit is poor (R^2 < 0.9 with an imprecise intercept)
    or the intercept is negative;
    the results table then carries that status instead of ``ok``.
    """

    def __init__(self, *, steps: int | None = None, estimator: str = "codecbench", repeats: int = 4,
                 bootstrap_resamples: int = 50, **kwargs: Any):
        super().__init__(bootstrap_resamples=bootstrap_resamples, **kwargs)
        if estimator not in frechet.FAD_INF_ESTIMATORS:
            raise ValueError(f"{self.info.name}: estimator must be one of {frechet.FAD_INF_ESTIMATORS}, "
                             f"got {estimator!r}")
        if steps is not None and int(steps) < frechet.FAD_INF_MIN_SIZES:
            raise ValueError(f"{self.info.name}: steps must be >= {frechet.FAD_INF_MIN_SIZES}, got {steps}")
        self.options.update(steps=steps, estimator=estimator, repeats=int(repeats))
        self.steps, self.estimator, self.repeats = steps, estimator, int(repeats)

    def _estimate(self, ref: np.ndarray, deg: np.ndarray) -> frechet.FadInf:
        return frechet.fad_inf(ref, deg, steps=self.steps, seed=self.seed, estimator=self.estimator,
                               repeats=self.repeats)

    def compute_set(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> MetricValue:
        ref_emb, deg_emb, extras = self.embed_sets(references, degraded, sample_rate_hz)
        result = self._estimate(np.concatenate(ref_emb), np.concatenate(deg_emb))
        extras.update(
            estimator=result.estimator, r_squared=result.r_squared, slope=result.slope,
            subset_sizes=list(result.sizes), subset_fads=list(result.fads), status=result.status,
            status_reason=result.reason, intercept_se=result.intercept_se,
            min_r_squared=frechet.FAD_INF_MIN_R_SQUARED, max_relative_se=frechet.FAD_INF_MAX_RELATIVE_SE,
        )

        def statistic(rows: np.ndarray) -> float:
            return self._estimate(np.concatenate([ref_emb[i] for i in rows]),
                                  np.concatenate([deg_emb[i] for i in rows])).value

        extras.update(self._bootstrap(len(degraded), statistic))
        return MetricValue(result.value, extras)


class KernelAudioDistance(EmbeddingSetMetric):
    """KAD: unbiased MMD^2, Gaussian kernel, median-distance bandwidth of the reference set (lower is better)."""

    def compute_set(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> MetricValue:
        ref_emb, deg_emb, extras = self.embed_sets(references, degraded, sample_rate_hz)
        x = [e.astype(np.float64) for e in ref_emb]
        y = [e.astype(np.float64) for e in deg_emb]
        if sum(len(e) for e in x) < 2 or sum(len(e) for e in y) < 2:
            raise MetricFailure(f"{self.info.name}: needs at least 2 frames per set")
        sigma = kad.median_bandwidth(np.concatenate(x), self.seed)
        if not sigma > 0:
            raise MetricFailure(f"{self.info.name}: kernel bandwidth is 0 (all reference frames identical)")
        gamma = 1.0 / (2.0 * sigma * sigma)
        bxx, byy, bxy = _block_sums(x, x, gamma), _block_sums(y, y, gamma), _block_sums(x, y, gamma)
        fx = np.array([len(e) for e in x], dtype=np.float64)
        fy = np.array([len(e) for e in y], dtype=np.float64)

        def statistic_w(w: np.ndarray) -> float:
            m, n = w @ fx, w @ fy
            if m < 2 or n < 2:
                raise MetricFailure("kad: resample with fewer than 2 frames")
            kxx = (w @ bxx @ w - w @ fx) / (m * (m - 1))  # minus each frame's k(x, x) = 1
            kyy = (w @ byy @ w - w @ fy) / (n * (n - 1))
            kxy = (w @ bxy @ w) / (m * n)
            return float(kxx + kyy - 2.0 * kxy)

        value = statistic_w(np.ones(len(x)))
        extras.update(kernel="gaussian", bandwidth=sigma, bandwidth_rule="median pairwise distance of reference frames")
        extras.update(self._bootstrap(len(x), lambda rows: statistic_w(np.bincount(rows, minlength=len(x)).astype(float))))
        return MetricValue(value, extras)


def _sufficient(embeddings: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-item frame counts [I], sums [I, D], outer-product sums [I, D, D] (float64)."""
    counts = np.array([e.shape[0] for e in embeddings], dtype=np.float64)
    sums = np.stack([e.astype(np.float64).sum(axis=0) for e in embeddings])
    outers = np.stack([e.astype(np.float64).T @ e.astype(np.float64) for e in embeddings])
    return counts, sums, outers


def _stats_from(suff: tuple[np.ndarray, np.ndarray, np.ndarray], weights: np.ndarray) -> frechet.GaussianStats:
    counts, sums, outers = suff
    n = float(weights @ counts)
    dims = sums.shape[1]
    if n <= dims:
        raise MetricFailure(f"resample has N = {n:.0f} frames <= D = {dims}")
    mean = (weights @ sums) / n
    scatter = np.tensordot(weights, outers, axes=1) - n * np.outer(mean, mean)
    return frechet.GaussianStats(mean, scatter / (n - 1.0), int(n))


def _block_sums(a: list[np.ndarray], b: list[np.ndarray], gamma: float) -> np.ndarray:
    """[I, J] sums of the Gaussian kernel between the frames of item i of ``a`` and item j of ``b``."""
    out = np.empty((len(a), len(b)))
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            out[i, j] = np.exp(-gamma * kad._sq_dists(ai, bj)).sum()
    return out


# ---- the weights-free log-mel embedding (works everywhere) -----------------------------------------------------

_LOGMEL = "log-mel frames (64 bands, 48 kHz, 2048/1024), weights-free"


class FadLogMel(FrechetAudioDistance):
    embedder_class = LogMelEmbedder
    info = MetricInfo(
        name="fad_logmel", unit="", higher_is_better=False, needs_reference=True, level="set",
        sample_rate_hz=LogMelEmbedder.sample_rate_hz, version="1", citation=FAD_CITATION,
        description=f"FAD on {_LOGMEL}",
    )


class FadInfLogMel(FadInfinity):
    embedder_class = LogMelEmbedder
    info = MetricInfo(
        name="fad_inf_logmel", unit="", higher_is_better=False, needs_reference=True, level="set",
        sample_rate_hz=LogMelEmbedder.sample_rate_hz, version="1", citation=FAD_INF_CITATION,
        description=f"FAD-inf (extrapolated, seeded, R^2 and status reported) on {_LOGMEL}",
    )


class KadLogMel(KernelAudioDistance):
    embedder_class = LogMelEmbedder
    info = MetricInfo(
        name="kad_logmel", unit="", higher_is_better=False, needs_reference=True, level="set",
        sample_rate_hz=LogMelEmbedder.sample_rate_hz, version="1", citation=KAD_CITATION,
        description=f"KAD (unbiased MMD^2, Gaussian kernel, median bandwidth) on {_LOGMEL}",
    )
