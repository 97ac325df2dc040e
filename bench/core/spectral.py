"""Multi-scale log-mel distance as a pure function (DAC's multi-scale mel loss with its published settings).

Signal math shared by the ``mel_distance`` metric (``codecbench.bench.metrics.mel_distance``, which documents the
pinned definition and its reference check) and by training code that needs a validation distance without importing
a metric (S-PRESSO stage 3). Part of the foundation: imports nothing else of codecbench.
"""

from __future__ import annotations

import functools
import warnings

import torch

WINDOW_LENGTHS: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
N_MELS: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
CLAMP_EPS = 1e-5


@functools.lru_cache(maxsize=64)
def mel_filters(sample_rate_hz: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Slaney mel filterbank [n_mels, n_fft // 2 + 1] (float32), as ``librosa.filters.mel`` with its defaults."""
    import torchaudio

    with warnings.catch_warnings():  # many narrow filters at small n_fft are empty, as in DAC: intended
        warnings.filterwarnings("ignore", message=".*all zero values.*")
        fb = torchaudio.functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1,
            f_min=0.0,
            f_max=sample_rate_hz / 2.0,
            n_mels=n_mels,
            sample_rate=sample_rate_hz,
            norm="slaney",
            mel_scale="slaney",
        )
    return fb.T.contiguous().float()


def log_mel(x: torch.Tensor, sample_rate_hz: int, window_length: int, n_mels: int) -> torch.Tensor:
    """log10 mel magnitudes [..., n_mels, F] of ``x`` [..., T] (one scale of the definition above)."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1]).float()
    spec = torch.stft(
        flat,
        n_fft=window_length,
        hop_length=window_length // 4,
        window=torch.hann_window(window_length, periodic=True, device=x.device),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()
    mel = mel_filters(sample_rate_hz, window_length, n_mels).to(x.device) @ spec
    return mel.clamp(min=CLAMP_EPS).log10().reshape(*shape[:-1], n_mels, -1)


def multiscale_mel_distance(
    reference: torch.Tensor,
    degraded: torch.Tensor,
    sample_rate_hz: int,
    window_lengths: tuple[int, ...] = WINDOW_LENGTHS,
    n_mels: tuple[int, ...] = N_MELS,
) -> torch.Tensor:
    """Distance per item: ``reference``, ``degraded`` [B, C, T] (same shape) -> [B]."""
    if reference.shape != degraded.shape:
        raise ValueError(f"multiscale_mel_distance: shapes differ: {tuple(reference.shape)} vs {tuple(degraded.shape)}")
    total = torch.zeros(reference.shape[0], dtype=torch.float64)
    for window_length, mels in zip(window_lengths, n_mels):
        ref = log_mel(reference, sample_rate_hz, window_length, mels)
        deg = log_mel(degraded, sample_rate_hz, window_length, mels)
        total += (ref - deg).abs().flatten(1).mean(dim=1).double()
    return total
