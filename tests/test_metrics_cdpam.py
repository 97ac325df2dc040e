"""CDPAM: equal to the package's own CDPAM().forward on real pairs; checkpoint digest; availability."""

from __future__ import annotations

import functools
import importlib.util
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from codecbench.bench.core import audio
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics import cdpam_metric, registry

needs_cdpam = pytest.mark.skipif(
    importlib.util.find_spec("cdpam") is None or importlib.util.find_spec("resampy") is None,
    reason="cdpam/resampy not installed (pip install cdpam==0.0.6 resampy librosa)",
)
CLIP_S = 1.5


@pytest.fixture(scope="module")
def real_pairs(shared_data):
    """(reference, decoded) [1, T] float32 at 48 kHz: 1.5 s of each spresso-demo item, src vs S-PRESSO 1.32 kbps."""
    folder = shared_data / "spresso-demo"
    if not folder.is_dir():
        pytest.skip("spresso-demo absent")
    pairs = []
    for path in sorted((folder / "src").glob("*.wav"))[:2]:
        ref, _ = sf.read(path, dtype="float32", always_2d=True)
        deg, _ = sf.read(folder / "spresso-1.32kbps" / path.name, dtype="float32", always_2d=True)
        stop = int(CLIP_S * 48_000)  # the first 1.5 s: these sparse effects are active there
        pairs.append((ref[:stop].T, deg[:stop].T))
    return pairs


@needs_cdpam
@pytest.mark.slow
def test_equals_package_forward_on_real_pairs(real_pairs, monkeypatch):
    import cdpam

    metric = registry.create("cdpam_distance")
    assert metric.availability() is None
    values = metric.score_batch([r for r, _ in real_pairs], [d for _, d in real_pairs] , 48_000)
    # The package, as shipped: its torch.load call needs weights_only=False on torch >= 2.6 (digest checked first).
    assert cdpam_metric.weights.file_digest(cdpam_metric.cdpam_checkpoint()) == cdpam_metric.CHECKPOINT_SHA256
    monkeypatch.setattr(torch, "load", functools.partial(torch.load, weights_only=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        package = cdpam.CDPAM(dev="cpu")
    for (ref, deg), value in zip(real_pairs, values):
        # the package's input: mono 22.05 kHz at 16-bit scale (its load_audio, without the removed np.float)
        to_input = lambda x: np.round(  # noqa: E731
            audio.resample(torch.from_numpy(x.mean(0)), 48_000, 22_050).numpy().astype(np.float64) * 32768)[None]
        with torch.no_grad():
            expected = float(package.forward(to_input(ref).astype(np.float32), to_input(deg).astype(np.float32))[0])
        assert value.value == pytest.approx(expected, abs=1e-5)
        assert value.value > 0.0
    same = metric.score(real_pairs[0][0], real_pairs[0][0], 48_000)
    assert same.value == pytest.approx(0.0, abs=1e-5)


@needs_cdpam
def test_checkpoint_digest_checked_before_unpickling(tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"\x80\x02not a checkpoint")
    with pytest.raises(MetricFailure, match="refusing to unpickle"):
        cdpam_metric.load_cdpam_model(bad)


def test_metadata_and_missing_package(monkeypatch):
    info = registry.get("cdpam_distance").info
    assert info.sample_rate_hz == 22_050 and not info.higher_is_better and cdpam_metric.CHECKPOINT_SHA256 in info.citation
    monkeypatch.setattr(cdpam_metric, "cdpam_checkpoint", lambda: None)
    reason = registry.create("cdpam_distance").availability()
    assert reason is not None and "pip install cdpam==0.0.6" in reason


@needs_cdpam
def test_too_short_item_fails_with_reason():
    metric = registry.create("cdpam_distance")
    with pytest.raises(MetricFailure, match="too short"):
        metric.score(np.ones((1, 4000), np.float32), np.ones((1, 4000), np.float32), 48_000)


def test_batch_size_defaults_to_one_item_per_pass_on_cpu():
    """CPU: one item per forward pass (batching 2 pairs of 2 s was 1.25x slower there); a GPU batches 4."""
    assert registry.create("cdpam_distance").batch_size == 1
    assert registry.create("cdpam_distance", device="cuda").batch_size == cdpam_metric.GPU_BATCH_SIZE == 4
    assert registry.create("cdpam_distance", batch_size=3).batch_size == 3
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        registry.create("cdpam_distance", batch_size=0)
    assert registry.create("cdpam_distance", batch_size=2).identity() == registry.create("cdpam_distance").identity()
