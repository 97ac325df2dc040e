"""S-PRESSO configuration: presets, overrides, and errors naming the file and key."""

from __future__ import annotations

import pytest
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso.config import config_differences, load_config


def test_presets_share_the_paper_geometry():
    tiny, paper = load_config("tiny"), load_config("paper")
    for config in (tiny, paper):
        assert (config.audio_ae.sample_rate_hz, config.audio_ae.n_fft, config.audio_ae.hop) == (48000, 960, 480)
        assert config.audio_ae.latent_dim == 128 and config.latent_encoder.channel_cut == 2
        assert config.stage1.text_dropout == 0.9
    assert (paper.dit.width, paper.dit.depth, paper.dit.heads) == (1024, 12, 8)
    assert paper.diffusion.kind == "edm" and paper.lora.targets == ("qkv", "proj", "fc1", "fc2")
    assert tiny.dit.width < paper.dit.width


def test_override_and_differences():
    config = load_config("tiny", {"latent_encoder.time_pool": 100})
    assert config.latent_encoder.time_pool == 100
    diffs = config_differences(load_config("tiny").to_dict(), config.to_dict(), ("latent_encoder", "dit"))
    assert diffs == ["latent_encoder.time_pool: checkpoint 9 vs config 100"]


def test_unknown_key_names_file_and_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dit:\n  widht: 64\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: dit.widht: unknown key; valid keys: .*width"):
        load_config(path)


def test_wrong_type_and_bad_choice(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dit:\n  depth: deep\n")
    with pytest.raises(ConfigError, match=r"dit.depth: expected int, got 'deep'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"diffusion.kind 'ddpm' is not one of edm, rectified_flow"):
        load_config("tiny", {"diffusion.kind": "ddpm"})
    with pytest.raises(ConfigError, match=r"stage1.text_dropout must be in \[0, 1\]"):
        load_config("tiny", {"stage1.text_dropout": 1.5})
    with pytest.raises(ConfigError, match=r"missing.yaml: config file does not exist \(or give a preset: tiny, paper\)"):
        load_config(tmp_path / "missing.yaml")
