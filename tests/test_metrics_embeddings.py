"""Embedding cache (content keys, disk + memory, batching) and the weights-free log-mel embedder."""

from __future__ import annotations

import numpy as np
import pytest
from codecbench.bench.core.cache import Cache
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics.embeddings import EmbeddingCache, LogMelEmbedder

SR = 48000


def _clips(rng, count=3, seconds=0.5):
    return [(0.1 * rng.standard_normal((1, int(SR * seconds)))).astype(np.float32) for _ in range(count)]


def test_logmel_shape_and_values(rng):
    clip = _clips(rng, 1, 1.0)[0]
    (emb,) = LogMelEmbedder().embed_batch([clip[0]])
    assert emb.shape == ((SR - 2048) // 1024 + 1, 64)  # 45 whole frames in 1 s
    # direct computation of frame 3 with numpy: periodic Hann, power spectrum, mel basis, dB
    from codecbench.bench.metrics.mel_distance import mel_filters

    frame = clip[0, 3 * 1024 : 3 * 1024 + 2048].astype(np.float64)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2048)
    power = np.abs(np.fft.rfft(frame * window)) ** 2
    expected = 10 * np.log10(np.maximum(mel_filters(SR, 2048, 64).numpy() @ power, 1e-10))
    np.testing.assert_allclose(emb[3], expected, atol=1e-3)


def test_memo_and_duplicates_embed_once(rng):
    clips = _clips(rng)
    store = EmbeddingCache(LogMelEmbedder(), cache=None, batch_size=2)
    first = store.embed(clips + [clips[0].copy()], SR)
    assert store.computed == 3  # the duplicate is embedded once
    again = store.embed(clips, SR)
    assert store.computed == 3
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[0], first[3])


def test_disk_cache_keyed_by_content(rng, tmp_path):
    clips = _clips(rng)
    EmbeddingCache(LogMelEmbedder(), Cache(tmp_path)).embed(clips, SR)
    fresh = EmbeddingCache(LogMelEmbedder(), Cache(tmp_path))
    fresh.embed(clips, SR)
    assert fresh.computed == 0  # rerun computes nothing
    changed = [clips[0] * 0.5] + clips[1:]
    fresh.embed(changed, SR)
    assert fresh.computed == 1  # new content, new key: never a stale entry
    assert len(list((tmp_path / "embeddings").rglob("*.npy"))) == 4


def test_resamples_to_working_rate(rng):
    clip = (0.1 * rng.standard_normal((2, 16000))).astype(np.float32)  # 1 s stereo at 16 kHz
    (emb,) = EmbeddingCache(LogMelEmbedder()).embed([clip], 16000)
    assert emb.shape == (45, 64)


def test_too_short_fails():
    with pytest.raises(MetricFailure, match="too short"):
        EmbeddingCache(LogMelEmbedder()).embed([np.zeros((1, 1000), np.float32)], SR)


def test_embedding_similarity_metric_isolates_the_item_whose_embedding_fails():
    """One embedding pass for the batch; when it fails, each pair is embedded alone and only the bad one fails."""
    from codecbench.bench.metrics.base import EmbeddingSimilarityMetric, MetricInfo, MetricValue

    class Embeddings:
        calls: list[int] = []

        def embed(self, items, sample_rate_hz):
            self.calls.append(len(items))
            if any(not np.any(x) for x in items):
                raise MetricFailure("silent input")
            return [x[:, :4].T.astype(np.float64) for x in items]

    class Similarity(EmbeddingSimilarityMetric):
        info = MetricInfo(name="toy_similarity", unit="", higher_is_better=True, needs_reference=True,
                          level="item", sample_rate_hz=None, version="1", citation="", description="")
        embeddings = Embeddings()

        def compare(self, reference_embedding, degraded_embedding):
            return MetricValue(float(np.abs(reference_embedding - degraded_embedding).sum()), {})

    rng = np.random.default_rng(0)
    refs = [rng.standard_normal((1, 8)).astype(np.float32) for _ in range(3)]
    degs = [refs[0] + 1, np.zeros((1, 8), np.float32), refs[2]]
    out = Similarity().score_batch(refs, degs, 48_000)
    assert Embeddings.calls == [6, 2, 2, 2]  # the batch, then each pair alone
    assert out[0].value == pytest.approx(4.0) and out[2].value == 0.0
    assert isinstance(out[1], MetricFailure) and "silent input" in str(out[1])
    with pytest.raises(MetricFailure, match="silent input"):
        Similarity().score(refs[1], degs[1], 48_000)
