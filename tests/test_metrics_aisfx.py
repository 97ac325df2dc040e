"""aiSFX embedder: torch front end vs the package's Essentia path (committed fixture), metrics on the machinery."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from aisfx_support import FIXTURE, SAMPLE_RATE_HZ, aisfx_clips
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics import aisfx, kad, registry

FIXTURE_PATH = Path(__file__).parent / "data" / FIXTURE
needs_aisfx = pytest.mark.skipif(
    importlib.util.find_spec("aisfx") is None,
    reason="aisfx not installed (pip install --no-deps aisfx==0.1.2; .ci/run does this)",
)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE_PATH))


@pytest.fixture(scope="module")
def embedder() -> aisfx.AisfxEmbedder:
    if importlib.util.find_spec("aisfx") is None:
        pytest.skip("aisfx not installed (pip install --no-deps aisfx==0.1.2)")
    return aisfx.AisfxEmbedder()


def _rows_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_frame_and_block_counts_hand_computed(reference):
    # Essentia FrameCutter: ceil((T + 1024) / 1024) frames; 176 400 samples -> ceil(173.27) = 174
    assert aisfx.essentia_frames(torch.zeros(176_400)).shape == (174, 2048)
    for name, clip in aisfx_clips().items():  # and as Essentia counted them for the fixture
        assert aisfx.essentia_frames(torch.from_numpy(clip)).shape[0] == int(reference[f"frames_{name}"])
    assert aisfx.block_starts(174) == [0, 50]  # ceil(74/50 + 1) = 3, partial dropped -> 2
    assert aisfx.block_starts(200) == [0, 50, 100]  # (200 - 100) % 50 == 0: the last block is whole
    assert aisfx.block_starts(66) == [0]  # shorter than a block: one zero-padded block


def test_mel_filters_unit_sum_and_htk_edges():
    basis = aisfx.essentia_mel_filters()
    assert basis.shape == (96, 1025)
    np.testing.assert_allclose(basis.sum(axis=1), 1.0, atol=1e-6)
    # first band: edges 0, 25.59, 52.07 Hz (HTK mel step 3923.3 / 97); bins 1 and 2 (21.5, 43.1 Hz), weights by mel
    mel = lambda f: 1127.0 * np.log1p(f / 700.0)  # noqa: E731
    step = mel(22050.0) / 97
    w1, w2 = mel(22050.0 / 1024) / step, (2 * step - mel(2 * 22050.0 / 1024)) / step
    np.testing.assert_allclose(basis[0, :3], [0.0, w1 / (w1 + w2), w2 / (w1 + w2)], atol=1e-6)


@needs_aisfx
def test_torch_front_end_matches_essentia_reference(embedder, reference):
    """Every block of every clip within 1 - cos <= 1e-5 of the package's Essentia path (tests/data fixture)."""
    clips = aisfx_clips()
    embedded = embedder.embed_batch(list(clips.values()))
    for (name, _), emb in zip(clips.items(), embedded):
        ref = reference[f"emb_{name}"]
        assert emb.shape == ref.shape
        assert (1.0 - _rows_cos(emb, ref)).max() <= 1e-5, name
        np.testing.assert_allclose(emb, ref, rtol=1e-3, atol=1e-4)


@needs_aisfx
def test_checkpoint_digest_checked(tmp_path):
    bad = tmp_path / "checkpoint.pth"
    bad.write_bytes(b"not the aisfx checkpoint")
    with pytest.raises(MetricFailure, match="sha256 .* expected 499ea759"):
        aisfx.load_aisfx_model(bad)


@needs_aisfx
def test_similarity_equals_cosine_of_reference_embeddings(reference):
    clips = aisfx_clips()
    metric = registry.create("aisfx_similarity")
    assert metric.availability() is None
    refs = [clips["burst"][None], clips["chirp"][None], clips["burst"][None]]
    degs = [clips["chirp"][None], clips["burst"][None], clips["burst"][None]]
    values = metric.score_batch(refs, degs, SAMPLE_RATE_HZ)
    a, b = reference["emb_burst"].mean(0), reference["emb_chirp"].mean(0)
    expected = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert values[0].value == pytest.approx(expected, abs=1e-5)
    assert values[1].value == pytest.approx(values[0].value, abs=1e-7)  # symmetric
    assert values[2].value == pytest.approx(1.0, abs=1e-7)
    assert metric.embeddings.computed == 2  # each clip embedded once
    assert values[0].extras["blocks_reference"] == 2


@needs_aisfx
def test_kad_and_fad_on_the_set_machinery(reference):
    clips = aisfx_clips()
    refs = [clips["burst"][None], clips["clicks"][None]]
    degs = [clips["chirp"][None], clips["short"][None]]
    value = registry.create("kad_aisfx", bootstrap_resamples=0).compute_set(refs, degs, SAMPLE_RATE_HZ)
    x = np.concatenate([reference["emb_burst"], reference["emb_clicks"]])
    y = np.concatenate([reference["emb_chirp"], reference["emb_short"]])
    expected, sigma = kad.kernel_audio_distance(x, y)
    assert value.value == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert value.extras["n"] == 3 and value.extras["n_reference"] == 5 and value.extras["dims"] == 512
    with pytest.raises(MetricFailure, match="N = 5 frames is not above the embedding dimension D = 512"):
        registry.create("fad_aisfx").compute_set(refs, degs, SAMPLE_RATE_HZ)


def test_unavailable_names_the_install_line(monkeypatch):
    monkeypatch.setattr(aisfx, "aisfx_package_dir", lambda: None)
    reason = registry.create("aisfx_similarity").availability()
    assert reason is not None and "pip install --no-deps aisfx==0.1.2" in reason


def test_catalogue_metadata():
    for name in ("aisfx_similarity", "fad_aisfx", "kad_aisfx"):
        info = registry.get(name).info
        assert info.sample_rate_hz == 44_100 and "CC BY 4.0" in info.citation and aisfx.CHECKPOINT_SHA256 in info.citation
    assert registry.get("aisfx_similarity").info.higher_is_better
    assert not registry.get("fad_aisfx").info.higher_is_better
