"""Tests of codecs/semanticodec_codec.py. The official package is GitHub-only and not installed here.

What runs here: the rate arithmetic from token tensors shaped as the package returns them ([1, F, 2]), the
published 1.40 and 0.3125 kbps, bitstream packing, the missing-package error, and the adapter's plumbing
(16 kHz resampling, file hand-off, trimming) against a stand-in of the package's documented API. No SemantiCodec
model runs in these tests and none of them scores audio quality.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch
from codecbench.bench.core.errors import MissingDependencyError, WeightsNotFoundError
from codecbench.codecs import container, semanticodec_codec
from codecbench.codecs.semanticodec_codec import SemantiCodec, nominal_bitrate_kbps

# the package README's table: (token_rate, semantic_vocab_size) -> kbps as printed (2 decimals)
README_KBPS = {
    (100, 32768): 1.40, (50, 32768): 0.70, (25, 32768): 0.35,
    (100, 16384): 1.35, (50, 16384): 0.68, (25, 16384): 0.34,
    (100, 8192): 1.30, (50, 8192): 0.65, (25, 8192): 0.33,
    (100, 4096): 1.25, (50, 4096): 0.63, (25, 4096): 0.31,
}


def _tokens(rng, token_rate: int, vocab: int, seconds: float) -> np.ndarray:
    frames = int(token_rate / 2 * seconds)
    return np.stack([rng.integers(0, vocab, frames), rng.integers(0, 8192, frames)], axis=1)  # [F, 2]


@pytest.mark.parametrize("token_rate,vocab,kbps", [(100, 32768, 1.40), (25, 4096, 0.3125)])
def test_published_rates_from_tokens(rng, token_rate, vocab, kbps):
    point = SemantiCodec.point(token_rate=token_rate, semantic_vocab_size=vocab)
    bitstream = SemantiCodec().bitstream(_tokens(rng, token_rate, vocab, 10.0), 160000, point)
    assert [s.name for s in bitstream.streams] == ["semantic0", "acoustic0"]
    assert bitstream.bitrate_kbps == pytest.approx(kbps, abs=1e-12)
    assert SemantiCodec().nominal_bitrate_kbps(point) == pytest.approx(kbps, abs=1e-12)


def test_every_point_matches_the_readme_table():
    for (rate, vocab), printed in README_KBPS.items():
        assert abs(nominal_bitrate_kbps(rate, vocab) - printed) <= 0.005 + 1e-9, (rate, vocab)


def test_bitstream_packing_reads_back(rng):
    point = SemantiCodec.point(token_rate=100, semantic_vocab_size=32768)
    tokens = _tokens(rng, 100, 32768, 2.0)
    bitstream = SemantiCodec().bitstream(tokens, 32000, point)
    data = container.serialize(bitstream)
    assert bitstream.container_bytes == len(data)
    # 100 frames x (15 + 13) bits = 2800 bits = 350 bytes of payload
    assert len(data) == 20 + (1 + 9 + 16) + (1 + 9 + 16) + 350
    back = container.deserialize(data).bitstream
    np.testing.assert_array_equal(semanticodec_codec.streams_to_tokens(back), tokens)


@pytest.mark.skipif(semanticodec_codec.is_available(), reason="the semanticodec package is installed here")
def test_missing_package_names_the_install_line():
    codec = SemantiCodec()
    assert codec.weights_status().startswith("missing: package 'semanticodec'")
    with pytest.raises(MissingDependencyError, match=r"pip install git\+https://github.com/haoheliu/SemantiCodec-inference.git"):
        codec.encode(torch.zeros(1, 1, 1600), codec.point(token_rate=50, semantic_vocab_size=16384))


class _PackageStandIn:
    """Stand-in with the package's documented API (``SemantiCodec(token_rate, semantic_vocab_size, ...)``,
    ``encode(filepath) -> [1, F, 2]``, ``decode(tokens) -> [1, 1, T]``) to check the adapter's plumbing only."""

    seen: list = []

    def __init__(self, token_rate, semantic_vocab_size, ddim_sample_step=50, cfg_scale=2.0, checkpoint_path=None,
                 cache_path="pretrained"):
        self.token_rate, self.vocab = token_rate, semantic_vocab_size
        self.device = torch.device("cpu")
        _PackageStandIn.seen.append({"checkpoint_path": checkpoint_path, "cache_path": cache_path})

    def encode(self, filepath):
        audio, rate = sf.read(filepath, dtype="float32")
        _PackageStandIn.seen.append({"rate": rate, "samples": len(audio)})
        frames = int(np.ceil(len(audio) / 16000 * self.token_rate / 2))
        return torch.zeros(1, frames, 2, dtype=torch.long)

    def decode(self, tokens):
        return np.zeros((1, 1, int(tokens.shape[1] / (self.token_rate / 2) * 16000)), dtype=np.float32)


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    module = types.ModuleType("semanticodec")
    module.SemantiCodec = _PackageStandIn
    monkeypatch.setitem(sys.modules, "semanticodec", module)
    _PackageStandIn.seen = []
    return tmp_path


def test_plumbing_resamples_to_16khz_and_back(stand_in, monkeypatch):
    ckpt = stand_in / "semanticodec" / "semanticodec_tokenrate_50"
    ckpt.mkdir(parents=True)
    (ckpt / "encoder.ckpt").write_bytes(b"")
    codec = SemantiCodec(weights_dir=str(stand_in))
    point = codec.point(token_rate=50, semantic_vocab_size=16384)
    x = 0.1 * torch.randn(2, 1, 48000, generator=torch.Generator().manual_seed(0))
    result = codec.roundtrip(x, 48000, point)
    assert result.decoded.shape == (2, 1, 48000)
    assert _PackageStandIn.seen[0]["checkpoint_path"] == str(ckpt)
    assert _PackageStandIn.seen[1] == {"rate": 16000, "samples": 16000}
    assert result.bitstreams[0].streams[0].num_frames == 25


def test_offline_without_checkpoints_names_the_file(stand_in, monkeypatch):
    monkeypatch.setenv("CODECBENCH_OFFLINE", "1")
    codec = SemantiCodec(weights_dir=str(stand_in))
    with pytest.raises(WeightsNotFoundError, match="encoder.ckpt.*huggingface.co/haoheliu/SemantiCodec"):
        codec.encode(torch.zeros(1, 1, 1600), codec.point(token_rate=25, semantic_vocab_size=4096))
