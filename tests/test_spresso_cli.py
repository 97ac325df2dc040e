"""``codecbench spresso ...``: info on the paper config, a short training run from the command line, errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from codecbench.bench.cli import main
from codecbench.codecs.spresso.data import demo_like_clips


def test_info_prints_paper_parameter_counts(capsys):
    assert main(["spresso", "info", "paper", "--set", "latent_encoder.time_pool=100"]) == 0
    out = capsys.readouterr().out
    assert "dit_base" in out and "231,667,328" in out
    assert "z: 64 dims at 1 Hz -> compression 750x" in out


def test_bad_override_is_a_one_line_error(capsys):
    assert main(["spresso", "info", "tiny", "--set", "dit.widht=3"]) == 2
    assert "dit.widht: unknown key" in capsys.readouterr().err


@pytest.mark.slow
def test_train_ae_from_a_folder_then_mismatch(tmp_path, capsys):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, clip in enumerate(demo_like_clips(2, 1.0, 9, sample_rate_hz=44100)):  # resampled to 48 kHz
            sf.write(tmp_path / f"clip{i}.wav", clip, 44100)
        args = ["spresso", "train-ae", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "ae"), "--steps", "2",
                "--no-progress", "--set", "train_ae.log_every_steps=1"]
        assert main(args) == 0
        assert (tmp_path / "ae" / "audio_ae.pt").is_file()
        assert len((tmp_path / "ae" / "losses.csv").read_text().strip().splitlines()) == 3  # header + 2 steps
        assert main([*args, "--set", "audio_ae.width=48"]) == 2
        err = capsys.readouterr().err
        assert "checkpoint does not match the config: audio_ae.width: checkpoint 32 vs config 48" in err
        assert main(["spresso", "train-ae", "tiny", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
        assert "training data folder does not exist" in capsys.readouterr().err
    finally:
        torch.set_num_threads(previous)
    assert np.isfinite(float(np.loadtxt(tmp_path / "ae" / "losses.csv", delimiter=",", skiprows=1, usecols=1)[-1]))


def test_prepare_data_command_and_its_errors(tmp_path, capsys):
    import numpy as np
    import soundfile as sf
    from codecbench.bench.cli import main

    src = tmp_path / "src"
    src.mkdir()
    sf.write(str(src / "x.wav"), np.zeros((22050, 2), np.float32), 22050)
    assert main(["spresso", "prepare-data", str(src), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "1 files, 0.000 h at 48 kHz mono" in capsys.readouterr().out
    assert sf.info(str(tmp_path / "out" / "x.wav")).samplerate == 48000
    assert sf.info(str(tmp_path / "out" / "x.wav")).frames == 48000
    assert main(["spresso", "prepare-data", str(tmp_path / "absent"), "--out", str(tmp_path / "o2")]) == 2
    assert "absent: S-PRESSO data folder does not exist" in capsys.readouterr().err
