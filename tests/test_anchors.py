"""The BS.1534-3 anchors: identity reference, and the low-pass filters measured as actually applied."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from codecbench.bench.core.errors import CodecbenchError
from codecbench.codecs import registry
from codecbench.codecs.anchors import (
    ANY_CHANNELS,
    LOWPASS_3K5,
    HiddenReference,
    LowPass3k5,
    LowPass7k,
    design_lowpass,
)

# BS.1534-3 mask of the 3.5 kHz anchor; the 7 kHz anchor's is the same scaled by 2.
MASK_RIPPLE_DB = 0.1
MASK_PASS_HZ, MASK_25DB_HZ, MASK_50DB_HZ = 3500.0, 4000.0, 4500.0


def _applied_response_db(codec, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Push a unit impulse (mid-clip, 1 s) through ``codec.roundtrip``; return output, frequencies and |H| in dB."""
    num_samples = sample_rate_hz
    impulse = torch.zeros(1, 1, num_samples)
    impulse[0, 0, num_samples // 2] = 1.0
    out = codec.roundtrip(impulse, sample_rate_hz, codec.point()).decoded[0, 0].double().numpy()
    nfft = 8 * num_samples  # dense frequency grid (0.125 Hz bins at 1 s)
    response = np.abs(np.fft.rfft(out, nfft))
    freqs_hz = np.fft.rfftfreq(nfft, 1.0 / sample_rate_hz)
    return out, freqs_hz, 20 * np.log10(np.maximum(response, 1e-300))


@pytest.mark.parametrize("sample_rate_hz", [48000, 44100])
@pytest.mark.parametrize("cls,scale", [(LowPass3k5, 1.0), (LowPass7k, 2.0)])
def test_lowpass_meets_bs1534_mask_as_applied(cls, scale, sample_rate_hz):
    codec = cls()
    out, freqs_hz, response_db = _applied_response_db(codec, sample_rate_hz)
    passband = response_db[freqs_hz <= MASK_PASS_HZ * scale]
    assert np.max(np.abs(passband)) <= MASK_RIPPLE_DB
    assert np.max(response_db[freqs_hz >= MASK_25DB_HZ * scale]) <= -25.0
    assert np.max(response_db[freqs_hz >= MASK_50DB_HZ * scale]) <= -50.0
    # the design's own margins (60 dB Kaiser): ripple ~0.01 dB, >= 59 dB from the stop edge on
    assert np.max(np.abs(passband)) < 0.02
    assert np.max(response_db[freqs_hz >= MASK_25DB_HZ * scale]) < -59.0


@pytest.mark.parametrize("sample_rate_hz", [48000, 44100, 16000])
@pytest.mark.parametrize("cls", [LowPass3k5, LowPass7k])
def test_lowpass_has_zero_delay(cls, sample_rate_hz):
    codec = cls()
    out, _, _ = _applied_response_db(codec, sample_rate_hz)
    centre = sample_rate_hz // 2
    assert int(np.argmax(np.abs(out))) == centre
    half = (codec.taps(sample_rate_hz).size - 1) // 2
    window = out[centre - half - 5 : centre + half + 6]
    np.testing.assert_allclose(window, window[::-1], atol=1e-7)  # symmetric around the impulse: linear phase, no lag
    outside = np.concatenate([out[: centre - half], out[centre + half + 1 :]])
    assert np.max(np.abs(outside)) < 1e-9  # nothing beyond the filter's support (FFT round-off only)


def test_lowpass_sines_pass_and_stop(rng):
    """Independent of the FFT: a 1 kHz sine keeps its level, a 5 kHz sine loses > 55 dB (48 kHz, mid-clip)."""
    sample_rate_hz = 48000
    t_s = np.arange(sample_rate_hz) / sample_rate_hz
    phase = rng.uniform(0, 2 * np.pi)
    low = np.sin(2 * np.pi * 1000 * t_s + phase)
    high = np.sin(2 * np.pi * 5000 * t_s + phase)
    audio = torch.tensor(np.stack([low, high])[:, None, :], dtype=torch.float32)
    out = LowPass3k5().roundtrip(audio, sample_rate_hz, LowPass3k5.point()).decoded.double().numpy()[:, 0]
    mid = slice(4800, -4800)
    np.testing.assert_allclose(out[0, mid], low[mid], atol=2e-3)
    attenuation_db = 10 * np.log10(np.mean(out[1, mid] ** 2) / np.mean(high[mid] ** 2))
    assert attenuation_db < -55.0


def test_taps_are_odd_symmetric_and_unit_gain():
    for rate_hz in (48000, 44100, 32000, 16000):
        taps = design_lowpass(LOWPASS_3K5, rate_hz)
        assert taps.size % 2 == 1
        np.testing.assert_allclose(taps, taps[::-1])
        assert math.isclose(taps.sum(), 1.0, abs_tol=1e-3)
    assert design_lowpass(LOWPASS_3K5, 48000).size == 351  # documented in codecs/anchors.py


def test_lowpass_rejects_a_rate_below_twice_the_stop_edge():
    with pytest.raises(CodecbenchError, match=r"7 kHz low-pass anchor needs an evaluation rate of at least 16000 Hz"):
        LowPass7k().roundtrip(torch.zeros(1, 1, 1000), 12000, LowPass7k.point())


def test_hidden_reference_is_bit_exact_and_keeps_channels(rng):
    audio = torch.tensor(rng.standard_normal((2, 2, 4410)), dtype=torch.float32)  # stereo: nothing downmixed
    result = HiddenReference().roundtrip(audio, 44100, HiddenReference.point())
    assert torch.equal(result.decoded, audio)
    assert result.processing["resampler"] == "none"
    bitstream = result.bitstreams[1]
    assert bitstream.sample_rate_hz == 44100 and bitstream.channels == 2 and bitstream.num_samples == 4410
    assert math.isnan(bitstream.bitrate_kbps) and bitstream.frame_rate_hz == 44100.0


def test_lowpass_keeps_every_channel(rng):
    audio = torch.tensor(rng.standard_normal((1, 2, 4800)), dtype=torch.float32)
    audio[0, 1] = 0.0
    out = LowPass7k().roundtrip(audio, 48000, LowPass7k.point()).decoded
    assert out.shape == (1, 2, 4800)
    assert torch.all(out[0, 1] == 0) and not torch.allclose(out[0, 0], audio[0, 0])


def test_anchor_metadata_and_registry():
    for name, cls in [("reference", HiddenReference), ("lowpass_3k5", LowPass3k5), ("lowpass_7k", LowPass7k)]:
        assert registry.get(name) is cls
        info = cls.info
        assert info.kind == "anchor" and info.is_anchor and info.sample_rate_hz is None
        assert info.channels == ANY_CHANNELS and not info.needs_weights
        assert [p.label for p in cls.operating_points()] == ["default"]
        assert math.isnan(cls().nominal_bitrate_kbps(cls.point()))
    assert LowPass3k5().algorithmic_latency_ms(LowPass3k5.point()) == pytest.approx(175 / 48)


def test_anchors_are_systems_not_codecs():
    """No encoder or decoder that raises: an anchor is a System, and its record is a NoBitstream."""
    from codecbench.codecs.base import Codec, NoBitstream, System

    for cls in (HiddenReference, LowPass3k5, LowPass7k):
        assert issubclass(cls, System) and not issubclass(cls, Codec)
        assert not hasattr(cls, "encode") and not hasattr(cls, "decode")
    result = LowPass7k().roundtrip(torch.zeros(2, 3, 480), 48000, LowPass7k.point())
    assert all(type(b) is NoBitstream for b in result.bitstreams) and len(result.bitstreams) == 2
    columns = result.bitstreams[0].rate_columns()
    assert columns["frame_rate_hz"] == 48000 and columns["compression_ratio"] == 1.0
    assert columns["rate_source"] == "measured" and math.isnan(columns["bitrate_kbps"])


def test_anchor_refuses_audio_that_is_not_a_batch():
    with pytest.raises(CodecbenchError, match=r"anchor 'lowpass_3k5' expects audio \[B, C, T\]"):
        LowPass3k5().roundtrip(torch.zeros(1, 10), 48000, LowPass3k5.point())
