"""Multi-scale log-mel distance: DAC's multi-scale mel loss with its published settings (Kumar et al. 2023).

Pinned definition (version "1"), at the metric's working rate ``sr`` (default: the evaluation rate)::

    for (w, m) in zip([32, 64, 128, 256, 512, 1024, 2048], [5, 10, 20, 40, 80, 160, 320]):
        S   = |STFT(x)|   n_fft = w, hop = w // 4, periodic Hann window of length w,
                          centred frames with reflect padding (torch.stft defaults)
        M   = mel(S)      m Slaney-style mel filters (Slaney norm), 0 Hz .. sr / 2 (librosa.filters.mel defaults)
        d_w = mean over channels, mel bands and frames of |log10(max(M_ref, 1e-5)) - log10(max(M_deg, 1e-5))|
    distance = sum_w d_w

This equals ``dac.nn.loss.MelSpectrogramLoss(n_mels=[5, ..., 320], window_lengths=[32, ..., 2048],
mag_weight=0.0, pow=1.0, clamp_eps=1e-5)`` (DAC's ``conf/base.yml``), checked in the tests. Lower is better; unitless
(sum of mean absolute log10 magnitude differences). No delay compensation (spectral frames tolerate small lags).
"""

from __future__ import annotations

import numpy as np
import torch
from codecbench.bench.core.spectral import (  # noqa: F401  (re-exported: the metric's definition)
    CLAMP_EPS,
    N_MELS,
    WINDOW_LENGTHS,
    log_mel,
    mel_filters,
    multiscale_mel_distance,
)
from codecbench.bench.metrics.alignment import at_working_rate, working_rate_option
from codecbench.bench.metrics.base import ItemMetric, MetricInfo, MetricValue


class MelDistance(ItemMetric):
    """Multi-scale log-mel distance (DAC settings; unitless, lower is better)."""

    info = MetricInfo(
        name="mel_distance",
        unit="",
        higher_is_better=False,
        needs_reference=True,
        level="item",
        sample_rate_hz=None,
        version="1",
        citation="Kumar et al., 'High-Fidelity Audio Compression with Improved RVQGAN' (DAC), NeurIPS 2023; "
        "dac.nn.loss.MelSpectrogramLoss with conf/base.yml settings",
        description="sum over 7 scales (windows 32..2048, 5..320 mels, hop w/4) of mean |log10 mel difference|",
    )

    def __init__(self, *, sample_rate_hz: int | None = None, cache_dir: str | None = None, device: str = "cpu"):
        """``sample_rate_hz``: working rate (None: the evaluation rate); the mel filters depend on it."""
        super().__init__(sample_rate_hz=sample_rate_hz, cache_dir=cache_dir, device=device)
        self.working_rate_hz = working_rate_option("mel_distance", sample_rate_hz)

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> MetricValue:
        """``reference``, ``degraded``: float32 [C, T] at ``sample_rate_hz``."""
        ref, deg, rate, extras = at_working_rate(
            reference, degraded, sample_rate_hz, self.working_rate_hz, "mel_distance", max(WINDOW_LENGTHS) // 2 + 1
        )
        with torch.inference_mode():
            value = multiscale_mel_distance(ref[None].to(self.device), deg[None].to(self.device), rate)[0]
        return MetricValue(float(value), extras)
