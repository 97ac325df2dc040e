"""SI-SDR: a hand-computed case, torchmetrics, delay compensation, failures."""

from __future__ import annotations

import numpy as np
import pytest
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics import registry
from codecbench.bench.metrics.si_sdr import SISDR, si_sdr_db

SR = 16000


def test_hand_computed_case():
    # zero-mean ref s = [1, -1, 1, -1]; deg = s + e with e = [0.1, 0.1, -0.1, -0.1] (orthogonal to s, zero-mean)
    ref = np.array([1.0, -1.0, 1.0, -1.0])
    deg = ref + np.array([0.1, 0.1, -0.1, -0.1])
    # alpha = 1, target energy 4, noise energy 0.04 -> 10 log10(100) = 20 dB (eps shifts it by ~1e-5 dB)
    assert si_sdr_db(ref, deg) == pytest.approx(20.0, abs=1e-4)
    # scale invariance: scaling the degraded signal does not change the value
    assert si_sdr_db(ref, 3.0 * deg) == pytest.approx(20.0, abs=1e-4)


def test_matches_torchmetrics(rng):
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.functional.audio")
    ref = rng.standard_normal((3, 4000))
    deg = 0.7 * ref + 0.3 * rng.standard_normal((3, 4000)) + 0.05
    # torchmetrics uses eps of the input dtype: float32 input gives the same eps as ours
    expected = tm.scale_invariant_signal_distortion_ratio(
        torch.from_numpy(deg), torch.from_numpy(ref), zero_mean=True
    ).numpy()
    np.testing.assert_allclose(si_sdr_db(ref, deg), expected, atol=1e-6)


def test_default_searches_no_lag(rng):
    ref = rng.standard_normal((1, SR)).astype(np.float32)
    lag = 37
    deg = np.concatenate([np.zeros((1, lag), np.float32), ref[:, :-lag]], axis=1)
    value = SISDR().score(ref, deg, SR)
    assert value.extras["lag_samples"] == 0
    assert value.value == pytest.approx(float(si_sdr_db(ref, deg)[0]), abs=1e-9)
    assert value.value < 0.0  # an uncompensated delay on white noise: no correlation left


def test_metric_compensates_delay_when_asked(rng):
    ref = rng.standard_normal((1, SR)).astype(np.float32)
    noise = 0.1 * rng.standard_normal((1, SR)).astype(np.float32)
    lag = 37
    deg = np.concatenate([np.zeros((1, lag), np.float32), ref[:, :-lag]], axis=1) + noise
    value = SISDR(max_lag_ms=50.0).score(ref, deg, SR)
    assert value.extras["lag_samples"] == lag
    expected = si_sdr_db(ref[:, :-lag], deg[:, lag:])[0]
    assert value.value == pytest.approx(expected, abs=1e-9)
    assert value.value == pytest.approx(20.0, abs=0.5)  # 10 log10(1 / 0.01)


def test_no_shift_when_aligned(rng):
    ref = rng.standard_normal((2, 8000)).astype(np.float32)
    deg = ref + 0.2 * rng.standard_normal((2, 8000)).astype(np.float32)
    value = SISDR().score(ref, deg, SR)
    assert value.extras["lag_samples"] == 0
    assert value.value == pytest.approx(float(si_sdr_db(ref, deg).mean()), abs=1e-9)
    assert len(value.extras["per_channel_db"]) == 2


def test_silent_reference_fails():
    ref = np.zeros((1, 8000), np.float32)
    deg = np.ones((1, 8000), np.float32) * 0.1
    with pytest.raises(MetricFailure, match="reference is silent"):
        SISDR().score(ref, deg, SR)
    results = SISDR().score_batch([ref], [deg], SR)
    assert isinstance(results[0], MetricFailure)


def test_channel_mismatch_fails(rng):
    with pytest.raises(MetricFailure, match="channels"):
        SISDR().score(rng.standard_normal((1, 100)), rng.standard_normal((2, 100)), SR)


def test_registered():
    metric = registry.create("si_sdr")
    assert metric.info.column == "si_sdr_db" and metric.info.higher_is_better
