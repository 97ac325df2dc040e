"""Pair checks and residual-delay compensation for sample-wise metrics (SI-SDR, PESQ, STOI).

A codec adapter removes its own known delay. By default (``max_lag_ms = 0``) no lag is searched here: a search
for the best-scoring shift of every item invents quality on outputs that are not waveform-matched (chance
correlation peaks). Measured alignment with a significance test lives in :mod:`codecbench.bench.pairing` (config
key ``alignment``, ``codecbench score --max-lag-ms``) and runs before the metrics. A metric option
``max_lag_ms > 0`` still searches a per-item lag within that window, without a test (kept for comparisons), recorded
as ``extras["lag_samples"]`` (at the metric's working rate).

Sign convention: ``lag > 0`` means the degraded signal is late, ``degraded[n] ~ reference[n - lag]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from codecbench.bench.core.errors import MetricFailure

DEFAULT_MAX_LAG_MS = 0.0  # no lag search by default (see the module docstring)


def check_pair(reference: np.ndarray, degraded: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (reference [C, T1], degraded [C, T2]) pair; return float64 copies trimmed to a common length.

    Raises :class:`MetricFailure` for a wrong rank, different channel counts, empty or non-finite audio.
    """
    reference = np.asarray(reference, dtype=np.float64)
    degraded = np.asarray(degraded, dtype=np.float64)
    if reference.ndim == 1:
        reference = reference[None]
    if degraded.ndim == 1:
        degraded = degraded[None]
    if reference.ndim != 2 or degraded.ndim != 2:
        raise MetricFailure(f"{metric}: expected [C, T] audio, got shapes {reference.shape} and {degraded.shape}")
    if reference.shape[0] != degraded.shape[0]:
        raise MetricFailure(
            f"{metric}: reference has {reference.shape[0]} channels, degraded {degraded.shape[0]}; they must match"
        )
    length = min(reference.shape[1], degraded.shape[1])
    if length == 0:
        raise MetricFailure(f"{metric}: empty audio (0 samples)")
    reference, degraded = reference[:, :length], degraded[:, :length]
    if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(degraded))):
        raise MetricFailure(f"{metric}: audio contains NaN or Inf samples")
    return reference, degraded


def estimate_lag(reference: np.ndarray, degraded: np.ndarray, max_lag_samples: int) -> int:
    """Lag (samples) maximising the cross-correlation of the channel means, searched in [-max, +max].

    ``reference`` and ``degraded``: [C, T] (same T). Positive: degraded is late. Ties resolve to the smallest
    absolute lag, so a signal without a clear peak (e.g. silence) gets lag 0.
    """
    ref = reference.mean(axis=0)
    deg = degraded.mean(axis=0)
    length = ref.shape[-1]
    max_lag = int(min(max_lag_samples, length - 1))
    if max_lag <= 0:
        return 0
    # full cross-correlation: index k <-> lag (k - (length - 1)); corr[lag] = sum_n deg[n] ref[n - lag]
    import scipy.signal  # lazily: scipy.signal costs ~0.5 s to import, a cached rerun never needs it

    corr = scipy.signal.correlate(deg, ref, mode="full", method="fft")
    centre = length - 1
    window = corr[centre - max_lag : centre + max_lag + 1]
    lags = np.arange(-max_lag, max_lag + 1)
    best = window.max()
    if not np.isfinite(best) or best <= 0:
        return 0
    # relative tolerance against FFT round-off so that an exact tie prefers the smaller |lag|
    candidates = lags[window >= best - 1e-9 * max(abs(best), 1e-30)]
    return int(candidates[np.argmin(np.abs(candidates))])


