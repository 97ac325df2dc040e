"""PESQ (ITU-T P.862) through the ``pesq`` package (ludlows/PESQ, the ITU reference C code).

- ``pesq_wb``: wide-band P.862.2 at 16 kHz; ``pesq_nb``: narrow-band P.862 at 8 kHz. Both report MOS-LQO (what the
  package returns: P.862.2 mapping for wb, P.862.1 for nb); for nb the raw P.862 score is in
  ``extras["raw_p862"]`` (inverse of the P.862.1 mapping).
- Input at the evaluation rate is downmixed to mono (channel mean) and resampled with soxr VHQ to 16 / 8 kHz;
  each step is recorded in extras.
- Delay: PESQ aligns the signals in time itself (P.862 utterance-based, variable-delay alignment). The residual
  cross-correlation lag is measured and recorded (``lag_samples``, ``lag_compensated: false``) but the signals are
  not cut before the call: measured on the ITU-T P.862 conformance set (test 2(b)), pre-shifting by the
  cross-correlation lag puts 19 of 40 pairs off by more than 0.05 and trimming to a common length 8 (2 beyond 0.5),
  while passing the full signals reproduces all 40 expected raw scores. ``pre_align=True`` restores the shift.
- Every package error (no utterances in a silent reference, buffer too short, ...) becomes a
  :class:`MetricFailure` with the package's reason; never 0.
"""

from __future__ import annotations

import math

import numpy as np
from codecbench.bench.core.errors import MetricFailure, MissingDependencyError
from codecbench.bench.metrics.alignment import DEFAULT_MAX_LAG_MS, prepare_pair
from codecbench.bench.metrics.base import ItemMetric, MetricInfo, MetricValue

INSTALL = "pip install pesq==0.0.4"


def _pesq_module():
    try:
        import pesq
    except ImportError as exc:
        raise MissingDependencyError("PESQ", "pesq", INSTALL) from exc
    return pesq


def mos_lqo_to_raw_nb(mos_lqo: float) -> float:
    """Invert the P.862.1 mapping MOS-LQO = 0.999 + 4 / (1 + exp(-1.4945 raw + 4.6607))."""
    return (4.6607 - math.log(4.0 / (mos_lqo - 0.999) - 1.0)) / 1.4945


def pesq_score(reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int, mode: str) -> float:
    """MOS-LQO of mono ``reference``, ``degraded`` [T] at 8000 or 16000 Hz; package errors -> MetricFailure."""
    pesq = _pesq_module()
    try:
        return float(pesq.pesq(sample_rate_hz, np.asarray(reference, np.float32), np.asarray(degraded, np.float32), mode))
    except pesq.PesqError as exc:
        raise MetricFailure(f"pesq_{mode}: {type(exc).__name__}: {error_text(exc)}") from exc


def error_text(exc: BaseException) -> str:
    """The package's reason as text: pesq passes the C library's message as bytes (``b'No utterances detected'``)."""
    parts = [a.decode("utf-8", "replace") if isinstance(a, (bytes, bytearray)) else str(a) for a in exc.args]
    return "; ".join(parts) if parts else type(exc).__name__


class _Pesq(ItemMetric):
    mode: str
    working_rate_hz: int

    def __init__(
        self, *, pre_align: bool = False, max_lag_ms: float = DEFAULT_MAX_LAG_MS, cache_dir: str | None = None,
        device: str = "cpu",
    ):
        super().__init__(pre_align=pre_align, max_lag_ms=max_lag_ms, cache_dir=cache_dir, device=device)
        self.pre_align = bool(pre_align)
        self.max_lag_ms = float(max_lag_ms)

    def availability(self) -> str | None:
        try:
            _pesq_module()
        except MissingDependencyError as exc:
            return str(exc)
        return None

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> MetricValue:
        """``reference``, ``degraded``: float32 [C, T] at ``sample_rate_hz``."""
        name = self.info.name
        ref, deg, extras = prepare_pair(
            reference, degraded, sample_rate_hz, self.working_rate_hz, name, self.max_lag_ms, compensate=self.pre_align
        )
        if np.max(np.abs(ref)) < 1e-7:
            raise MetricFailure(f"{name}: reference is silent; PESQ finds no utterance")
        value = pesq_score(ref, deg, self.working_rate_hz, self.mode)
        extras["scale"] = "MOS-LQO (P.862.2)" if self.mode == "wb" else "MOS-LQO (P.862.1)"
        if self.mode == "nb":
            extras["raw_p862"] = mos_lqo_to_raw_nb(value)
        return MetricValue(value, extras)


class PesqWideband(_Pesq):
    """PESQ wide-band (P.862.2) at 16 kHz, MOS-LQO (higher is better)."""

    mode = "wb"
    working_rate_hz = 16000
    info = MetricInfo(
        name="pesq_wb", unit="MOS-LQO", higher_is_better=True, needs_reference=True, level="item",
        sample_rate_hz=16000, version="1", citation="ITU-T P.862 / P.862.2; pesq package (ludlows/PESQ) 0.0.4",
        description="PESQ wide-band at 16 kHz (mono, resampled; P.862 time alignment, lag recorded)", dependencies=("pesq",),
    )


class PesqNarrowband(_Pesq):
    """PESQ narrow-band (P.862 + P.862.1) at 8 kHz, MOS-LQO (higher is better); raw P.862 in extras."""

    mode = "nb"
    working_rate_hz = 8000
    info = MetricInfo(
        name="pesq_nb", unit="MOS-LQO", higher_is_better=True, needs_reference=True, level="item",
        sample_rate_hz=8000, version="1", citation="ITU-T P.862 / P.862.1; pesq package (ludlows/PESQ) 0.0.4",
        description="PESQ narrow-band at 8 kHz (mono, resampled; P.862 time alignment, lag recorded)", dependencies=("pesq",),
    )
