"""Config validation: every error names the key, the problem and the valid choices."""

from __future__ import annotations

import pytest
from codecbench.bench import config
from codecbench.bench.core.errors import ConfigError
from toy_codecs import register_all

register_all()


def base(**overrides):
    raw = {"name": "t", "dataset": {"path": "builtin:demo"}, "codecs": [{"name": "toy_quant", "grid": {"bits": [4, 8]}}],
           "metrics": ["si_sdr"]}
    raw.update(overrides)
    return raw


def test_grid_expands_to_points_in_order():
    cfg = config.parse(base())
    assert [p.label for p in cfg.codecs[0].points] == ["bits=4", "bits=8"]
    assert cfg.dataset.sample_rate_hz == 48_000 and cfg.dataset.segment_s == 5.0


def test_unknown_top_level_key_suggests_closest():
    raw = base()
    raw["datset"] = raw.pop("dataset")
    with pytest.raises(ConfigError, match=r"unknown key 'datset'. Did you mean 'dataset'\?"):
        config.parse(raw)


def test_unknown_codec_suggests_closest_match():
    with pytest.raises(ConfigError, match=r"codecs\[0\].name: unknown codec 'toy_qaunt'. Did you mean 'toy_quant'\?"):
        config.parse(base(codecs=[{"name": "toy_qaunt"}]))


def test_parameter_out_of_range_names_codec_and_parameter():
    with pytest.raises(ConfigError, match=r"codecs\[0\].*'toy_quant' parameter 'bits': 40 is out of range \[2, 16\]"):
        config.parse(base(codecs=[{"name": "toy_quant", "grid": {"bits": [4, 40]}}]))


def test_unknown_grid_parameter_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"codecs\[0\].grid: unknown key 'bitz'. Did you mean 'bits'\?"):
        config.parse(base(codecs=[{"name": "toy_quant", "grid": {"bitz": [4]}}]))


def test_unknown_metric_named():
    with pytest.raises(ConfigError, match=r"metrics\[0\].name: unknown metric 'si_sdrr'. Did you mean 'si_sdr'\?"):
        config.parse(base(metrics=["si_sdrr"]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seed": "x"}, r"seed: expected an integer, got 'x'"),
        ({"batch_size": 0}, r"batch_size: must be in \[1, 4096\], got 0"),
        ({"device": "tpu"}, r"device: 'tpu' is not one of cpu, cuda, auto"),
        ({"dataset": {"path": "x", "channels": 6}}, r"dataset.channels: 1 \(mono\) or 2 \(stereo\), got 6"),
        ({"dataset": {"sample_rate_hz": 48000}}, r"dataset: missing key 'path'"),
        ({"executor": {"name": "slurmm"}}, r"executor.name: unknown executor 'slurmm'"),
        ({"name": "../escape"}, r"name: '../escape' must be a plain folder name"),
    ],
)
def test_bad_values_name_their_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.parse(base(**overrides))


def test_load_reports_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)


def test_demo_config_is_valid():
    from codecbench.bench.demo_set import DEMO_CONFIG

    cfg = config.load(DEMO_CONFIG)
    assert {c.name for c in cfg.codecs} >= {"opus", "mp3", "reference", "lowpass_3k5", "lowpass_7k"}
