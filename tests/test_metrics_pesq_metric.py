"""PESQ: the package's own pair, the ITU-T P.862 conformance pairs (test 2(b)), resampling, failures."""

from __future__ import annotations

import numpy as np
import pytest
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics.pesq_metric import PesqNarrowband, PesqWideband, mos_lqo_to_raw_nb, pesq_score

pytest.importorskip("pesq")


def _read(path):
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data.T, rate


def test_package_reference_pair(shared_data):
    folder = shared_data / "metric-refs" / "pesq-python-package"
    ref, rate = _read(folder / "speech.wav")
    deg, _ = _read(folder / "speech_bab_0dB.wav")
    assert rate == 16000
    assert pesq_score(ref[0], deg[0], 16000, "wb") == pytest.approx(1.0832337141036987, abs=1e-6)
    assert pesq_score(ref[0], deg[0], 16000, "nb") == pytest.approx(1.6072081327438354, abs=1e-6)
    # through the metric at 16 kHz: no resampling, no lag on this pair -> the same value
    value = PesqWideband().score(ref, deg, 16000)
    assert value.extras["lag_samples"] == 0 and "resampled_from_hz" not in value.extras
    assert value.value == pytest.approx(1.0832337141036987, abs=1e-6)


def _conformance_pairs(folder):
    lines = (folder / "voipref_8k.txt").read_text().strip().splitlines()[1:]
    for line in lines:
        ref_name, deg_name, rate, expected = line.split()
        yield folder / ref_name.split("/")[-1], folder / deg_name.split("/")[-1], int(rate), float(expected)


@pytest.mark.slow
def test_itu_p862_conformance_2b(shared_data):
    folder = shared_data / "metric-refs" / "itu-p862-conformance-8k"
    pairs = list(_conformance_pairs(folder))
    assert len(pairs) == 40
    diffs = []
    for ref_path, deg_path, rate, expected in pairs:
        ref, _ = _read(ref_path)
        deg, _ = _read(deg_path)
        value = PesqNarrowband().score(ref, deg, rate)  # the default: full signals, P.862 alignment
        diffs.append(abs(value.extras["raw_p862"] - expected))
    diffs = np.array(diffs)
    assert np.sum(diffs > 0.05) <= 1 and np.all(diffs <= 0.5), diffs


def test_raw_mapping_inverse():
    raw = 2.237
    mos = 0.999 + 4.0 / (1.0 + np.exp(-1.4945 * raw + 4.6607))
    assert mos_lqo_to_raw_nb(mos) == pytest.approx(raw, abs=1e-12)


def test_resampling_and_lag_recorded(rng):
    t = np.arange(48000 * 3) / 48000
    envelope = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float32)  # on/off bursts: PESQ needs utterances
    ref = (envelope * 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size))[None].astype(np.float32)
    deg = np.concatenate([np.zeros((1, 480), np.float32), ref[:, :-480]], axis=1)  # 10 ms late
    value = PesqWideband(max_lag_ms=50.0).score(ref, deg, 48000)
    assert value.extras["resampled_from_hz"] == 48000 and value.extras["working_rate_hz"] == 16000
    assert value.extras["lag_samples"] == 160
    assert value.value > 4.0 and value.extras["lag_compensated"] is False
    assert PesqWideband().score(ref, deg, 48000).extras["lag_samples"] == 0  # no search by default
    shifted = PesqWideband(pre_align=True, max_lag_ms=50.0).score(ref, deg, 48000)
    assert shifted.extras["lag_compensated"] is True and shifted.value > 4.0


def test_silent_reference_fails():
    with pytest.raises(MetricFailure, match="silent"):
        PesqNarrowband().score(np.zeros((1, 16000), np.float32), np.ones((1, 16000), np.float32), 16000)


def test_too_short_fails_with_package_reason(rng):
    ref = (0.3 * rng.standard_normal((1, 800))).astype(np.float32)
    with pytest.raises(MetricFailure, match="pesq_wb"):
        PesqWideband().score(ref, ref, 16000)


def test_failure_reason_is_text_not_bytes(monkeypatch):
    from codecbench.bench.metrics.pesq_metric import error_text

    assert error_text(ValueError(b"No utterances detected")) == "No utterances detected"
    pesq = pytest.importorskip("pesq")

    def raises(*args, **kwargs):  # the package raises with the C library's message as bytes
        raise pesq.NoUtterancesError(b"No utterances detected")

    monkeypatch.setattr(pesq, "pesq", raises)
    with pytest.raises(MetricFailure) as caught:
        pesq_score(np.ones(16000, np.float32), np.ones(16000, np.float32), 16000, "wb")
    assert str(caught.value) == "pesq_wb: NoUtterancesError: No utterances detected"
