"""STOI through pystoi: equal to pystoi on the same 10 kHz input, close to torch_stoi, failures."""

from __future__ import annotations

import numpy as np
import pytest
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics.stoi import STOI, stoi_score

pystoi = pytest.importorskip("pystoi")


def _speechlike(rng, rate, seconds=2.0):
    t = np.arange(int(rate * seconds)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)  # 4 Hz syllable-rate modulation
    return (envelope * rng.standard_normal(t.size) * 0.2)[None].astype(np.float32)


def test_equals_pystoi_at_10k(rng):
    ref = _speechlike(rng, 10000)
    deg = (ref + 0.1 * rng.standard_normal(ref.shape)).astype(np.float32)
    value = STOI().score(ref, deg, 10000)
    assert value.extras["lag_samples"] == 0
    assert value.value == pytest.approx(pystoi.stoi(ref[0].astype(np.float64), deg[0].astype(np.float64), 10000), abs=1e-9)


def test_close_to_independent_torch_stoi(rng):
    torch_stoi = pytest.importorskip("torch_stoi")
    import torch

    ref = _speechlike(rng, 10000)
    deg = (ref + 0.15 * rng.standard_normal(ref.shape)).astype(np.float32)
    theirs = float(torch_stoi.NegSTOILoss(10000, use_vad=True)(torch.from_numpy(deg), torch.from_numpy(ref))[0])
    assert stoi_score(ref[0], deg[0]) == pytest.approx(-theirs, abs=0.03)


def test_resampled_identity_near_one_noise_lower(rng):
    ref = _speechlike(rng, 48000)
    metric = STOI()
    same = metric.score(ref, ref, 48000)
    assert same.extras["resampled_from_hz"] == 48000 and same.value == pytest.approx(1.0, abs=1e-6)
    noisy = (ref + 0.3 * rng.standard_normal(ref.shape)).astype(np.float32)
    assert metric.score(ref, noisy, 48000).value < same.value - 0.05


def test_too_short_fails(rng):
    ref = _speechlike(rng, 10000, seconds=0.2)
    with pytest.raises(MetricFailure, match="fewer than 30"):
        STOI().score(ref, ref, 10000)
