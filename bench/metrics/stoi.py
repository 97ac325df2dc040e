"""STOI (Taal et al. 2011) and extended STOI (Jensen & Taal 2016) through ``pystoi``, at its native 10 kHz.

Input at the evaluation rate is downmixed to mono, resampled with soxr VHQ to 10 kHz (so pystoi does not resample
again); no lag is searched by default (``max_lag_ms = 0``; measured alignment: :mod:`codecbench.bench.pairing`). STOI is an intelligibility measure for speech; on other
sounds it is reported but means little. When fewer than 30 STFT frames remain after pystoi removes silent frames,
pystoi warns and returns 1e-5: that becomes a :class:`MetricFailure`, never a score.
"""

from __future__ import annotations

import warnings

import numpy as np
from codecbench.bench.core.errors import MetricFailure, MissingDependencyError
from codecbench.bench.metrics.alignment import DEFAULT_MAX_LAG_MS, prepare_pair
from codecbench.bench.metrics.base import ItemMetric, MetricInfo, MetricValue

WORKING_RATE_HZ = 10_000
INSTALL = "pip install pystoi"


def _stoi_function():
    try:
        from pystoi import stoi
    except ImportError as exc:
        raise MissingDependencyError("STOI", "pystoi", INSTALL) from exc
    return stoi


def stoi_score(reference: np.ndarray, degraded: np.ndarray, extended: bool = False) -> float:
    """STOI of mono ``reference``, ``degraded`` [T] at 10 kHz; too few speech frames -> MetricFailure."""
    stoi = _stoi_function()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(np.asarray(reference, np.float64), np.asarray(degraded, np.float64), WORKING_RATE_HZ, extended))
    for warning in caught:
        if "Not enough STFT frames" in str(warning.message):
            raise MetricFailure("stoi: fewer than 30 non-silent 25.6 ms frames (about 0.4 s of sound) after silence removal")
    return value


class STOI(ItemMetric):
    """STOI (0..1, higher is better); ``extended=True`` gives ESTOI."""

    info = MetricInfo(
        name="stoi", unit="", higher_is_better=True, needs_reference=True, level="item", sample_rate_hz=10_000,
        version="1", citation="Taal et al., IEEE TASLP 2011 (STOI); Jensen & Taal 2016 (ESTOI); pystoi",
        description="short-time objective intelligibility at 10 kHz (mono, resampled; no lag search by default); speech only",
        dependencies=("pystoi",),
    )

    def __init__(
        self, *, extended: bool = False, max_lag_ms: float = DEFAULT_MAX_LAG_MS, cache_dir: str | None = None,
        device: str = "cpu",
    ):
        super().__init__(extended=extended, max_lag_ms=max_lag_ms, cache_dir=cache_dir, device=device)
        self.extended = bool(extended)
        self.max_lag_ms = float(max_lag_ms)

    def availability(self) -> str | None:
        try:
            _stoi_function()
        except MissingDependencyError as exc:
            return str(exc)
        return None

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> MetricValue:
        """``reference``, ``degraded``: float32 [C, T] at ``sample_rate_hz``."""
        ref, deg, extras = prepare_pair(reference, degraded, sample_rate_hz, WORKING_RATE_HZ, "stoi", self.max_lag_ms)
        if np.max(np.abs(ref)) < 1e-7:
            raise MetricFailure("stoi: reference is silent")
        extras["variant"] = "ESTOI" if self.extended else "STOI"
        return MetricValue(stoi_score(ref, deg, self.extended), extras)