def apply_lag(reference: np.ndarray, degraded: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Undo ``lag`` (see :func:`estimate_lag`): keep the overlapping part of both [C, T] signals; 0 is a no-op."""
    if lag == 0:
        return reference, degraded
    if lag > 0:
        return reference[:, :-lag], degraded[:, lag:]
    return reference[:, -lag:], degraded[:, :lag]


@dataclass(frozen=True)
class Aligned:
    """An aligned pair (float64 [C, T]) and what was done to it."""

    reference: np.ndarray
    degraded: np.ndarray
    lag_samples: int
    trimmed_samples: int  # length difference removed before alignment

    def extras(self, sample_rate_hz: int) -> dict[str, float | int]:
        return {
            "lag_samples": self.lag_samples,
            "lag_ms": 1000.0 * self.lag_samples / sample_rate_hz,
            "length_trimmed_samples": self.trimmed_samples,
        }


def align_pair(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate_hz: int,
    metric: str,
    max_lag_ms: float = DEFAULT_MAX_LAG_MS,
) -> Aligned:
    """Check, trim to a common length, estimate and undo the residual lag (bounded by ``max_lag_ms``)."""
    trimmed = abs(np.shape(reference)[-1] - np.shape(degraded)[-1])
    ref, deg = check_pair(reference, degraded, metric)
    lag = estimate_lag(ref, deg, int(round(max_lag_ms * sample_rate_hz / 1000.0))) if max_lag_ms > 0 else 0
    ref, deg = apply_lag(ref, deg, lag)
    return Aligned(ref, deg, lag, trimmed)


def prepare_pair(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate_hz: int,
    working_rate_hz: int,
    metric: str,
    max_lag_ms: float = DEFAULT_MAX_LAG_MS,
    mono: bool = True,
    compensate: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """For sample-wise metrics with a fixed working rate (PESQ, STOI): check, downmix (channel mean) when ``mono``,
    resample (soxr VHQ) to ``working_rate_hz``, then estimate the residual lag at that rate.

    With ``compensate`` the lag is undone and both signals trimmed to their overlap (:func:`align_pair`); without
    it (PESQ, which aligns in time itself) the lag is only measured and recorded, and the signals keep their full,
    possibly different, lengths. Returns float64 arrays ([T] when ``mono``, else [C, T]) and the extras.
    """
    import torch
    from codecbench.bench.core import audio

    ref, deg = np.asarray(reference, dtype=np.float64), np.asarray(degraded, dtype=np.float64)
    ref, deg = (ref[None] if ref.ndim == 1 else ref), (deg[None] if deg.ndim == 1 else deg)
    check_pair(ref, deg, metric)  # rank, channels, finiteness
    extras: dict[str, object] = {"working_rate_hz": working_rate_hz}
    if mono and ref.shape[0] > 1:
        extras["downmix"] = f"mean-{ref.shape[0]}to1"
        ref, deg = ref.mean(axis=0, keepdims=True), deg.mean(axis=0, keepdims=True)
    if working_rate_hz != sample_rate_hz:
        ref = audio.resample(torch.from_numpy(ref.astype(np.float32)), sample_rate_hz, working_rate_hz).numpy()
        deg = audio.resample(torch.from_numpy(deg.astype(np.float32)), sample_rate_hz, working_rate_hz).numpy()
        ref, deg = ref.astype(np.float64), deg.astype(np.float64)
        extras["resampled_from_hz"] = sample_rate_hz
        extras["resampler"] = audio.RESAMPLER
    pair = align_pair(ref, deg, working_rate_hz, metric, max_lag_ms)
    extras.update(pair.extras(working_rate_hz))
    extras["lag_compensated"] = bool(compensate)
    if compensate:
        ref, deg = pair.reference, pair.degraded
    else:
        extras["length_trimmed_samples"] = 0
    if mono:
        return ref[0], deg[0], extras
    return ref, deg, extras


def working_rate_option(name: str, sample_rate_hz: int | None) -> int | None:
    """Validate a metric's ``sample_rate_hz`` option (its working rate; None: the evaluation rate)."""
    if sample_rate_hz is not None and int(sample_rate_hz) <= 0:
        raise ValueError(f"{name}: sample_rate_hz must be positive, got {sample_rate_hz}")
    return int(sample_rate_hz) if sample_rate_hz else None


def at_working_rate(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate_hz: int,
    working_rate_hz: int | None,
    name: str,
    min_samples: int,
):
    """Checked pair as float32 tensors [C, T] at the metric's working rate, with what was done.

    Applies :func:`check_pair`, resamples both signals from ``sample_rate_hz`` to ``working_rate_hz`` (None: no
    resampling) and returns ``(reference, degraded, rate, extras)``; extras record the length trimmed and any
    resampling. Raises :class:`MetricFailure` when the item is shorter than ``min_samples`` at the working rate.
    """
    import torch
    from codecbench.bench.core import audio

    trimmed = abs(np.shape(reference)[-1] - np.shape(degraded)[-1])
    ref_np, deg_np = check_pair(reference, degraded, name)
    rate = working_rate_hz or sample_rate_hz
    ref = audio.resample(torch.from_numpy(ref_np.astype(np.float32)), sample_rate_hz, rate)
    deg = audio.resample(torch.from_numpy(deg_np.astype(np.float32)), sample_rate_hz, rate)
    if ref.shape[-1] < min_samples:
        raise MetricFailure(f"{name}: item too short ({ref.shape[-1]} samples at {rate} Hz); needs at least {min_samples}")
    extras: dict[str, object] = {"working_rate_hz": rate, "length_trimmed_samples": trimmed}
    if rate != sample_rate_hz:
        extras.update(resampled_from_hz=sample_rate_hz, resampler=audio.RESAMPLER)
    return ref, deg, rate, extras
