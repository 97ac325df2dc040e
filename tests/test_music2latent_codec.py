"""Tests of codecs/music2latent_codec.py: a continuous codec (no kbps), with the real UNet at random init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("music2latent")

from codecbench.bench.core.errors import ConfigError, WeightsNotFoundError  # noqa: E402
from codecbench.codecs import container  # noqa: E402
from codecbench.codecs.music2latent_codec import Music2Latent, latent_frames  # noqa: E402


def test_catalogue_rates():
    codec = Music2Latent(random_init=True)
    point = codec.point(denoising_steps=1)
    assert codec.frame_rate_hz(point) == pytest.approx(44100 / 4096)
    assert codec.compression_ratio() == 64.0
    assert math.isnan(codec.nominal_bitrate_kbps(point))
    assert codec.info.is_continuous and codec.info.kind == "continuous"
    assert codec.identity()["decode_seed"] == 0
    assert [latent_frames(n) for n in (5631, 5632, 9728, 44100)] == [0, 1, 2, 10]


@pytest.mark.slow
def test_random_init_encode_decode():
    codec = Music2Latent(random_init=True, seed=3)
    point = codec.point(denoising_steps=1)
    num_samples = 5632  # 1 latent frame
    x = 0.1 * torch.randn(2, 1, num_samples, generator=torch.Generator().manual_seed(0))
    a, b = codec.encode(x, point)
    assert a.latents.shape == (64, 1)
    assert math.isnan(a.bitrate_kbps)
    assert a.compression_ratio == pytest.approx(num_samples / 64)
    assert a.frame_rate_hz == pytest.approx(10.7666015625)
    assert not np.allclose(a.latents, b.latents)
    back = container.deserialize(container.serialize(a)).bitstream
    np.testing.assert_array_equal(back.latents, a.latents)
    y1 = codec.decode([a], point)
    y2 = codec.decode([a], point)
    assert y1.shape == (1, 1, num_samples)
    torch.testing.assert_close(y1, y2)  # seeded consistency decoding


def test_errors(tmp_path, monkeypatch):
    codec = Music2Latent(random_init=True)
    with pytest.raises(ConfigError, match="needs at least 5632 samples"):
        codec.encode(torch.zeros(1, 1, 1000), codec.point(denoising_steps=1))
    monkeypatch.setenv("CODECBENCH_OFFLINE", "1")
    offline = Music2Latent(weights_dir=str(tmp_path))
    assert offline.weights_status() == "missing: music2latent.pt"
    with pytest.raises(WeightsNotFoundError, match="music2latent.pt.*huggingface.co/SonyCSLParis/music2latent"):
        offline.encode(torch.zeros(1, 1, 5632), offline.point(denoising_steps=1))
    with pytest.raises(ConfigError, match="out of range"):
        Music2Latent.point(denoising_steps=0)
