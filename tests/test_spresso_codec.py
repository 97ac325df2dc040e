"""The ``spresso`` codec: a tiny trained checkpoint as a continuous codec, rates from the latents, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs import registry
from codecbench.codecs.spresso.codec import SPressoCodec
from codecbench.codecs.spresso.data import demo_like_clips
from codecbench.codecs.spresso.train import make_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """Same folder as tests/test_spresso_train.py's fixture: trained once per session (stages resume)."""
    previous = torch.get_num_threads()
    path = make_tiny_checkpoint(tmp_path_factory.getbasetemp() / "spresso-tiny", time_pool=4)
    torch.set_num_threads(1)
    yield path
    torch.set_num_threads(previous)


def test_registered_with_paper_points():
    assert registry.get("spresso") is SPressoCodec
    codec = registry.create("spresso")
    assert codec.weights_status() == "random-init (spresso tiny config, seed 0)" and codec.is_random_init
    points = codec.operating_points()
    assert [p["time_pool"] for p in points] == [4, 9, 100]
    assert [codec.frame_rate_hz(p) for p in points] == pytest.approx([25.0, 100 / 9, 1.0])
    assert [codec.compression_ratio(p) for p in points] == pytest.approx([30.0, 67.5, 750.0])
    with pytest.raises(ConfigError, match=r"parameter 'time_pool': 8 is not one of \[4, 9, 100\]"):
        codec.point(time_pool=8, seed=0)


@pytest.mark.slow
def test_trained_checkpoint_roundtrip(tiny_checkpoint):
    codec = registry.create("spresso", checkpoint=str(tiny_checkpoint))
    status = codec.weights_status()
    assert status.startswith("trained tiny checkpoint stage1.pt (t=4, 300 stage-1 steps, sha256 ")
    assert not codec.is_random_init
    (point,) = codec.operating_points()
    assert point.as_dict() == {"seed": 0, "time_pool": 4}
    audio = torch.from_numpy(np.stack(demo_like_clips(2, 5.0, 3)))[:, None]  # [2, 1, 240000] at 48 kHz
    result = codec.roundtrip(audio, 48000, point)
    assert result.decoded.shape == (2, 1, 240000) and torch.isfinite(result.decoded).all()
    stream = result.bitstreams[0]
    assert stream.latents.shape == (64, 125)
    rates = stream.rate_columns()
    assert rates["compression_ratio"] == pytest.approx(30.0) and rates["frame_rate_hz"] == pytest.approx(25.0)
    assert np.isnan(rates["bitrate_kbps"])
    again = codec.roundtrip(audio, 48000, point).decoded
    other_seed = codec.roundtrip(audio, 48000, codec.point(time_pool=4, seed=1)).decoded
    torch.testing.assert_close(again, result.decoded, rtol=0, atol=0)
    assert not torch.allclose(other_seed, result.decoded)
    own = sum(p.numel() for p in codec.model(4).parameters())
    assert codec.num_parameters() == own and codec.num_parameters(point) == own
    with pytest.raises(ConfigError, match=r"no checkpoint for time_pool=9; checkpoints given for time_pool \[4\]"):
        codec.encode(audio, codec.point(time_pool=9, seed=0))


@pytest.mark.slow
def test_option_errors(tiny_checkpoint):
    with pytest.raises(ConfigError, match="either option 'checkpoint' or 'checkpoints', not both"):
        SPressoCodec(checkpoint=str(tiny_checkpoint), checkpoints={4: str(tiny_checkpoint)})
    with pytest.raises(ConfigError, match=r"checkpoints\[9\]: .*stage1.pt was trained with time_pool=4"):
        SPressoCodec(checkpoints={9: str(tiny_checkpoint)})
    with pytest.raises(ConfigError, match=r"is a 'audio_ae' checkpoint, expected 'stage1'"):
        SPressoCodec(checkpoint=str(tiny_checkpoint.parents[1] / "ae" / "audio_ae.pt"))
    with pytest.raises(ConfigError, match="has no options"):
        SPressoCodec(bitrate_kbps=1)
    assert SPressoCodec(checkpoints={"4": str(tiny_checkpoint)}).operating_points()[0]["time_pool"] == 4


def test_real_demo_clips_give_the_paper_frame_counts(shared_data):
    from codecbench.bench.core import audio as audio_ops

    paths = sorted((shared_data / "spresso-demo" / "src").glob("*.wav"))
    if not paths:
        pytest.skip("spresso-demo/src has no WAV files")
    clips = [audio_ops.read(p) for p in paths[:2]]
    assert all(rate == 48000 and x.shape == (1, 240000) for x, rate in clips)
    audio = torch.from_numpy(np.stack([x for x, _ in clips]))  # [2, 1, 240000]
    codec = SPressoCodec(sampler_steps=1)  # random-init tiny: shapes and rates only
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert codec.model(4).encode_latents(audio[:, 0]).shape == (2, 128, 500)
        for time_pool, frames, ratio in ((4, 125, 30.0), (9, 56, 240000 / (64 * 56)), (100, 5, 750.0)):
            (stream, _) = codec.encode(audio, codec.point(time_pool=time_pool, seed=0))
            assert stream.latents.shape == (64, frames)
            assert stream.compression_ratio == pytest.approx(ratio)
        point = codec.point(time_pool=100, seed=0)
        decoded = codec.roundtrip(audio, 48000, point).decoded
    finally:
        torch.set_num_threads(previous)
    assert decoded.shape == (2, 1, 240000)


@pytest.mark.slow
def test_tiny_checkpoint_through_codecbench_run(tiny_checkpoint, tmp_path):
    """A trained stage-1 checkpoint is a continuous codec of the normal runner: rows with its compression ratio."""
    from codecbench.bench import api

    config = {
        "name": "spresso-run", "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
        "dataset": {"path": "builtin:demo", "max_clips": 2},
        "codecs": [{"name": "spresso", "options": {"checkpoint": str(tiny_checkpoint)},
                    "grid": {"time_pool": [4], "seed": [0, 1]}}],
        "metrics": ["mel_distance"], "report": False,
    }
    table = api.run(config, progress=False).table
    items = table[table.level == "item"]
    assert len(items) == 4 and set(items.status) == {"ok"}
    assert set(items.codec_kind) == {"continuous"} and items.bitrate_kbps.isna().all()
    # 5 s -> 500 AE frames -> 125 z frames x 64 dims: 240000 / 8000 = 30x, computed from the latents
    assert items.compression_ratio.tolist() == pytest.approx([30.0] * 4)
    assert items.frame_rate_hz.tolist() == pytest.approx([25.0] * 4)
    assert items.weights.str.startswith("trained").all()
    by_seed = items.groupby("point").value.apply(list)
    assert by_seed["seed=0,time_pool=4"] != by_seed["seed=1,time_pool=4"]  # the decoding seed is in the point


def test_params_count_does_not_add_up_across_operating_points():
    """Random-init models for t = 4, 9, 100: the count after running each point is that point's model's (it used to
    grow 521,587 -> 1,043,174 -> 1,564,761 with the points run)."""
    codec = SPressoCodec()
    audio = torch.zeros(1, 1, 4800)
    counts = []
    for t in (4, 9, 100):
        point = codec.point(time_pool=t, seed=0)
        codec.encode(audio, point)
        counts.append(codec.num_parameters())
        assert counts[-1] == sum(p.numel() for p in codec.model(t).parameters()) == codec.num_parameters(point)
    assert max(counts) < 1.5 * min(counts), counts
