"""Discrete S-PRESSO: bitrate arithmetic, codes as code streams, the codec plugin, decoding variability, a run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso import discrete as d
from codecbench.codecs.spresso import qinco2 as q


# -- the paper's arithmetic ------------------------------------------------------------------------------------
def test_paper_points_bitrates_are_computed_from_the_geometry():
    p132, p03, p0096 = d.PAPER_POINTS["1.32"], d.PAPER_POINTS["0.3"], d.PAPER_POINTS["0.096"]
    assert p132.bits_per_frame == 120 and p03.bits_per_frame == 300 and p0096.bits_per_frame == 96
    assert p132.frame_rate_hz == pytest.approx(100 / 9)
    assert p132.bitrate_kbps == pytest.approx(120 * 100 / 9 / 1000)  # 1.333, the paper prints 1.32
    assert p03.bitrate_kbps == pytest.approx(0.3) and p0096.bitrate_kbps == pytest.approx(0.096)
    assert "paper '1.32 kbps'" in p132.describe() and "1.333 kbps" in p132.describe()
    # the first m steps of the 0.3 kbps model: 12 bits per step at 1 Hz; m = 8 is the 0.096 kbps rate
    rates = d.prefix_rates_kbps(1.0, 25, 4096)
    assert rates[0] == pytest.approx(0.012) and rates[7] == pytest.approx(0.096) and rates[-1] == pytest.approx(0.3)
    catalogue = d.SPressoDiscreteCodec()  # no models: the catalogue shows the paper geometry's rates
    assert catalogue.nominal_bitrate_kbps(catalogue.point(paper_kbps="1.32", num_steps=0, seed=0)) == pytest.approx(
        4 / 3)
    assert catalogue.nominal_bitrate_kbps(catalogue.point(paper_kbps="0.3", num_steps=8, seed=0)) == pytest.approx(0.096)
    assert math.isnan(catalogue.nominal_bitrate_kbps(catalogue.point(paper_kbps="0.096", num_steps=9, seed=0)))
    with pytest.raises(ConfigError, match="unknown S-PRESSO paper bitrate label '1.5'; choices"):
        d.paper_point("1.5")


def test_bitstream_rate_comes_from_the_codes():
    """A 5-s clip at t = 9: ceil(500 / 9) = 56 frames x 10 steps x 12 bits / 5 s = 1.344 kbps (last frame padded)."""
    codes = np.random.default_rng(0).integers(0, 4096, size=(56, 10))
    bs = d.codes_to_bitstream(codes, 4096, 100 / 9, 48000, 240000)
    assert len(bs.streams) == 10 and all(s.alphabet_size == 4096 for s in bs.streams)
    assert bs.bitrate_kbps == pytest.approx(56 * 10 * 12 / 5 / 1000)
    assert bs.frame_rate_hz == pytest.approx(100 / 9)
    np.testing.assert_array_equal(d.bitstream_codes(bs), codes)
    one_hz = d.codes_to_bitstream(codes[:5, :8], 4096, 1.0, 48000, 240000)
    assert one_hz.bitrate_kbps == pytest.approx(0.096)
    with pytest.raises(ConfigError, match=r"must be \[Fz, m\]"):
        d.codes_to_bitstream(codes[:, 0], 4096, 1.0, 48000, 240000)


def test_variability_statistics_and_errors():
    calls = []

    def decode(seed: int) -> torch.Tensor:
        calls.append(seed)
        return torch.full((4,), float(seed))

    result = d.decoding_variability(decode, torch.zeros(4), lambda ref, deg: float((deg - ref).abs().mean()), [1, 2, 3])
    assert calls == [1, 2, 3] and result.values == (1.0, 2.0, 3.0)
    assert result.mean == pytest.approx(2.0) and result.std == pytest.approx(1.0) and result.range == 2.0
    with pytest.raises(ConfigError, match="at least 2 distinct seeds"):
        d.decoding_variability(decode, torch.zeros(4), lambda a, b: 0.0, [1, 1])


# -- a tiny random-init model ----------------------------------------------------------------------------------
def make_models(folder: Path, time_pool: int, num_clips: int, seconds: float, codebook_size: int, steps: int):
    """A random-init tiny stage-1 checkpoint (t = ``time_pool``) and a QINCo2 fitted on its z; returns paths."""
    from codecbench.codecs.spresso.config import load_config
    from codecbench.codecs.spresso.data import demo_like_clips
    from codecbench.codecs.spresso.model import build_spresso, load_stage1, save_checkpoint

    config = load_config("tiny", {"latent_encoder.time_pool": time_pool})
    torch.manual_seed(0)
    ckpt = folder / f"stage1_t{time_pool}.pt"
    save_checkpoint(ckpt, "stage1", config, {"spresso": build_spresso(config).state_dict()}, 0)
    model = load_stage1(ckpt)
    clips = torch.from_numpy(np.stack(demo_like_clips(num_clips, seconds, seed=5)))
    with torch.no_grad():
        z = model.encode(clips)
    vectors = z.transpose(1, 2).reshape(-1, z.shape[1])
    config_q = q.QINCo2Config(dim=64, num_steps=steps, codebook_size=codebook_size, embed_dim=16, hidden_dim=16,
                              num_blocks=1, num_candidates=4, beam_size=4)
    quantizer, _ = q.fit_qinco2(vectors, config_q, q.QINCo2TrainConfig(epochs=1, batch_size=64, kmeans_iters=3))
    path = quantizer.save(folder / f"qinco2_t{time_pool}.pt")
    return ckpt, path


@pytest.fixture(scope="module")
def models_132(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("spresso_discrete"), 9, 6, 1.0, 8, 3)


def test_codec_roundtrip_rates_and_seeds(models_132):
    ckpt, qpath = models_132
    codec = d.SPressoDiscreteCodec(models={"1.32": {"checkpoint": str(ckpt), "qinco2": str(qpath)}}, sampler_steps=2,
                                   allow_nonpaper_geometry=True)
    from codecbench.codecs.spresso.data import demo_like_clips

    audio = torch.from_numpy(np.stack(demo_like_clips(2, 0.5, seed=9)))[:, None]
    point = codec.point(paper_kbps="1.32", num_steps=0, seed=0)
    result = codec.roundtrip(audio, 48000, point)
    assert result.decoded.shape == audio.shape
    frames = math.ceil(math.ceil(24000 / 480) / 9)  # 50 AudioAE frames -> 6 z frames
    bs = result.bitstreams[0]
    assert len(bs.streams) == 3 and bs.streams[0].num_frames == frames
    assert bs.bitrate_kbps == pytest.approx(frames * 3 * 3 / 0.5 / 1000)
    assert codec.nominal_bitrate_kbps(point) == pytest.approx(100 / 9 * 3 * 3 / 1000)
    # fewer steps: lower rate from the same model
    low = codec.point(paper_kbps="1.32", num_steps=1, seed=0)
    assert codec.encode(audio, low)[0].bitrate_kbps == pytest.approx(bs.bitrate_kbps / 3)
    # stochastic decoding: same seed -> same audio, another seed -> different audio
    again = codec.decode(result.bitstreams, point)
    other = codec.decode(result.bitstreams, codec.point(paper_kbps="1.32", num_steps=0, seed=1))
    torch.testing.assert_close(again, codec.decode(result.bitstreams, point))
    assert not torch.allclose(again, other)
    assert codec.weights_status().startswith("random-init")


def test_codec_decoding_variability_with_mel_distance(models_132):
    from codecbench.bench.metrics.mel_distance import multiscale_mel_distance
    from codecbench.codecs.spresso.data import demo_like_clips

    ckpt, qpath = models_132
    codec = d.SPressoDiscreteCodec(models={"1.32": {"checkpoint": str(ckpt), "qinco2": str(qpath)}}, sampler_steps=2,
                                   allow_nonpaper_geometry=True)
    audio = torch.from_numpy(demo_like_clips(1, 0.5, seed=2)[0])[None, None]
    bitstreams = codec.encode(audio, codec.point(paper_kbps="1.32", num_steps=0, seed=0))
    result = d.decoding_variability(
        lambda s: codec.decode(bitstreams, codec.point(paper_kbps="1.32", num_steps=0, seed=s)), audio,
        lambda ref, deg: float(multiscale_mel_distance(ref, deg, 48000)[0]), seeds=[0, 1, 2],
    )
    assert len(result.values) == 3 and result.std > 0


def test_codec_option_errors(models_132, tmp_path):
    ckpt, qpath = models_132
    with pytest.raises(ConfigError, match="unknown S-PRESSO paper bitrate label '2'"):
        d.SPressoDiscreteCodec(models={"2": {"checkpoint": str(ckpt), "qinco2": str(qpath)}})
    with pytest.raises(ConfigError, match=r"models.1.32.qinco2: file .*absent.pt does not exist"):
        d.SPressoDiscreteCodec(models={"1.32": {"checkpoint": str(ckpt), "qinco2": str(tmp_path / "absent.pt")}})
    with pytest.raises(ConfigError, match="exactly the keys checkpoint and qinco2"):
        d.SPressoDiscreteCodec(models={"1.32": {"checkpoint": str(ckpt)}})
    codec = d.SPressoDiscreteCodec(models={"0.3": {"checkpoint": str(ckpt), "qinco2": str(qpath)}})
    with pytest.raises(ConfigError, match="time pooling t = 9, but the paper's 0.3 kbps model has t = 100"):
        codec.engine("0.3")
    with pytest.raises(ConfigError, match=r"no model for paper_kbps='0.096'; the option 'models' gives \['0.3'\]"):
        codec.engine("0.096")
    codec = d.SPressoDiscreteCodec(models={"1.32": {"checkpoint": str(ckpt), "qinco2": str(qpath)}}, sampler_steps=2,
                                   allow_nonpaper_geometry=True)
    with pytest.raises(ConfigError, match=r"num_steps 4 is out of range \[1, 3\]"):
        codec.encode(torch.zeros(1, 1, 4800), codec.point(paper_kbps="1.32", num_steps=4, seed=0))
    assert d.SPressoDiscreteCodec().weights_status().startswith("missing:")


@pytest.mark.slow  # trains two tiny QINCo2 models and runs the benchmark runner (~15 s on 2 shared cores)
def test_three_bitrates_through_codecbench_run(models_132, tmp_path):
    from codecbench.bench import api

    ckpt132, q132 = models_132
    ckpt1hz, q1hz = make_models(tmp_path, 100, 40, 2.0, 8, 4)
    data = tmp_path / "data"
    data.mkdir()
    from codecbench.codecs.spresso.data import demo_like_clips

    for i, clip in enumerate(demo_like_clips(2, 2.0, seed=11)):
        sf.write(str(data / f"c{i}.wav"), clip, 48000, subtype="FLOAT")
    models = {"1.32": {"checkpoint": str(ckpt132), "qinco2": str(q132)},
              "0.3": {"checkpoint": str(ckpt1hz), "qinco2": str(q1hz)},
              "0.096": {"checkpoint": str(ckpt1hz), "qinco2": str(q1hz)}}
    raw = {
        "name": "spresso", "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"), "seed": 0,
        "dataset": {"path": str(data), "segment_s": 2.0},
        "codecs": [{"name": "spresso_discrete", "options": {"models": models, "allow_nonpaper_geometry": True},
                    "points": [{"paper_kbps": "1.32", "num_steps": 0, "seed": 0},
                               {"paper_kbps": "0.3", "num_steps": 0, "seed": 0},
                               {"paper_kbps": "0.096", "num_steps": 2, "seed": 0}]}],
        "metrics": ["mel_distance"], "report": False,
    }
    result = api.run(raw, progress=False)
    table = pd.read_parquet(Path(result.run_dir) / "results.parquet")
    rows = table[(table.level == "item") & (table.metric == "mel_distance")]
    assert (rows.status == "ok").all() and len(rows) == 6
    rates = rows.groupby("point").bitrate_kbps.first()
    # 2-s clips: t = 9 -> ceil(200 / 9) = 23 frames x 3 steps x 3 bits; t = 100 -> 2 frames x m x 3 bits
    assert rates["num_steps=0,paper_kbps=1.32,seed=0"] == pytest.approx(23 * 3 * 3 / 2 / 1000)
    assert rates["num_steps=0,paper_kbps=0.3,seed=0"] == pytest.approx(2 * 4 * 3 / 2 / 1000)
    assert rates["num_steps=2,paper_kbps=0.096,seed=0"] == pytest.approx(2 * 2 * 3 / 2 / 1000)
    assert rows.weights.str.startswith("random-init").all()
    # params_count is the point's own model + QINCo2, not a running sum over the points run so far
    counts = table[table.level == "item"].groupby("point").params_count.first()
    assert counts["num_steps=0,paper_kbps=0.3,seed=0"] == counts["num_steps=2,paper_kbps=0.096,seed=0"]
    assert counts["num_steps=0,paper_kbps=1.32,seed=0"] < counts["num_steps=0,paper_kbps=0.3,seed=0"]  # M 3 < 4


def test_point_must_send_its_labels_geometry(models_132, tmp_path):
    """A 1.32-labelled point that sends M = 3 steps of K = 8 (0.1 kbps) is refused with the rate it would measure."""
    ckpt, qpath = models_132
    codec = d.SPressoDiscreteCodec(models={"1.32": {"checkpoint": str(ckpt), "qinco2": str(qpath)}}, sampler_steps=2)
    point = codec.point(paper_kbps="1.32", num_steps=0, seed=0)
    message = (r"point paper_kbps=1.32, num_steps=0: the model sends m = 3 steps of K = 8 \(11.11 Hz x 3 x log2\(8\) "
               r"= 0.1 kbps\), not the paper's 1.32 kbps \(M = 10, K = 4096, 1.333 kbps\); use a QINCo2 with M >= 10")
    with pytest.raises(ConfigError, match=message):
        codec.encode(torch.zeros(1, 1, 4800), point)
    with pytest.raises(ConfigError, match="allow_nonpaper_geometry: true"):
        codec.nominal_bitrate_kbps(point)
    with pytest.raises(ConfigError, match="option allow_nonpaper_geometry: expected true or false, got 'yes'"):
        d.SPressoDiscreteCodec(allow_nonpaper_geometry="yes")
    # a 0.3-kbps-geometry quantiser (M = 25, K = 4096, untrained RQ) under the 0.096 label needs num_steps 8
    from codecbench.codecs.spresso.config import load_config
    from codecbench.codecs.spresso.model import build_spresso, save_checkpoint

    config = load_config("tiny", {"latent_encoder.time_pool": 100})
    ckpt100 = tmp_path / "s1_t100.pt"
    save_checkpoint(ckpt100, "stage1", config, {"spresso": build_spresso(config).state_dict()}, 7)
    q25 = q.QINCo2(q.QINCo2Config(dim=64, num_steps=25, codebook_size=4096, embed_dim=4, hidden_dim=4,
                                  num_blocks=0, num_candidates=2, beam_size=1)).save(tmp_path / "q25.pt")
    codec = d.SPressoDiscreteCodec(models={"0.096": {"checkpoint": str(ckpt100), "qinco2": str(q25)}})
    with pytest.raises(ConfigError, match=r"m = 25 steps of K = 4096 .* = 0.3 kbps\), not the paper's 0.096 kbps .*"
                                          r"set num_steps: 8"):
        codec.nominal_bitrate_kbps(codec.point(paper_kbps="0.096", num_steps=0, seed=0))
    assert codec.nominal_bitrate_kbps(codec.point(paper_kbps="0.096", num_steps=8, seed=0)) == pytest.approx(0.096)
    # a checkpoint with training steps is labelled trained, with both digests (never random-init)
    status = codec.weights_status()
    assert status.startswith("trained here (no published weights); 0.096: stage-1 s1_t100.pt 7 steps sha256 ")
    assert "qinco2 M=25 K=4096 sha256 " in status and "random-init" not in status
    # params_count: the point's own engine
    assert codec.num_parameters() == 0  # nothing run yet
    engine = codec.engine("0.096")
    own = sum(p.numel() for p in engine.model.parameters()) + engine.quantizer.num_parameters()
    assert codec.num_parameters(codec.point(paper_kbps="0.096", num_steps=8, seed=0)) == own


def test_cli_rates_and_errors(capsys, tmp_path):
    from codecbench.bench.cli import main

    assert main(["spresso-quant", "rates"]) == 0
    out = capsys.readouterr().out
    assert "paper '1.32 kbps' = 11.11 Hz x 10 x log2(4096) = 120 bits/frame -> 1.333 kbps" in out
    assert main(["spresso-quant", "fit-qinco2", str(tmp_path / "absent.pt"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    assert "S-PRESSO stage1 checkpoint does not exist" in capsys.readouterr().err
