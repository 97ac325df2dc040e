"""VGGish: front end against independent computations, architecture size and key layout, weights from the weights
directory, availability offline, fad_vggish / kad_vggish at random init against the statistics computed directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codecbench.bench.core.errors import ConfigError, MetricFailure, WeightsNotFoundError
from codecbench.bench.metrics import frechet, registry
from codecbench.bench.metrics.embeddings import EmbeddingCache
from codecbench.bench.metrics.model_metrics import FadVggish, KadVggish
from codecbench.bench.metrics.vggish import VGGish, VggishEmbedder, VggishFrontEnd

# torchvggish's file layout (release v0.1, vggish-10086976.pth): its names, with the TF checkpoint's shapes
# (vggish/conv1/weights (3, 3, 1, 64) ... vggish/fc2/weights (4096, 128)) in PyTorch order
OFFICIAL_SHAPES = {
    "features.0.weight": (64, 1, 3, 3), "features.0.bias": (64,),            # conv1
    "features.3.weight": (128, 64, 3, 3), "features.3.bias": (128,),         # conv2
    "features.6.weight": (256, 128, 3, 3), "features.6.bias": (256,),        # conv3_1
    "features.8.weight": (256, 256, 3, 3), "features.8.bias": (256,),        # conv3_2
    "features.11.weight": (512, 256, 3, 3), "features.11.bias": (512,),      # conv4_1
    "features.13.weight": (512, 512, 3, 3), "features.13.bias": (512,),      # conv4_2
    "embeddings.0.weight": (4096, 12288), "embeddings.0.bias": (4096,),      # fc1_1 (512 x 6 x 4 inputs)
    "embeddings.2.weight": (4096, 4096), "embeddings.2.bias": (4096,),       # fc1_2
    "embeddings.4.weight": (128, 4096), "embeddings.4.bias": (128,),         # fc2 (the embedding)
}


@pytest.fixture(scope="module")
def embedder() -> VggishEmbedder:
    built = VggishEmbedder(random_init=True)
    built.model  # noqa: B018 - build once (72 M parameters)
    return built


# ---- front end ---------------------------------------------------------------------------------------------------

def test_front_end_constants_and_example_counts():
    fe = VggishFrontEnd()
    assert (fe.window_samples, fe.hop_samples, fe.n_fft, fe.example_frames) == (400, 160, 512, 96)
    assert fe.min_samples() == 15_600  # 400 + 95 x 160
    assert fe.n_examples(15_599) == 0 and fe.n_examples(15_600) == 1
    assert fe.n_examples(80_000) == 5  # 5 s at 16 kHz: 498 frames -> 5 examples of 96
    sine = np.sin(2 * np.pi * 1000 * np.arange(0, 3, 1 / 16000))  # the reference smoke test's input
    assert fe.examples(sine).shape == (3, 96, 64)  # its assertion: [num_secs, NUM_FRAMES, NUM_BANDS]
    with pytest.raises(MetricFailure, match="needs at least 15600"):
        fe.examples(np.zeros(15_000))


def test_mel_matrix_against_librosa():
    librosa = pytest.importorskip("librosa")
    ours = VggishFrontEnd().mel_matrix()  # [257, 64]
    # the reference's construction from librosa's HTK conversions: triangles linear in mel, DC bin zeroed
    bins_mel = librosa.hz_to_mel(np.linspace(0, 8000, 257), htk=True)
    edges = librosa.hz_to_mel(librosa.mel_frequencies(66, fmin=125, fmax=7500, htk=True), htk=True)
    expected = np.zeros((257, 64))
    for band in range(64):
        lo, mid, hi = edges[band : band + 3]
        expected[:, band] = np.maximum(0, np.minimum((bins_mel - lo) / (mid - lo), (hi - bins_mel) / (hi - mid)))
    expected[0] = 0.0
    np.testing.assert_allclose(ours, expected, atol=1e-9)
    # librosa's own HTK filters draw the triangles linear in Hz between the same edges: close, not equal
    slaney_free = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=125, fmax=7500, htk=True, norm=None).T
    assert np.abs(ours - slaney_free).max() < 0.01


def test_log_mel_against_torch_stft(rng):
    fe = VggishFrontEnd()
    x = 0.1 * rng.standard_normal(16_000 + 123)
    ours = fe.log_mel(x)
    assert ours.shape == (1 + (16_123 - 400) // 160, 64)  # 99 whole frames
    # torch.stft centres the 400-sample window in its 512-sample frame; 56 zeros each side align the frames
    # (a circular shift inside the frame, which leaves magnitudes unchanged)
    padded = torch.from_numpy(np.pad(x, 56))
    spec = torch.stft(padded, n_fft=512, hop_length=160, win_length=400, center=False, return_complex=True,
                      window=torch.hann_window(400, periodic=True, dtype=torch.float64))
    expected = np.log(spec.abs().numpy().T @ fe.mel_matrix() + 0.01)
    np.testing.assert_allclose(ours, expected, atol=1e-9)


# ---- model -------------------------------------------------------------------------------------------------------

def test_parameter_count_and_key_layout():
    model = VGGish()
    conv = (1 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 512 * 512) * 9 + (64 + 128 + 256 + 256 + 512 + 512)
    fc = 12288 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 128 + 128
    assert conv == 4_499_712 and fc == 67_641_472
    assert sum(p.numel() for p in model.parameters()) == 72_141_184 == conv + fc
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == OFFICIAL_SHAPES


def test_embed_shapes_5s_at_48khz(embedder, rng):
    cache = EmbeddingCache(embedder)
    five_s = (0.1 * rng.standard_normal((1, 5 * 48_000))).astype(np.float32)
    two_s = (0.1 * rng.standard_normal((2, 2 * 48_000))).astype(np.float32)  # stereo: channel mean
    emb = cache.embed([five_s, two_s], 48_000)
    assert [e.shape for e in emb] == [(5, 128), (2, 128)]  # 5 s -> 5 examples of 0.96 s; 2 s -> 2
    again = EmbeddingCache(embedder).embed([five_s], 48_000)[0]  # a fresh cache embeds again
    np.testing.assert_allclose(emb[0], again, atol=1e-5)  # eval mode: deterministic
    with pytest.raises(MetricFailure, match="too short"):
        cache.embed([np.zeros((1, 40_000), np.float32)], 48_000)  # 0.83 s < 0.975 s


def _functional_vggish(state: dict[str, torch.Tensor], examples: torch.Tensor) -> torch.Tensor:
    """VGGish written out with torch.nn.functional on a torchvggish-named state dict: [E, 96, 64] -> [E, 128]."""
    h = examples[:, None]
    for index in (0, 3, 6, 8, 11, 13):
        h = torch.relu(torch.nn.functional.conv2d(h, state[f"features.{index}.weight"], state[f"features.{index}.bias"],
                                                  padding=1))
        if index in (0, 3, 8, 13):
            h = torch.nn.functional.max_pool2d(h, 2)
    h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # TF flattens [E, 6, 4, 512] (NHWC)
    h = torch.relu(torch.nn.functional.linear(h, state["embeddings.0.weight"], state["embeddings.0.bias"]))
    h = torch.relu(torch.nn.functional.linear(h, state["embeddings.2.weight"], state["embeddings.2.bias"]))
    return torch.nn.functional.linear(h, state["embeddings.4.weight"], state["embeddings.4.bias"])


@pytest.mark.slow
def test_weights_from_directory_official_names(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("CODECBENCH_OFFLINE", "1")
    generator = torch.Generator().manual_seed(7)
    state = {k: 0.02 * torch.randn(shape, generator=generator) for k, shape in OFFICIAL_SHAPES.items()}
    folder = tmp_path / "vggish"
    folder.mkdir()
    torch.save(state, folder / "vggish-10086976.pth")
    vectors, means = np.linalg.qr(rng.standard_normal((128, 128)))[0], 0.01 * rng.standard_normal(128)
    torch.save({"pca_eigen_vectors": vectors, "pca_means": means}, folder / "vggish_pca_params-970ea276.pth")

    embedder = VggishEmbedder(weights_dir=str(tmp_path), postprocess=True)
    assert embedder.availability() is None
    assert embedder.weights_status().startswith("pretrained: vggish-10086976.pth sha256:")
    assert "vggish_pca_params-970ea276.pth sha256:" in embedder.weights_status()
    signal = (0.1 * rng.standard_normal(2 * 16_000)).astype(np.float32)
    (quantised,) = embedder.embed_batch([signal])
    examples = torch.from_numpy(embedder.front_end.examples(signal))
    with torch.inference_mode():
        raw = embedder.model.vggish(examples).numpy()
        np.testing.assert_allclose(raw, _functional_vggish(state, examples).numpy(), rtol=1e-4, atol=1e-6)
    # the TF reference's postprocessing in numpy: PCA, clip to [-2, 2], scale to [0, 255], uint8 cast
    pca = np.dot(vectors, raw.T.astype(np.float64) - means.reshape(-1, 1)).T
    expected = ((np.clip(pca, -2.0, 2.0) + 2.0) * (255.0 / 4.0)).astype(np.uint8)
    assert quantised.shape == (2, 128)
    assert np.mean(quantised != expected) < 0.01  # float32 vs float64 at a quantisation step boundary
    assert np.abs(quantised - expected).max() <= 1

    raw_only = VggishEmbedder(weights_dir=str(tmp_path))  # default: no postprocessing, the PCA file not needed
    np.testing.assert_allclose(raw_only.embed_batch([signal])[0], raw, rtol=1e-5, atol=1e-6)

    bad = tmp_path / "bad"
    (bad / "vggish").mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, bad / "vggish" / "vggish-10086976.pth")
    with pytest.raises(ConfigError, match="missing keys .*embeddings.0.weight"):
        VggishEmbedder(weights_dir=str(bad)).model  # noqa: B018


def test_availability_offline_names_file_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("CODECBENCH_OFFLINE", "1")
    embedder = VggishEmbedder(weights_dir=str(tmp_path))
    reason = embedder.availability()
    assert "vggish-10086976.pth" in reason
    assert "github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth" in reason
    assert str(tmp_path / "vggish") in reason
    with pytest.raises(WeightsNotFoundError, match="vggish-10086976.pth"):
        embedder.weights_file.fetch(str(tmp_path))
    (tmp_path / "vggish").mkdir()
    (tmp_path / "vggish" / "vggish-10086976.pth").write_bytes(b"placeholder")
    assert embedder.availability() is None
    assert "vggish_pca_params-970ea276.pth" in VggishEmbedder(weights_dir=str(tmp_path), postprocess=True).availability()
    for name in ("fad_vggish", "kad_vggish"):
        metric = registry.create(name, weights_dir=str(tmp_path / "empty"))
        assert metric.info.needs_weights and metric.info.sample_rate_hz == 16_000
        assert "vggish-10086976.pth" in metric.availability()
    assert VggishEmbedder(random_init=True).availability() is None


# ---- metrics -----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_fad_vggish_equals_frechet_on_the_same_embeddings(rng):
    # 5 items of 33 examples (31.7 s at 16 kHz); references items 0-3, degraded items 1-4: 132 frames per set
    # (N > D = 128), 165 examples embedded in all (shared items are embedded once)
    items = [(0.1 * rng.standard_normal((1, 33 * 15_360 + 240))).astype(np.float32) for _ in range(5)]
    items[4] = np.tanh(4 * items[4])  # a different distribution for one item
    metric = FadVggish(random_init=True, bootstrap_resamples=0)
    value = metric.compute_set(items[:4], items[1:], 16_000)
    embedded = metric.embeddings.embed(items, 16_000)
    assert metric.embeddings.computed == 5
    assert [e.shape for e in embedded] == [(33, 128)] * 5
    ref = frechet.gaussian_stats(np.concatenate(embedded[:4]))
    deg = frechet.gaussian_stats(np.concatenate(embedded[1:]))
    assert value.value == pytest.approx(frechet.frechet_distance(ref.mean, ref.cov, deg.mean, deg.cov), rel=1e-9)
    assert value.value > 0
    assert value.extras["n"] == 132 and value.extras["dims"] == 128
    assert value.extras["embedder"]["weights"] == "random-init (seed 0)"


def test_kad_vggish_runs_on_short_sets(rng):
    refs = [(0.1 * rng.standard_normal((1, 2 * 16_000))).astype(np.float32) for _ in range(2)]
    degs = [np.tanh(4 * r) for r in refs]
    metric = KadVggish(random_init=True, bootstrap_resamples=0)
    value = metric.compute_set(refs, degs, 16_000)
    assert value.extras["n"] == 4 and value.extras["n_reference"] == 4  # 2 s -> 2 examples per item
    same = metric.compute_set(refs, refs, 16_000).value
    assert value.value > same  # identical sets: unbiased MMD^2 near 0
    assert metric.identity()["options"]["postprocess"] is False


def test_reference_smoke_test_with_official_weights():
    """The TF reference's vggish_smoke_test.py figures; runs only where the release files are in the weights dir."""
    embedder = VggishEmbedder(postprocess=True)
    if not (embedder.weights_file.path().is_file() and embedder.pca_file.path().is_file()):
        pytest.skip(f"official VGGish files absent from {embedder.weights_file.path().parent}")
    sine = np.sin(2 * np.pi * 1000 * np.arange(0, 3, 1 / 16000)).astype(np.float32)
    examples = torch.from_numpy(embedder.front_end.examples(sine))
    with torch.inference_mode():
        raw = embedder.model.vggish(examples).numpy()
    np.testing.assert_allclose([raw.mean(), raw.std()], [0.000657, 0.343], rtol=0.1)
    (post,) = embedder.embed_batch([sine])
    np.testing.assert_allclose([post.mean(), post.std()], [126.0, 89.3], rtol=0.1)
