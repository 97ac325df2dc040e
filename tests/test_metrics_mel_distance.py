"""Multi-scale log-mel distance against DAC's MelSpectrogramLoss and a direct librosa/numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics import registry
from codecbench.bench.metrics.mel_distance import N_MELS, WINDOW_LENGTHS, MelDistance

SR = 24000


def _pair(rng, seconds=0.5, channels=1):
    ref = rng.standard_normal((channels, int(SR * seconds))).astype(np.float32) * 0.3
    deg = (ref + 0.05 * rng.standard_normal(ref.shape)).astype(np.float32)
    return ref, deg


@pytest.mark.filterwarnings("ignore:stft_data changed shape:UserWarning")
def test_matches_dac_mel_loss(rng):
    pytest.importorskip("dac")
    from audiotools import AudioSignal
    from dac.nn.loss import MelSpectrogramLoss

    ref, deg = _pair(rng, channels=2)
    loss = MelSpectrogramLoss(
        n_mels=list(N_MELS), window_lengths=list(WINDOW_LENGTHS), mag_weight=0.0, pow=1.0, clamp_eps=1e-5,
        mel_fmin=[0.0] * 7, mel_fmax=[None] * 7,
    )
    expected = float(loss(AudioSignal(torch.from_numpy(deg)[None], SR), AudioSignal(torch.from_numpy(ref)[None], SR)))
    value = MelDistance().score(ref, deg, SR)
    assert value.value == pytest.approx(expected, rel=1e-4)


def test_matches_direct_computation(rng):
    librosa = pytest.importorskip("librosa")
    ref, deg = _pair(rng)
    total = 0.0
    for w, m in zip(WINDOW_LENGTHS, N_MELS):
        basis = librosa.filters.mel(sr=SR, n_fft=w, n_mels=m)

        def logmel(x, w=w, basis=basis):
            padded = np.pad(x[0].astype(np.float64), w // 2, mode="reflect")
            frames = np.lib.stride_tricks.sliding_window_view(padded, w)[:: w // 4]
            window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(w) / w)  # periodic Hann
            spec = np.abs(np.fft.rfft(frames * window, axis=-1)).T
            return np.log10(np.maximum(basis @ spec, 1e-5))

        total += np.mean(np.abs(logmel(ref) - logmel(deg)))
    assert MelDistance().score(ref, deg, SR).value == pytest.approx(total, rel=1e-4)


def test_identical_is_zero_and_noise_increases(rng):
    ref, deg = _pair(rng)
    metric = MelDistance()
    assert metric.score(ref, ref, SR).value == 0.0
    worse = (ref + 0.3 * rng.standard_normal(ref.shape)).astype(np.float32)
    assert metric.score(ref, worse, SR).value > metric.score(ref, deg, SR).value


def test_working_rate_resamples_and_records(rng):
    ref, deg = _pair(rng)
    value = MelDistance(sample_rate_hz=16000).score(ref, deg, SR)
    assert value.extras["working_rate_hz"] == 16000 and value.extras["resampled_from_hz"] == SR


def test_too_short_fails(rng):
    with pytest.raises(MetricFailure, match="too short"):
        MelDistance().score(np.ones((1, 500), np.float32), np.ones((1, 500), np.float32), SR)


def test_registered():
    assert registry.get("mel_distance").info.higher_is_better is False
