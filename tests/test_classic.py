"""Opus and MP3 through PyAV: measured bitrates, container overhead apart, sample alignment, errors."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from codecbench.bench.core.errors import CodecbenchError, ConfigError
from codecbench.codecs import registry
from codecbench.codecs.classic import (
    MP3_BITRATES_KBPS,
    OPUS_LOOKAHEAD_SAMPLES,
    OPUS_SILK_NB_RESIDUAL_DELAY_SAMPLES,
    Aac,
    Mp3,
    Opus,
    opus_packet_mode,
)
from scipy import signal

av = pytest.importorskip("av", reason="PyAV (bundled FFmpeg) is needed for the classic codecs")

SAMPLE_RATE_HZ = 48000


def _lowpass_noise(rng: np.random.Generator, duration_s: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """White noise low-passed at 3 kHz (inside every Opus bandwidth, so the waveform survives), RMS 0.3: [T]."""
    num_samples = int(duration_s * sample_rate_hz)
    taps = signal.firwin(501, 3000, fs=sample_rate_hz)
    noise = signal.oaconvolve(rng.standard_normal(num_samples), taps, mode="same")
    return 0.3 * noise / np.std(noise)


def _harmonic(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """A 220 Hz harmonic tone (11 partials, 1/k amplitudes) plus -40 dB noise: [T]."""
    t_s = np.arange(int(duration_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    tone = sum(0.1 / k * np.sin(2 * np.pi * 220 * k * t_s + k) for k in range(1, 12))
    return tone + 0.01 * rng.standard_normal(t_s.size)


def _batch(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)[None, None]


def _lag_samples(y: np.ndarray, x: np.ndarray) -> float:
    """Lag of ``y`` behind ``x`` from the cross-correlation peak, refined by a parabola (fractional samples)."""
    corr = signal.correlate(y, x, mode="full", method="fft")
    lags = signal.correlation_lags(y.size, x.size)
    i = int(np.argmax(corr))
    a, b, c = corr[i - 1], corr[i], corr[i + 1]
    return float(lags[i] + 0.5 * (a - c) / (a - 2 * b + c))


def _snr_db(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(x**2) / np.sum((x - y) ** 2)))


def _demuxed_packets(bitstream) -> list[bytes]:
    with av.open(io.BytesIO(bitstream.decode_state["container"])) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


@pytest.mark.parametrize(
    "cls,kbps", [(Opus, 6), (Opus, 12), (Opus, 64), (Mp3, 32), (Mp3, 128), (Aac, 32), (Aac, 128)], ids=lambda v: getattr(v, "__name__", v)
)
def test_decoded_audio_is_sample_aligned(cls, kbps, rng):
    x = _lowpass_noise(rng, 2.0)
    result = cls().roundtrip(_batch(x), SAMPLE_RATE_HZ, cls.point(bitrate_kbps=kbps))
    y = result.decoded[0, 0].double().numpy()
    assert y.shape == x.shape
    assert abs(_lag_samples(y, x)) <= 1.0


def test_opus_silk_narrowband_residual_is_measured_and_removed(rng):
    """At 6 kbps libopus codes SILK narrowband; FFmpeg's output then lags 6 samples unless the adapter shifts it."""
    codec, point = Opus(), Opus.point(bitrate_kbps=6)
    x = _lowpass_noise(rng, 2.0)
    bitstream = codec.encode(_batch(x), point)[0]
    packets = _demuxed_packets(bitstream)
    assert {opus_packet_mode(p) for p in packets} == {"SILK-NB"}
    assert codec._residual_delay_samples(packets) == OPUS_SILK_NB_RESIDUAL_DELAY_SAMPLES
    aligned = codec.decode([bitstream], point)[0, 0].double().numpy()
    as_ffmpeg_gives = np.zeros_like(aligned)
    as_ffmpeg_gives[OPUS_SILK_NB_RESIDUAL_DELAY_SAMPLES:] = aligned[:-OPUS_SILK_NB_RESIDUAL_DELAY_SAMPLES]
    assert abs(_lag_samples(as_ffmpeg_gives, x) - OPUS_SILK_NB_RESIDUAL_DELAY_SAMPLES) <= 1.0
    assert abs(_lag_samples(aligned, x)) <= 1.0
    wideband = codec.encode(_batch(x), Opus.point(bitrate_kbps=64))[0]
    assert codec._residual_delay_samples(_demuxed_packets(wideband)) == 0


