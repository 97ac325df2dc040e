"""KAD against a direct O(n^2) computation; bandwidth rule."""

from __future__ import annotations

import numpy as np
import pytest
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics import kad


def _direct(x, y, sigma):
    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_matches_direct_computation(rng):
    x = rng.standard_normal((40, 5))
    y = rng.standard_normal((30, 5)) * 1.3 + 0.4
    sigma = np.median([np.linalg.norm(x[i] - x[j]) for i in range(40) for j in range(i + 1, 40)])
    value, bandwidth = kad.kernel_audio_distance(x, y)
    assert bandwidth == pytest.approx(sigma, rel=1e-12)
    assert value == pytest.approx(_direct(x, y, sigma), rel=1e-9)


def test_blocks_match_unblocked(rng, monkeypatch):
    x, y = rng.standard_normal((50, 3)), rng.standard_normal((45, 3)) + 0.2
    whole, _ = kad.kernel_audio_distance(x, y, bandwidth=1.5)
    monkeypatch.setattr(kad, "BLOCK_ROWS", 7)
    assert kad.kernel_audio_distance(x, y, bandwidth=1.5)[0] == pytest.approx(whole, rel=1e-12)


def test_same_distribution_near_zero_different_positive(rng):
    x = rng.standard_normal((300, 4))
    same, _ = kad.kernel_audio_distance(x, rng.standard_normal((300, 4)))
    diff, _ = kad.kernel_audio_distance(x, rng.standard_normal((300, 4)) + 1.0)
    assert abs(same) < 0.01 < diff


def test_degenerate_inputs_fail(rng):
    with pytest.raises(MetricFailure, match="bandwidth is 0"):
        kad.kernel_audio_distance(np.ones((5, 2)), rng.standard_normal((5, 2)))
    with pytest.raises(MetricFailure, match="at least 2 frames"):
        kad.kernel_audio_distance(rng.standard_normal((1, 2)), rng.standard_normal((5, 2)))
