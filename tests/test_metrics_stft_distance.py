"""MR-STFT distance against auraloss and a direct numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics.stft_distance import RESOLUTIONS, STFTDistance

SR = 16000


def _pair(rng, channels=1):
    ref = (0.3 * rng.standard_normal((channels, SR // 2))).astype(np.float32)
    return ref, (ref + 0.05 * rng.standard_normal(ref.shape)).astype(np.float32)


def test_matches_auraloss(rng):
    auraloss = pytest.importorskip("auraloss")
    ref, deg = _pair(rng, channels=2)
    expected = float(auraloss.freq.MultiResolutionSTFTLoss()(torch.from_numpy(deg)[None], torch.from_numpy(ref)[None]))
    assert STFTDistance().score(ref, deg, SR).value == pytest.approx(expected, rel=1e-5)


def test_matches_direct_computation(rng):
    ref, deg = _pair(rng)

    def mag(x, n_fft, hop, win):
        window = np.zeros(n_fft)
        start = (n_fft - win) // 2
        window[start : start + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
        padded = np.pad(x[0].astype(np.float64), n_fft // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
        return np.sqrt(np.maximum(np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2, 1e-8))

    total = 0.0
    for n_fft, hop, win in RESOLUTIONS:
        r, d = mag(ref, n_fft, hop, win), mag(deg, n_fft, hop, win)
        total += np.linalg.norm(r - d) / np.linalg.norm(r) + np.mean(np.abs(np.log(d) - np.log(r)))
    assert STFTDistance().score(ref, deg, SR).value == pytest.approx(total / 3, rel=1e-4)


def test_identical_is_zero(rng):
    ref, _ = _pair(rng)
    assert STFTDistance().score(ref, ref, SR).value == 0.0


def test_silent_reference_fails(rng):
    _, deg = _pair(rng)
    with pytest.raises(MetricFailure, match="reference is silent"):
        STFTDistance().score(np.zeros_like(deg), deg, SR)
