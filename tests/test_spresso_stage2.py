"""S-PRESSO stage 2: whole-clip loading, cached z extraction, frame split, QINCo2 fit with its MSE-per-m report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso import qinco2 as q
from codecbench.codecs.spresso import stage2


def random_init_stage1(path, time_pool: int = 9):
    """A random-init tiny stage-1 checkpoint file (labelled random-init in every result)."""
    from codecbench.codecs.spresso.config import load_config
    from codecbench.codecs.spresso.model import build_spresso, save_checkpoint

    config = load_config("tiny", {"latent_encoder.time_pool": time_pool})
    torch.manual_seed(0)
    save_checkpoint(path, "stage1", config, {"spresso": build_spresso(config).state_dict()}, 0)
    return path


def clips(n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    from codecbench.codecs.spresso.data import demo_like_clips

    return demo_like_clips(n, seconds, seed)


def test_load_clips_resamples_and_downmixes(tmp_path):
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((44100, 2)).astype(np.float32) * 0.1
    sf.write(str(tmp_path / "a.wav"), stereo, 44100, subtype="FLOAT")
    sf.write(str(tmp_path / "b.flac"), stereo[:4800, 0], 48000)
    loaded = stage2.load_clips(tmp_path)
    assert [c.name for c in loaded] == ["a.wav", "b.flac"]
    assert loaded[0].audio.shape == (48000,) and loaded[1].audio.shape == (4800,)
    with pytest.raises(ConfigError, match="absent: S-PRESSO data folder does not exist"):
        stage2.load_clips(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no audio files"):
        stage2.load_clips(tmp_path / "empty")


def test_iter_clips_reads_one_file_at_a_time(tmp_path, monkeypatch):
    """fit_stage2 streams the corpus: the next clip is read only when the previous one has been taken."""
    for i, clip in enumerate(clips(3, 0.2)):
        sf.write(str(tmp_path / f"c{i}.wav"), clip, 48000, subtype="FLOAT")
    reads = []
    real_read = stage2.audio_ops.read
    monkeypatch.setattr(stage2.audio_ops, "read", lambda path: reads.append(path) or real_read(path))
    stream = stage2.iter_clips(tmp_path)
    assert stage2.clip_count(tmp_path) == 3 and reads == []
    first = next(stream)
    assert first.name == "c0.wav" and len(reads) == 1
    assert [c.name for c in stage2.iter_clips(tmp_path, [2])] == ["c2.wav"] and len(reads) == 2
    seconds = []
    from codecbench.codecs.spresso.model import load_stage1

    model = load_stage1(random_init_stage1(tmp_path / "s1.pt"))
    z = stage2.extract_latents(model, stream, "x", None, seconds=seconds)  # the 2 clips left
    assert len(z) == 2 and seconds == pytest.approx([0.2, 0.2]) and len(reads) == 4


def test_extract_latents_shapes_and_cache(tmp_path):
    from codecbench.codecs.spresso.model import load_stage1

    model = load_stage1(random_init_stage1(tmp_path / "s1.pt"))
    data = [stage2.Clip("x", c) for c in clips(2, 1.0)]
    first = stage2.extract_latents(model, data, "digest", tmp_path / "cache")
    assert [z.shape for z in first] == [(12, 64), (12, 64)]  # ceil(100 / 9) frames of 64 dims
    with torch.no_grad():
        direct = model.encode(torch.from_numpy(data[0].audio)[None])[0].T.numpy()
    np.testing.assert_allclose(first[0], direct, atol=1e-6)

    def fail(_audio):
        raise AssertionError("cache miss: encoded again")

    model.encode = fail
    again = stage2.extract_latents(model, data, "digest", tmp_path / "cache")
    np.testing.assert_array_equal(again[1], first[1])
    with pytest.raises(AssertionError, match="cache miss"):  # another checkpoint digest is another key
        stage2.extract_latents(model, data, "other-digest", tmp_path / "cache")


def test_split_frames_sizes_and_errors():
    latents = [np.arange(20, dtype=np.float32).reshape(10, 2), np.zeros((10, 2), np.float32)]
    train, val = stage2.split_frames(latents, 0.25, seed=0)
    assert train.shape == (10, 2) and val.shape == (10, 2)  # whole clips: clip-disjoint
    first = {tuple(r) for r in latents[0]}
    assert {tuple(r) for r in train} <= first or not ({tuple(r) for r in train} & first)
    with pytest.raises(ConfigError, match="needs at least 2 clips, got 1"):
        stage2.split_frames(latents[:1], 0.25, seed=0)
    with pytest.raises(ConfigError, match=r"val_fraction must be in \(0, 1\), got 1.0"):
        stage2.split_frames(latents, 1.0, seed=0)


@pytest.mark.slow  # encodes 16 clips and fits a tiny QINCo2 (~6 s on 2 shared cores)
def test_fit_stage2_writes_quantizer_and_report(tmp_path):
    ckpt = random_init_stage1(tmp_path / "s1.pt")
    config = q.QINCo2Config(dim=64, num_steps=3, codebook_size=8, embed_dim=16, hidden_dim=16, num_blocks=1,
                            num_candidates=4, beam_size=4)
    train = q.QINCo2TrainConfig(epochs=3, batch_size=32, kmeans_iters=5, lr=2e-3)
    report = stage2.fit_stage2(ckpt, clips(16, 1.0), tmp_path / "out", config, train, cache_dir=tmp_path / "cache")
    assert report.train_vectors + report.val_vectors == 16 * 12
    assert report.bitrate_kbps_per_step == pytest.approx([100 / 9 * m * 3 / 1000 for m in (1, 2, 3)])
    mse = report.qinco2_mse_per_step
    assert all(a > b for a, b in zip(mse, mse[1:])), mse
    assert mse[-1] < report.z_variance  # quantising beats sending the mean
    quantizer, meta = q.QINCo2.load_with_metadata(tmp_path / "out" / "qinco2.pt")
    assert meta["frame_rate_hz"] == pytest.approx(100 / 9) and meta["time_pool"] == 9
    assert meta["bits_per_frame"] == 9.0 and len(meta["stage1_sha256"]) == 64
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["qinco2_mse_per_step"] == pytest.approx(mse)
    assert np.load(tmp_path / "out" / "z_val.npy").shape == (report.val_vectors, 64)
    text = stage2.format_report(report)
    assert "QINCo2/RQ" in text and len(text.splitlines()) == 6 and report.note in text
    assert all(qm <= rm for qm, rm in zip(report.qinco2_mse_per_step[-1:], report.rq_mse_per_step[-1:]))
    card = (tmp_path / "out" / "MODEL_CARD.md").read_text()
    assert f"kept: **{report.selected}**" in card and "held-out frames" in card and meta["selected"] == report.selected
    assert (tmp_path / "out" / "qinco2_resume.pt").is_file()
    # rates measured from the codes of the clips: 12 frames per 1-s clip x m x 3 bits (padded frame included)
    assert report.measured_kbps_per_step == pytest.approx([12 * m * 3 / 1000 for m in (1, 2, 3)])


def test_fit_stage2_refuses_more_codewords_than_frames(tmp_path):
    ckpt = random_init_stage1(tmp_path / "s1.pt")
    config = q.QINCo2Config(dim=64, num_steps=2, codebook_size=4096)
    with pytest.raises(ConfigError, match="training frames is fewer than K = 4096 codewords"):
        stage2.fit_stage2(ckpt, clips(2, 1.0), tmp_path / "out", config)
    with pytest.raises(ConfigError, match="QINCo2 dim 32 does not match the checkpoint's z dim 64"):
        stage2.fit_stage2(ckpt, clips(2, 1.0), tmp_path / "out", q.QINCo2Config(dim=32, num_steps=2, codebook_size=4))
