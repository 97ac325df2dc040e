"""CLAP similarity and CLAP embeddings at random init (one model build shared), model FAD, availability."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from codecbench.bench.metrics import registry
from codecbench.bench.metrics.model_metrics import ClapSimilarity, FadEncodec

CLAP_WARNINGS = ("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning")


def test_unavailable_without_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CODECBENCH_OFFLINE", "1")
    for name in ("clap_similarity", "fad_clap", "kad_clap", "fad_encodec", "fad_pann"):
        metric = registry.create(name, weights_dir=str(tmp_path))
        assert metric.info.needs_weights
        reason = metric.availability()
        assert reason is not None and "Official source" in reason and str(tmp_path) in reason


@pytest.fixture(scope="module")
def clap_metric():
    pytest.importorskip("laion_clap")
    metric = ClapSimilarity(random_init=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # third-party deprecation warnings from laion_clap / transformers
        metric.embeddings.embedder.model  # noqa: B018 - build once (HTSAT-tiny + RoBERTa-base at random init)
    return metric


@pytest.mark.slow
@pytest.mark.filterwarnings(*CLAP_WARNINGS)
def test_clap_windows_unit_norm_deterministic(clap_metric, rng):
    embedder = clap_metric.embeddings.embedder
    signals = [0.1 * rng.standard_normal(48000 * 2).astype(np.float32),
               0.1 * rng.standard_normal(48000 * 11).astype(np.float32)]
    first = embedder.embed_batch(signals)
    assert [e.shape for e in first] == [(1, 512), (2, 512)]  # 11 s -> fixed windows [0, 10) and [1, 11) s
    np.testing.assert_allclose(np.linalg.norm(first[1], axis=1), 1.0, atol=1e-5)
    again = embedder.embed_batch(signals[1:])  # eval mode, no random crop: same output
    np.testing.assert_allclose(first[1], again[0], atol=1e-6)


@pytest.mark.slow
@pytest.mark.filterwarnings(*CLAP_WARNINGS)
def test_clap_similarity_identity_and_symmetry(clap_metric, rng):
    a = (0.1 * rng.standard_normal((1, 48000 * 2))).astype(np.float32)
    b = (0.1 * np.sin(np.linspace(0, 2000, 48000 * 2)))[None].astype(np.float32)
    before = clap_metric.embeddings.computed
    values = clap_metric.score_batch([a, a, b], [a, b, a], 48000)
    assert values[0].value == pytest.approx(1.0, abs=1e-6)
    assert values[1].value == pytest.approx(values[2].value, abs=1e-6)
    assert clap_metric.embeddings.computed - before == 2  # a and b embedded once each
    assert values[1].extras["embedder"]["weights"] == "random-init (seed 0)"


@pytest.mark.slow
def test_fad_encodec_random_init(rng):
    pytest.importorskip("encodec")
    refs = [(0.1 * rng.standard_normal((1, 48000 * 1))).astype(np.float32) for _ in range(2)]
    degs = [(r + 0.05 * rng.standard_normal(r.shape)).astype(np.float32) for r in refs]
    value = FadEncodec(random_init=True, bootstrap_resamples=20).compute_set(refs, degs, 48000)
    assert value.extras["n"] == 2 * 75 and value.extras["dims"] == 128
    assert value.extras["embedder"]["weights"].startswith("random-init")
    assert value.value >= 0.0


def test_clap_similarity_failing_embedding_is_a_failure_in_place_not_a_recursion(clap_metric, rng, monkeypatch):
    from codecbench.bench.core.errors import MetricFailure

    def refuse(signals, sample_rate_hz):
        raise MetricFailure("embedding refused (test)")

    monkeypatch.setattr(clap_metric.embeddings, "embed", refuse)
    x = (0.1 * rng.standard_normal((1, 48_000))).astype(np.float32)
    results = clap_metric.score_batch([x, x], [x, x], 48_000)
    assert [str(r) for r in results] == ["embedding refused (test)"] * 2
    with pytest.raises(MetricFailure, match="embedding refused"):
        clap_metric.score(x, x, 48_000)
