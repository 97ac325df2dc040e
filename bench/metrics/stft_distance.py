"""Multi-resolution STFT distance: auraloss ``MultiResolutionSTFTLoss`` with its default settings (Yamamoto et al.
2020, Parallel WaveGAN; Steinmetz & Reiss 2020, auraloss).

Pinned definition (version "1"), at the metric's working rate (default: the evaluation rate)::

    for (n_fft, hop, win) in [(1024, 120, 600), (2048, 240, 1200), (512, 50, 240)]:
        |X| = sqrt(max(|STFT(x)|^2, 1e-8))   periodic Hann window of length win, zero-padded (centred) to n_fft,
                                             centred frames with reflect padding (torch.stft defaults)
        SC  = ||  |D| - |R|  ||_F / || |R| ||_F                      spectral convergence (all channels together)
        LM  = mean | log|D| - log|R| |                               log-magnitude L1 (natural log)
    distance = mean over the 3 resolutions of (SC + LM)

R = reference, D = degraded. Equal to ``auraloss.freq.MultiResolutionSTFTLoss()(degraded, reference)`` (checked in
the tests). Lower is better; unitless. A silent reference fails (SC is undefined).
"""

from __future__ import annotations

import numpy as np
import torch
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics.alignment import at_working_rate, working_rate_option
from codecbench.bench.metrics.base import ItemMetric, MetricInfo, MetricValue

RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
EPS = 1e-8


def _magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    spec = torch.stft(x, n_fft, hop, win, torch.hann_window(win, device=x.device), return_complex=True)
    return torch.sqrt(torch.clamp(spec.real**2 + spec.imag**2, min=EPS))


def mr_stft_distance(reference: torch.Tensor, degraded: torch.Tensor) -> float:
    """Distance of one item: ``reference``, ``degraded`` [C, T] (same shape)."""
    total = 0.0
    for n_fft, hop, win in RESOLUTIONS:
        ref = _magnitude(reference.float(), n_fft, hop, win)
        deg = _magnitude(degraded.float(), n_fft, hop, win)
        spectral_convergence = torch.linalg.vector_norm(ref - deg) / torch.linalg.vector_norm(ref)
        log_magnitude = (deg.log() - ref.log()).abs().mean()
        total += float(spectral_convergence + log_magnitude)
    return total / len(RESOLUTIONS)


class STFTDistance(ItemMetric):
    """Multi-resolution STFT distance (auraloss defaults; unitless, lower is better)."""

    info = MetricInfo(
        name="stft_distance",
        unit="",
        higher_is_better=False,
        needs_reference=True,
        level="item",
        sample_rate_hz=None,
        version="1",
        citation="Yamamoto et al., Parallel WaveGAN, ICASSP 2020; auraloss MultiResolutionSTFTLoss (defaults)",
        description="mean over 3 STFTs (1024/120/600, 2048/240/1200, 512/50/240) of spectral convergence + log-mag L1",
    )

    def __init__(self, *, sample_rate_hz: int | None = None, cache_dir: str | None = None, device: str = "cpu"):
        super().__init__(sample_rate_hz=sample_rate_hz, cache_dir=cache_dir, device=device)
        self.working_rate_hz = working_rate_option("stft_distance", sample_rate_hz)

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> MetricValue:
        """``reference``, ``degraded``: float32 [C, T] at ``sample_rate_hz``."""
        if np.max(np.abs(reference)) < 1e-7:
            raise MetricFailure("stft_distance: reference is silent; spectral convergence is undefined")
        ref, deg, _, extras = at_working_rate(
            reference, degraded, sample_rate_hz, self.working_rate_hz, "stft_distance",
            max(n_fft for n_fft, _, _ in RESOLUTIONS) // 2 + 1,
        )
        with torch.inference_mode():
            value = mr_stft_distance(ref.to(self.device), deg.to(self.device))
        return MetricValue(value, extras)