def test_measured_bitrates_of_every_default_point(rng):
    """5 s of noise + tone: payload rate from the bytes, container apart; CBR so the payload is hand-computable."""
    duration_s = 5.0
    x = _batch(_harmonic(rng, duration_s) + 0.2 * rng.standard_normal(int(duration_s * SAMPLE_RATE_HZ)))
    num_samples = x.shape[-1]
    for cls in (Opus, Mp3):
        codec = cls()
        for point in cls.operating_points():
            target_kbps = codec.nominal_bitrate_kbps(point)
            bitstream = codec.encode(x, point)[0]
            packets = _demuxed_packets(bitstream)
            assert b"".join(packets) == bitstream.payload  # the payload is exactly the packets in the container
            frame_bytes = {Opus: target_kbps * 1000 * 0.020 / 8, Mp3: 144 * target_kbps * 1000 / SAMPLE_RATE_HZ}[cls]
            assert {len(p) for p in packets} == {frame_bytes}  # constant bitrate, no MP3 padding slots at 48 kHz
            if cls is Opus:  # the look-ahead costs packets: ceil((T + 312) / 960)
                assert len(packets) == math.ceil((num_samples + OPUS_LOOKAHEAD_SAMPLES) / 960)
            else:  # LAME's 576 + 529 delay samples are coded too
                assert len(packets) * 1152 >= num_samples + 1105
                assert bitstream.payload in bitstream.decode_state["container"]  # frames stored contiguously
            assert bitstream.bitrate_kbps == pytest.approx(8 * len(packets) * frame_bytes / duration_s / 1000)
            assert target_kbps <= bitstream.bitrate_kbps <= 1.01 * target_kbps
            assert 0.3 < bitstream.container_overhead_kbps < 1.0  # Ogg pages + headers / Xing frame + ID3 tag
            assert bitstream.serialized_kbps == pytest.approx(bitstream.bitrate_kbps + bitstream.container_overhead_kbps)


def test_aac_rates_are_measured_from_its_packets(rng):
    """AAC is average-bitrate (packet sizes vary): payload = the packets in the .m4a file, within 3% of target."""
    x = _batch(_harmonic(rng, 5.0) + 0.2 * rng.standard_normal(5 * SAMPLE_RATE_HZ))
    codec = Aac()
    for point in Aac.operating_points():
        bitstream = codec.encode(x, point)[0]
        packets = _demuxed_packets(bitstream)
        assert b"".join(packets) == bitstream.payload
        assert len(packets) == math.ceil((x.shape[-1] + 1024) / 1024)  # the 1024 priming samples are coded too
        assert bitstream.bitrate_kbps == pytest.approx(point["bitrate_kbps"], rel=0.03)
        assert 2.0 < bitstream.container_overhead_kbps < 3.5  # MP4 moov atom with its sample tables


@pytest.mark.parametrize(
    "cls,low_kbps,high_kbps", [(Opus, 6, 64), (Mp3, 32, 128), (Aac, 32, 128)], ids=["opus", "mp3", "aac"]
)
def test_decoding_is_lossy_with_reasonable_quality_at_high_rate(cls, low_kbps, high_kbps, rng):
    x = _harmonic(rng, 2.0)
    codec = cls()
    high = codec.roundtrip(_batch(x), SAMPLE_RATE_HZ, cls.point(bitrate_kbps=high_kbps)).decoded[0, 0].double().numpy()
    low = codec.roundtrip(_batch(x), SAMPLE_RATE_HZ, cls.point(bitrate_kbps=low_kbps)).decoded[0, 0].double().numpy()
    # measured: opus 64 kbps 19.8 dB, 6 kbps 3.5 dB; mp3 128 kbps 22.8 dB, 32 kbps 16.5 dB; aac 128 / 32 kbps below
    assert 15.0 < _snr_db(x, high) < 40.0
    assert _snr_db(x, low) < _snr_db(x, high) - 3.0


def test_roundtrip_at_44k1_resamples_and_stays_aligned(rng):
    rate_hz = 44100
    x = _lowpass_noise(rng, 1.0, rate_hz)
    result = Mp3().roundtrip(_batch(x), rate_hz, Mp3.point(bitrate_kbps=128))
    y = result.decoded[0, 0].double().numpy()
    assert y.shape == x.shape
    assert result.processing["native_sample_rate_hz"] == 48000
    assert result.processing["resampler"].startswith("soxr")
    assert result.bitstreams[0].num_samples == 48000
    assert abs(_lag_samples(y, x)) <= 1.0


def test_stereo_is_downmixed_and_duplicated(rng):
    stereo = torch.tensor(np.stack([_lowpass_noise(rng, 0.5), _lowpass_noise(rng, 0.5)])[None], dtype=torch.float32)
    result = Opus().roundtrip(stereo, SAMPLE_RATE_HZ, Opus.point(bitrate_kbps=32))
    assert result.decoded.shape == stereo.shape
    assert torch.equal(result.decoded[0, 0], result.decoded[0, 1])
    assert result.processing["channel_policy"] == "downmix-mean-2to1"
    with pytest.raises(CodecbenchError, match=r"codec 'opus' encodes mono audio \[B, 1, T\]"):
        Opus().encode(stereo, Opus.point(bitrate_kbps=32))


