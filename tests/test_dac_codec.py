"""Tests of codecs/dac_codec.py: the tiny config for behaviour, the published 44 kHz architecture for its rate.

Published rate checked from produced codes: DAC 44 kHz with 2 codebooks = 86.13 Hz x 2 x 10 bits ~ 1.72 kbps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("dac")

from codecbench.bench.core.errors import ConfigError, WeightsNotFoundError  # noqa: E402
from codecbench.codecs import container, registry  # noqa: E402
from codecbench.codecs.dac_codec import Dac16kHz, Dac24kHz, Dac44kHz  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return Dac16kHz(random_init=True, config="tiny", seed=0)


def _noise(seed: int, batch: int, samples: int) -> torch.Tensor:
    return 0.1 * torch.randn(batch, 1, samples, generator=torch.Generator().manual_seed(seed))


def test_keeps_exactly_n_codebooks_and_counts_their_bits(tiny):
    point = tiny.point(n_codebooks=2)
    a, b = tiny.encode(_noise(1, 2, 8000), point)
    assert [s.name for s in a.streams] == ["q0", "q1"]
    # 8000 samples / hop 320 = 25 frames at 50 Hz, tiny codebooks of 256 words = 8 bits
    assert all(s.num_frames == 25 and s.alphabet_size == 256 and s.frame_rate_hz == 50.0 for s in a.streams)
    assert a.bitrate_kbps == pytest.approx(50 * 2 * 8 / 1000.0)
    assert not np.array_equal(a.streams[0].codes, b.streams[0].codes)
    back = container.deserialize(container.serialize(a)).bitstream
    np.testing.assert_array_equal(back.streams[1].codes, a.streams[1].codes)
    assert a.container_bytes == len(container.serialize(a))
    # the 16 kHz decoder's odd stride returns 8 samples fewer than 25 x 320; decode pads back to the input length
    assert tiny.decode([a, b], point).shape == (2, 1, 8000)


@pytest.mark.slow
def test_chunked_processing_equals_whole_signal(tiny):
    point = tiny.point(n_codebooks=3)
    x = _noise(2, 1, 6400)  # 20 frames: two chunks of 10 with 18 frames of context each side
    whole = tiny.encode(x, point)
    chunked_codec = Dac16kHz(random_init=True, config="tiny", seed=0, chunk_s=0.2)
    assert chunked_codec._chunk_frames() == 10
    chunked = chunked_codec.encode(x, point)
    for s, t in zip(whole[0].streams, chunked[0].streams):
        np.testing.assert_array_equal(s.codes, t.codes)
    torch.testing.assert_close(chunked_codec.decode(chunked, point), tiny.decode(whole, point), atol=1e-5, rtol=0)


def test_roundtrip_from_eval_rate(tiny):
    point = tiny.point(n_codebooks=4)
    x = _noise(3, 2, 12000)  # 0.25 s at 48 kHz
    result = tiny.roundtrip(x, 48000, point)
    assert result.decoded.shape == x.shape
    assert result.bitstreams[0].num_samples == 4000
    assert result.processing["native_sample_rate_hz"] == 16000


def test_catalogue_rates_of_published_architectures():
    assert Dac16kHz().frame_rate_hz(Dac16kHz.point(n_codebooks=1)) == 50.0
    assert Dac24kHz().frame_rate_hz(Dac24kHz.point(n_codebooks=1)) == 75.0
    assert Dac16kHz().nominal_bitrate_kbps(Dac16kHz.point(n_codebooks=12)) == pytest.approx(6.0)
    assert Dac24kHz().nominal_bitrate_kbps(Dac24kHz.point(n_codebooks=32)) == pytest.approx(24.0)
    assert Dac44kHz().nominal_bitrate_kbps(Dac44kHz.point(n_codebooks=9)) == pytest.approx(44100 / 512 * 90 / 1000)


@pytest.mark.slow
def test_published_rate_44khz_two_codebooks_from_codes():
    codec = Dac44kHz(random_init=True, seed=0)  # the published 44.1 kHz architecture (76.7 M parameters)
    point = codec.point(n_codebooks=2)
    (bitstream,) = codec.encode(_noise(4, 1, 86 * 512), point)
    assert len(bitstream.streams) == 2 and bitstream.streams[0].num_frames == 86
    assert bitstream.frame_rate_hz == pytest.approx(86.1328125)
    assert bitstream.bitrate_kbps == pytest.approx(86.1328125 * 2 * 10 / 1000.0)
    assert round(bitstream.bitrate_kbps, 2) == 1.72
    assert codec.num_parameters() == 76_651_890
    assert codec.algorithmic_latency_ms(point) == pytest.approx(1000 * 7904 / 44100)


def test_errors(tmp_path, monkeypatch, tiny):
    with pytest.raises(ConfigError, match="5 is more than this model's 4 codebooks"):
        tiny.encode(_noise(5, 1, 320), Dac16kHz.point(n_codebooks=5))
    with pytest.raises(ConfigError, match="out of range"):
        Dac44kHz.point(n_codebooks=10)
    with pytest.raises(ConfigError, match="no published weights; use random_init"):
        Dac16kHz(config="tiny")
    with pytest.raises(ConfigError, match="is not one of"):
        Dac16kHz(random_init=True, config="huge")
    monkeypatch.setenv("CODECBENCH_OFFLINE", "1")
    codec = registry.create("dac_24khz", weights_dir=str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="weights_24khz_8kbps_0.0.4.pth.*descript-audio-codec/releases"):
        codec.encode(_noise(6, 1, 320), codec.point(n_codebooks=1))
