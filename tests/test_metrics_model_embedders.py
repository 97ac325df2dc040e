"""Model embedders: real architectures at random init (shapes), fixed windows, weights resolution offline."""

from __future__ import annotations

import numpy as np
import pytest
from codecbench.bench.core.errors import WeightsNotFoundError
from codecbench.bench.metrics.model_embedders import ClapEmbedder, EncodecEmbedder, PannEmbedder, fixed_windows

# LAION-CLAP at random init is exercised in test_metrics_model_metrics.py (one model build shared by its tests)


def test_fixed_windows():
    assert fixed_windows(100, 480, 480) == [(0, 100)]
    assert fixed_windows(1000, 480, 480) == [(0, 480), (480, 960), (520, 1000)]
    assert fixed_windows(960, 480, 480) == [(0, 480), (480, 960)]


def test_absent_weights_named_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CODECBENCH_OFFLINE", "1")
    embedder = ClapEmbedder(weights_dir=str(tmp_path))
    reason = embedder.availability()
    assert "630k-audioset-best.pt" in reason and "huggingface.co/lukewys/laion_clap" in reason
    with pytest.raises(WeightsNotFoundError, match="630k-audioset-best.pt"):
        embedder.weights_file.fetch(str(tmp_path))
    assert "dl.fbaipublicfiles.com/encodec" in EncodecEmbedder(weights_dir=str(tmp_path)).availability()
    assert ClapEmbedder(random_init=True).availability() is None
    assert ClapEmbedder(random_init=True).weights_status() == "random-init (seed 0)"


@pytest.mark.slow
def test_encodec_encoder_shape_random_init(rng):
    pytest.importorskip("encodec")
    embedder = EncodecEmbedder(random_init=True)
    (emb,) = embedder.embed_batch([rng.standard_normal(24000).astype(np.float32)])
    assert emb.shape == (75, 128)  # 1 s at 24 kHz -> 75 frames of 128 dims


@pytest.mark.slow
def test_pann_shape_random_init(rng):
    pytest.importorskip("frechet_audio_distance")
    embedder = PannEmbedder(random_init=True)
    (emb,) = embedder.embed_batch([rng.standard_normal(40000).astype(np.float32)])
    assert emb.shape == (3, 2048)  # 2.5 s -> windows [0, 1), [1, 2), [1.5, 2.5) s