def test_undone_delay_is_an_error_not_a_misalignment(rng):
    codec, point = Mp3(), Mp3.point(bitrate_kbps=64)
    bitstream = codec.encode(_batch(_lowpass_noise(rng, 0.5)), point)[0]
    claims_shorter = dataclasses.replace(bitstream, num_samples=bitstream.num_samples - 2000)
    with pytest.raises(CodecbenchError, match=r"expected the 1105-sample codec delay to be trimmed"):
        codec.decode([claims_shorter], point)


def test_vbr_option_changes_the_rate_and_the_identity(rng):
    x = _batch(_harmonic(rng, 2.0))
    point = Opus.point(bitrate_kbps=24)
    cbr, vbr = Opus(), Opus(vbr="on")
    assert cbr.identity()["vbr"] == "off" and vbr.identity()["vbr"] == "on"
    cbr_kbps = cbr.encode(x, point)[0].bitrate_kbps
    vbr_kbps = vbr.encode(x, point)[0].bitrate_kbps
    assert cbr_kbps == pytest.approx(24.0, rel=0.01) and abs(vbr_kbps - cbr_kbps) > 0.5
    with pytest.raises(ConfigError, match=r"codec 'opus' option 'vbr': 'sometimes' is not one of"):
        Opus(vbr="sometimes")


def test_operating_point_errors_name_the_parameter_and_range():
    with pytest.raises(ConfigError, match=r"codec 'opus' parameter 'bitrate_kbps': 4 is out of range \[6, 256\]"):
        Opus.point(bitrate_kbps=4)
    with pytest.raises(ConfigError, match=r"codec 'mp3' parameter 'bitrate_kbps': 100 is not one of \[32, 40"):
        Mp3.point(bitrate_kbps=100)
    with pytest.raises(ConfigError, match=r"codec 'mp3' has no parameter 'bitrate'"):
        Mp3.point(bitrate=64)


def test_catalogue_figures():
    opus, mp3, aac = Opus(), Mp3(), Aac()
    assert registry.get("opus") is Opus and registry.get("mp3") is Mp3 and registry.get("aac") is Aac
    assert [p["bitrate_kbps"] for p in Opus.operating_points()] == [6, 8, 12, 16, 24, 32, 48, 64]
    assert [p["bitrate_kbps"] for p in Mp3.operating_points()] == [32, 48, 64, 96, 128]
    assert set(p["bitrate_kbps"] for p in Mp3.operating_points()) <= set(MP3_BITRATES_KBPS)
    point = Opus.point(bitrate_kbps=12)
    assert opus.nominal_bitrate_kbps(point) == 12.0
    assert opus.frame_rate_hz(point) == 50.0
    assert opus.algorithmic_latency_ms(point) == pytest.approx(26.5)  # 20 ms frame + 6.5 ms look-ahead
    point = Mp3.point(bitrate_kbps=64)
    assert mp3.frame_rate_hz(point) == pytest.approx(41.6667, abs=1e-4)
    assert mp3.algorithmic_latency_ms(point) == pytest.approx((1152 + 576 + 529) / 48.0)
    point = Aac.point(bitrate_kbps=64)
    assert aac.frame_rate_hz(point) == 46.875
    assert aac.algorithmic_latency_ms(point) == pytest.approx(2048 / 48.0)
    for cls in (Opus, Mp3, Aac):
        assert cls.info.sample_rate_hz == 48000 and cls.info.channels == 1 and cls.info.kind == "classic"
        assert not cls.info.is_anchor and cls().weights_status() == "not needed"


def test_opus_toc_modes():
    """RFC 6716 table 2: configs 0-11 SILK (NB, MB, WB), 12-15 hybrid (SWB, FB), 16-31 CELT (NB, WB, SWB, FB)."""
    expected = {0: "SILK-NB", 5: "SILK-MB", 11: "SILK-WB", 12: "HYBRID-SWB", 15: "HYBRID-FB", 16: "CELT-NB",
                22: "CELT-WB", 24: "CELT-SWB", 31: "CELT-FB"}
    for config, mode in expected.items():
        assert opus_packet_mode(bytes([config << 3 | 0b101])) == mode


def test_payload_bitstreams_carry_the_codec_framing():
    """The frame rate of an opaque payload comes from the bitstream itself (Opus 20 ms packets, MP3 1152 samples)."""
    audio = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, 48_000)).astype(np.float32) * 0.1)
    for name, expected_hz in (("opus", 50.0), ("mp3", 48_000 / 1152)):
        codec = registry.create(name)
        (bitstream,) = codec.encode(audio, codec.operating_points()[0])
        assert bitstream.frame_rate_hz == pytest.approx(expected_hz)
        assert bitstream.rate_columns()["frame_rate_hz"] == pytest.approx(expected_hz)
        assert bitstream.rate_columns()["rate_source"] == "measured"
