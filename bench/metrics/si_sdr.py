"""SI-SDR: scale-invariant signal-to-distortion ratio (Le Roux, Wisdom, Erdogan, Hershey, ICASSP 2019), in dB.

Definition per channel, after removing each signal's mean (zero-mean)::

    alpha  = (<s_hat, s> + eps) / (||s||^2 + eps)
    SI-SDR = 10 log10((||alpha s||^2 + eps) / (||alpha s - s_hat||^2 + eps))

with ``eps`` = float32 machine epsilon (as torchmetrics' ``scale_invariant_signal_distortion_ratio``), computed in
float64; the item value is the mean over channels. No lag is searched by default (``max_lag_ms = 0``): alignment is
a measured, tested step before the metric (:mod:`~codecbench.bench.pairing`). A silent (constant) reference cannot be scored.
Identical signals give a large finite value (about 10 log10(||s||^2 / eps)), never Inf.
"""

from __future__ import annotations

import numpy as np
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics.alignment import DEFAULT_MAX_LAG_MS, align_pair
from codecbench.bench.metrics.base import ItemMetric, MetricInfo, MetricValue

EPS = float(np.finfo(np.float32).eps)
SILENCE_ENERGY = 1e-10  # summed squared amplitude below which a reference counts as silent


def si_sdr_db(reference: np.ndarray, degraded: np.ndarray, zero_mean: bool = True) -> np.ndarray:
    """SI-SDR in dB of aligned signals ``reference``, ``degraded`` [..., T]; returns [...] (one value per channel)."""
    ref = np.asarray(reference, dtype=np.float64)
    deg = np.asarray(degraded, dtype=np.float64)
    if ref.shape != deg.shape:
        raise ValueError(f"si_sdr_db: shapes differ: {ref.shape} vs {deg.shape}")
    if zero_mean:
        ref = ref - ref.mean(axis=-1, keepdims=True)
        deg = deg - deg.mean(axis=-1, keepdims=True)
    alpha = (np.sum(deg * ref, axis=-1, keepdims=True) + EPS) / (np.sum(ref**2, axis=-1, keepdims=True) + EPS)
    target = alpha * ref
    noise = target - deg
    return 10.0 * np.log10((np.sum(target**2, axis=-1) + EPS) / (np.sum(noise**2, axis=-1) + EPS))


class SISDR(ItemMetric):
    """SI-SDR (dB, higher is better) at the evaluation rate; a residual lag is searched only with ``max_lag_ms > 0``."""

    info = MetricInfo(
        name="si_sdr",
        unit="dB",
        higher_is_better=True,
        needs_reference=True,
        level="item",
        sample_rate_hz=None,
        version="2",
        citation="Le Roux et al., 'SDR - half-baked or well done?', ICASSP 2019",
        description="scale-invariant SDR, zero-mean, per channel then averaged; no lag search by default",
    )

    def __init__(self, *, max_lag_ms: float = DEFAULT_MAX_LAG_MS, cache_dir: str | None = None, device: str = "cpu"):
        super().__init__(max_lag_ms=max_lag_ms, cache_dir=cache_dir, device=device)
        if max_lag_ms < 0:
            raise ValueError(f"si_sdr: max_lag_ms must be >= 0, got {max_lag_ms}")
        self.max_lag_ms = float(max_lag_ms)

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> MetricValue:
        """``reference``, ``degraded``: float32 [C, T] at ``sample_rate_hz``."""
        pair = align_pair(reference, degraded, sample_rate_hz, "si_sdr", self.max_lag_ms)
        centred = pair.reference - pair.reference.mean(axis=-1, keepdims=True)
        energy = np.sum(centred**2, axis=-1)
        if np.any(energy < SILENCE_ENERGY):
            silent = [int(c) for c in np.flatnonzero(energy < SILENCE_ENERGY)]
            raise MetricFailure(f"si_sdr: reference is silent (channel(s) {silent}); SI-SDR is undefined")
        per_channel = si_sdr_db(pair.reference, pair.degraded)
        extras = {"working_rate_hz": sample_rate_hz, **pair.extras(sample_rate_hz)}
        if per_channel.shape[0] > 1:
            extras["per_channel_db"] = [float(v) for v in per_channel]
        return MetricValue(float(per_channel.mean()), extras)
