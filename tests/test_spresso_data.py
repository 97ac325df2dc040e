"""Training crops: resampling to 48 kHz, text sidecars, reproducibility per (seed, step), errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso.data import ClipSource, demo_like_clips


def test_folder_crops_text_and_determinism(tmp_path):
    clips = demo_like_clips(2, 1.0, 4, sample_rate_hz=44100)
    sf.write(tmp_path / "a.wav", clips[0], 44100)
    sf.write(tmp_path / "b.flac", np.stack([clips[1], clips[1]], axis=1), 48000)  # stereo, native rate
    np.save(tmp_path / "a.text.npy", np.full((1, 16), 0.5, dtype=np.float32))
    source = ClipSource.from_folder(tmp_path)
    assert len(source) == 2
    batch = source.batch(6, 24000, seed=0, step=3)
    assert batch.audio.shape == (6, 24000) and batch.text.shape == (6, 1, 16)
    for row in range(6):  # a.wav carries the text; b.flac does not
        assert bool(batch.has_text[row]) == bool(batch.text[row].abs().sum() > 0)
    assert batch.has_text.any() and not batch.has_text.all()
    again = source.batch(6, 24000, seed=0, step=3)
    assert np.array_equal(again.audio.numpy(), batch.audio.numpy())
    assert not np.array_equal(source.batch(6, 24000, seed=0, step=4).audio.numpy(), batch.audio.numpy())


def test_short_clip_is_zero_padded():
    source = ClipSource.from_arrays([np.ones(1000, dtype=np.float32)])
    batch = source.batch(1, 2000, seed=0, step=0)
    assert batch.audio[0, :1000].eq(1).all() and batch.audio[0, 1000:].eq(0).all() and batch.text is None


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"nope: training data folder does not exist"):
        ClipSource.from_folder(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"no audio files"):
        ClipSource.from_folder(tmp_path)
