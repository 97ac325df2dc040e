"""FAD / FAD-inf / KAD set metrics on log-mel frames: values vs the pure functions, extras, CIs, failures."""

from __future__ import annotations

import numpy as np
import pytest
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics import frechet, kad, registry
from codecbench.bench.metrics.distribution import FadInfLogMel, FadLogMel, KadLogMel
from codecbench.bench.metrics.embeddings import EmbeddingCache, LogMelEmbedder

SR = 48000


def _sets(rng, count=4, seconds=1.0, noise=0.05):
    t = np.arange(int(SR * seconds)) / SR
    refs, degs = [], []
    for i in range(count):
        tone = 0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t) + 0.05 * rng.standard_normal(t.size)
        refs.append(tone[None].astype(np.float32))
        degs.append((tone + noise * rng.standard_normal(t.size))[None].astype(np.float32))
    return refs, degs


def test_fad_matches_pure_function_and_reports_n(rng):
    refs, degs = _sets(rng)
    value = FadLogMel(bootstrap_resamples=200).compute_set(refs, degs, SR)
    emb = EmbeddingCache(LogMelEmbedder())
    expected = frechet.fad_from_embeddings(np.concatenate(emb.embed(refs, SR)), np.concatenate(emb.embed(degs, SR)))
    assert value.value == pytest.approx(expected, rel=1e-9)
    assert value.extras["n"] == 4 * 45 and value.extras["dims"] == 64 and value.extras["n_items"] == 4
    assert value.extras["degraded_duration_s"] == pytest.approx(4.0)
    assert value.extras["ci_low"] <= value.value <= value.extras["ci_high"]


def test_fad_bootstrap_statistic_equals_value_on_identity_resample(rng):
    # the sufficient-statistics path used by the bootstrap must reproduce the full-set value
    from codecbench.bench.metrics.distribution import _stats_from, _sufficient

    refs, degs = _sets(rng)
    emb = EmbeddingCache(LogMelEmbedder())
    r_emb, d_emb = emb.embed(refs, SR), emb.embed(degs, SR)
    w = np.ones(4)
    r, d = _stats_from(_sufficient(r_emb), w), _stats_from(_sufficient(d_emb), w)
    full = frechet.fad_from_embeddings(np.concatenate(r_emb), np.concatenate(d_emb))
    assert frechet.frechet_distance(r.mean, r.cov, d.mean, d.cov) == pytest.approx(full, rel=1e-7)


def test_more_noise_scores_worse(rng):
    refs, degs = _sets(rng)
    _, noisier = _sets(np.random.default_rng(1234), noise=0.3)
    metric = FadLogMel(bootstrap_resamples=0)
    assert metric.compute_set(refs, noisier, SR).value > metric.compute_set(refs, degs, SR).value


def test_kad_matches_pure_function(rng):
    refs, degs = _sets(rng, count=3, seconds=0.5)
    value = KadLogMel(bootstrap_resamples=100).compute_set(refs, degs, SR)
    emb = EmbeddingCache(LogMelEmbedder())
    expected, sigma = kad.kernel_audio_distance(np.concatenate(emb.embed(refs, SR)), np.concatenate(emb.embed(degs, SR)))
    assert value.value == pytest.approx(expected, rel=1e-7, abs=1e-12)
    assert value.extras["bandwidth"] == pytest.approx(sigma)
    assert "ci_low" in value.extras


def test_fad_inf_reports_fit(rng):
    refs, degs = _sets(rng, count=6)
    value = FadInfLogMel(steps=8, bootstrap_resamples=0).compute_set(refs, degs, SR)
    assert 0.0 <= value.extras["r_squared"] <= 1.0 and len(value.extras["subset_sizes"]) == 8
    assert value.value == FadInfLogMel(steps=8, bootstrap_resamples=0).compute_set(refs, degs, SR).value  # seeded


def test_fad_inf_status_estimator_and_bootstrap_ci(rng):
    refs, degs = _sets(rng, count=6, seconds=2.0, noise=0.3)
    value = FadInfLogMel(bootstrap_resamples=20).compute_set(refs, degs, SR)
    extras = value.extras
    assert extras["estimator"] == "codecbench" and extras["status"] in ("ok", "unreliable")
    assert (extras["status"] == "ok") == (extras["status_reason"] == "")
    assert extras["ci_low"] <= extras["ci_high"] and extras["ci_resamples"] == 20
    fadtk = FadInfLogMel(estimator="fadtk", bootstrap_resamples=0).compute_set(refs, degs, SR)
    assert fadtk.extras["estimator"] == "fadtk" and len(fadtk.extras["subset_sizes"]) >= 5
    with pytest.raises(ValueError, match="estimator must be one of"):
        FadInfLogMel(estimator="mine")


def test_fad_inf_exists_for_every_embedder():
    set_metrics = {name for name in registry.names() if registry.get(name).info.level == "set"}
    for fad in {n for n in set_metrics if n.startswith("fad_") and not n.startswith("fad_inf_")}:
        assert "fad_inf_" + fad[4:] in set_metrics, fad


def test_too_few_frames_fails(rng):
    refs, degs = _sets(rng, count=1, seconds=0.5)  # 22 frames < 64 dims
    with pytest.raises(MetricFailure, match="not above the embedding dimension D = 64"):
        FadLogMel().compute_set(refs, degs, SR)


def test_unpaired_sets_fail(rng):
    refs, degs = _sets(rng)
    with pytest.raises(MetricFailure, match="4 references but 3 degraded"):
        FadLogMel().compute_set(refs, degs[:3], SR)


def test_registered_as_set_metrics():
    for name in ("fad_logmel", "fad_inf_logmel", "kad_logmel"):
        cls = registry.get(name)
        assert cls.info.level == "set" and not cls.info.needs_weights
