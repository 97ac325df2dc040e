"""The GPU-scale training loop on CPU: torchrun DDP on gloo = one process with the same effective batch, bf16
autocast, EMA export, trainable-only resume checkpoints with rotation, validation logs, streaming batches from a
folder of mixed-rate files, prepare-data, learning-rate schedule."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from codecbench.bench.core import audio as audio_ops
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso import loop
from codecbench.codecs.spresso.audio_ae import AudioAE
from codecbench.codecs.spresso.config import load_config
from codecbench.codecs.spresso.data import ClipSource, demo_like_clips, prepare_data, stream_batches
from codecbench.codecs.spresso.dit import DiT
from codecbench.codecs.spresso.model import save_checkpoint
from codecbench.codecs.spresso.train import pretrain_dit, run_stage, stage1_stage, train_audio_ae

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def frozen_parts(tmp_path_factory):
    """Random-init tiny AudioAE and DiT checkpoints and a folder of 4 demo clips (48 kHz)."""
    root = tmp_path_factory.mktemp("loop")
    config = load_config("tiny")
    torch.manual_seed(0)
    save_checkpoint(root / "audio_ae.pt", "audio_ae", config, {"ae": AudioAE(config.audio_ae).state_dict()}, 0)
    save_checkpoint(root / "dit.pt", "dit", config, {"dit": DiT(config.dit).state_dict()}, 0)
    data = root / "data"
    data.mkdir()
    for i, clip in enumerate(demo_like_clips(4, 1.0, seed=3)):
        sf.write(str(data / f"c{i}.wav"), clip, 48000, subtype="FLOAT")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


DIT_OVERRIDES = {"pretrain_dit.batch_size": 4, "pretrain_dit.segment_s": 0.5, "pretrain_dit.log_every_steps": 1,
                 "pretrain_dit.warmup_steps": 1, "pretrain_dit.lr": 1e-3}


@pytest.mark.slow  # two torchrun processes (9.5 s under load)
def test_ddp_two_gloo_ranks_follow_one_process_with_the_same_effective_batch(frozen_parts, tmp_path):
    root = frozen_parts
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from codecbench.codecs.spresso.config import load_config
        from codecbench.codecs.spresso.train import pretrain_dit
        config = load_config("tiny", {DIT_OVERRIDES!r})
        pretrain_dit(config, {str(root / 'data')!r}, {str(tmp_path / 'ddp')!r}, {str(root / 'audio_ae.pt')!r},
                     steps=3, progress=False)
    """))
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    config = load_config("tiny", {**DIT_OVERRIDES, "pretrain_dit.grad_accum_steps": 2})
    single = pretrain_dit(config, root / "data", tmp_path / "one", root / "audio_ae.pt", steps=3, progress=False)
    ddp_losses = [float(r["loss"]) for r in _rows(tmp_path / "ddp" / "losses.csv")]
    one_losses = [float(r["loss"]) for r in _rows(tmp_path / "one" / "losses.csv")]
    assert len(ddp_losses) == 3 and ddp_losses == pytest.approx(one_losses, rel=1e-4)
    assert ddp_losses[0] != ddp_losses[-1]  # it trained
    a = torch.load(single, weights_only=False)["model"]["dit"]
    b = torch.load(tmp_path / "ddp" / "dit.pt", weights_only=False)["model"]["dit"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)


def test_grad_accumulation_refused_when_the_batch_does_not_split():
    with pytest.raises(ConfigError, match="pretrain_dit.batch_size 4 is not a multiple of grad_accum_steps 3"):
        load_config("tiny", {**DIT_OVERRIDES, "pretrain_dit.grad_accum_steps": 3})
    with pytest.raises(ConfigError, match="stage1.precision 'fp16' is not one of fp32, bf16"):
        load_config("tiny", {"stage1.precision": "fp16"})


def test_bf16_autocast_on_cpu_keeps_fp32_master_weights(frozen_parts, tmp_path):
    root = frozen_parts
    layer = torch.nn.Linear(4, 4)
    with loop.autocast("bf16", "cpu"):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with loop.autocast("fp32", "cpu"):
        assert layer(torch.randn(2, 4)).dtype == torch.float32
    losses = {}
    for precision in ("fp32", "bf16"):
        config = load_config("tiny", {**DIT_OVERRIDES, "pretrain_dit.precision": precision})
        path = pretrain_dit(config, root / "data", tmp_path / precision, root / "audio_ae.pt", steps=2, progress=False)
        state = torch.load(path, weights_only=False)["model"]["dit"]
        assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
        losses[precision] = [float(r["loss"]) for r in _rows(tmp_path / precision / "losses.csv")]
    assert all(np.isfinite(losses["bf16"]))
    assert losses["bf16"] != losses["fp32"] and losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_ema_hand_values_swap_and_export(frozen_parts, tmp_path):
    p = torch.nn.Parameter(torch.zeros(3))
    ema = loop.EMA([p], decay=0.9)
    with torch.no_grad():
        p.fill_(1.0)
    ema.update()
    torch.testing.assert_close(ema.shadow[0], torch.full((3,), 0.1))
    with ema.swapped():
        torch.testing.assert_close(p.detach(), torch.full((3,), 0.1))
    torch.testing.assert_close(p.detach(), torch.ones(3))
    with pytest.raises(ConfigError, match=r"EMA decay must be in \(0, 1\)"):
        loop.EMA([p], 1.0)
    # the exported dit.pt holds the EMA weights; the resume checkpoint the trained ones
    root = frozen_parts
    config = load_config("tiny", {**DIT_OVERRIDES, "pretrain_dit.ema_decay": 0.5})
    exported = torch.load(pretrain_dit(config, root / "data", tmp_path / "ema", root / "audio_ae.pt", steps=3,
                                       progress=False), weights_only=False)
    resume = torch.load(tmp_path / "ema" / "checkpoint.pt", weights_only=False)
    shadow = resume["optimizers"]["__ema__"]["shadow"]
    names = [n for n, _ in DiT(config.dit).named_parameters()]
    assert exported["extra"]["ema_decay"] == 0.5
    changed = 0
    for name, value in zip(names, shadow):
        torch.testing.assert_close(exported["model"]["dit"][name], value)
        changed += not torch.equal(resume["model"]["dit"][name], value)
    assert changed > 0  # trained weights and their average differ


def test_trainable_only_checkpoints_resume_rotate_and_check_the_frozen_hash(frozen_parts, tmp_path):
    root = frozen_parts
    overrides = {"stage1.batch_size": 2, "stage1.segment_s": 0.5, "stage1.checkpoint_every_steps": 1,
                 "stage1.log_every_steps": 1, "stage1.keep_checkpoints": 2, "stage1.lr_schedule": "cosine"}
    config = load_config("tiny", overrides)
    data = ClipSource.from_folder(root / "data")
    out = tmp_path / "s1"
    run_stage(stage1_stage(config, data, root / "audio_ae.pt", root / "dit.pt"), config, data, out, steps=3,
              progress=False)
    latest = torch.load(out / "checkpoint.pt", weights_only=False)
    keys = latest["model"]["spresso"].keys()
    assert not any(k.startswith("ae.") and k.endswith("weight") for k in keys)  # frozen AudioAE left out
    assert any("lora" in k for k in keys) and any(k.startswith("g_psi.") for k in keys)
    assert len(latest["extra"]["frozen_sha256"]["spresso"]) == 64
    assert sorted(p.name for p in out.glob("checkpoint-*.pt")) == ["checkpoint-000000002.pt"]  # keep 2 in all
    full = torch.load(out / "stage1.pt", weights_only=False)["model"]["spresso"]
    assert len(full) > len(keys)  # the export is the whole model
    # resume to 4 steps from the trainable-only checkpoint works (a save cut short by a kill is cleaned up);
    # other frozen weights are refused
    (out / ".checkpoint.pt.123.tmp").write_bytes(b"cut short")
    run_stage(stage1_stage(config, data, root / "audio_ae.pt", root / "dit.pt"), config, data, out, steps=4,
              progress=False)
    assert [int(r["step"]) for r in _rows(out / "losses.csv")] == [1, 2, 3, 4]
    assert not list(out.glob(".*.tmp"))
    torch.manual_seed(5)
    other_ae = tmp_path / "other_ae.pt"
    save_checkpoint(other_ae, "audio_ae", config, {"ae": AudioAE(config.audio_ae).state_dict()}, 0)
    with pytest.raises(ConfigError, match=r"^\S*checkpoint.pt: the frozen weights .* differ from those this checkpoint was trained with"):
        run_stage(stage1_stage(config, data, other_ae, root / "dit.pt"), config, data, out, steps=5, progress=False)


def test_validation_writes_loss_and_mel_distance(frozen_parts, tmp_path):
    root = frozen_parts
    config = load_config("tiny", {"train_ae.batch_size": 2, "train_ae.segment_s": 0.25, "train_ae.val_every_steps": 2,
                                  "train_ae.val_batches": 1, "train_ae.log_every_steps": 1})
    val = ClipSource.from_arrays(demo_like_clips(2, 1.0, seed=77))
    train_audio_ae(config, root / "data", tmp_path / "ae", steps=4, progress=False, val_data=val)
    rows = _rows(tmp_path / "ae" / "val.csv")
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(float(r["val_mel_distance"]) > 0 and np.isfinite(float(r["val_loss"])) for r in rows)
    card = (tmp_path / "ae" / "MODEL_CARD.md").read_text()
    assert "- steps: 4 of batch 2" in card and "held out: 2 clips" in card and "val_mel_distance" in card
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:  # tensorboard not installed: CSV only, and the log says so
        assert not loop.ScalarLog(tmp_path, enabled=True).available
        return
    events = EventAccumulator(str(tmp_path / "ae" / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/loss", "val/mel_distance"} <= set(events.Tags()["scalars"])
    val_mel = [(e.step, e.value) for e in events.Scalars("val/mel_distance")]
    assert val_mel == [(int(r["step"]), pytest.approx(float(r["val_mel_distance"]), rel=1e-5)) for r in rows]


def test_learning_rate_warmup_then_cosine_hand_values():
    lr = lambda step, schedule="cosine": loop.learning_rate(1.0, step, 11, 1, schedule, 0.1)  # noqa: E731
    assert lr(0) == pytest.approx(1.0)  # warm-up of 1 step ends at the peak
    assert lr(6) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert lr(11) == pytest.approx(0.1) and lr(50) == pytest.approx(0.1)
    assert lr(6, "constant") == 1.0
    assert loop.learning_rate(2.0, 0, 10, 4, "cosine", 0.0) == pytest.approx(0.5)


def _mixed_folder(folder: Path) -> list[np.ndarray]:
    """Clips at 48 kHz (mono), 44.1 kHz (stereo) and 16 kHz, 1.5 s each; returns the 48 kHz versions [T]."""
    folder.mkdir()
    clips = demo_like_clips(3, 1.5, seed=21)
    out = []
    for clip, rate, name, channels in ((clips[0], 48000, "a.wav", 1), (clips[1], 44100, "b.flac", 2),
                                       (clips[2], 16000, "c.wav", 1)):
        native = audio_ops.resample(torch.from_numpy(clip), 48000, rate).numpy()
        data = np.stack([native] * channels, axis=1) if channels == 2 else native
        sf.write(str(folder / name), data, rate, subtype="FLOAT" if name.endswith(".wav") else "PCM_24")
        read, _ = audio_ops.read(folder / name)
        out.append(audio_ops.resample(torch.from_numpy(read.mean(axis=0)), rate, 48000).numpy())
    return out


def test_streaming_loader_on_a_folder_of_mixed_rate_files(tmp_path):
    whole = _mixed_folder(tmp_path / "mixed")
    source = ClipSource.from_folder(tmp_path / "mixed")
    assert sorted(rate for _, _, rate in source.items) == [16000, 44100, 48000]
    # a crop of a non-48 kHz file is read from its span only and equals the whole-file resampling (inside)
    for index in range(3):
        crop = source._read(index, 0.4, 24000)
        start = int(0.4 * 48000)
        reference = whole[index][start : start + 24000]
        assert crop.shape == (24000,) and np.abs(crop[200:-200] - reference[200:-200]).max() < 2e-3
    # workers hand out every step once, in order, equal to reading in the loop; rows = one rank's share
    direct = [source.batch(4, 12000, 3, step) for step in range(2, 7)]
    streamed = list(stream_batches(source, 4, 12000, 3, 2, 7, num_workers=2))
    assert [s for s, _ in streamed] == [2, 3, 4, 5, 6]
    for (_, got), want in zip(streamed, direct):
        torch.testing.assert_close(got.audio, want.audio)
    half = source.batch(4, 12000, 3, 2, rows=slice(2, 4))
    torch.testing.assert_close(half.audio, direct[0].audio[2:4])


def test_prepare_data_writes_48khz_files_and_a_manifest(tmp_path):
    whole = _mixed_folder(tmp_path / "mixed")
    np.save(tmp_path / "mixed" / "b.text.npy", np.ones((2, 3), np.float32))
    manifest = prepare_data(tmp_path / "mixed", tmp_path / "prepared")
    assert [e["name"] for e in manifest["files"]] == ["a.wav", "b.wav", "c.wav"]
    assert [e["source_rate_hz"] for e in manifest["files"]] == [48000, 44100, 16000]
    for name, reference in zip(("a.wav", "b.wav", "c.wav"), whole):
        data, rate = sf.read(str(tmp_path / "prepared" / name), dtype="float32")
        assert rate == 48000 and data.ndim == 1 and np.abs(data - reference).max() < 1e-6
    assert (tmp_path / "prepared" / "b.text.npy").is_file()
    prepared = ClipSource.from_folder(tmp_path / "prepared")
    assert {rate for _, _, rate in prepared.items} == {48000} and prepared.texts[1] is not None
    again = prepare_data(tmp_path / "mixed", tmp_path / "prepared")  # rerun: files kept, same manifest
    assert again == manifest
    with pytest.raises(ConfigError, match="x0: S-PRESSO data folder does not exist"):
        prepare_data(tmp_path / "x0", tmp_path / "x1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no audio files"):
        prepare_data(tmp_path / "empty", tmp_path / "x1")


def test_streaming_from_prepared_shards_reads_only_crops(tmp_path, monkeypatch):
    """prepare-data on mixed-rate files, then the stream: every read is one crop's span (never a whole file, no
    decode+resample), the source sent to workers holds no audio or text arrays, workers give the same batches."""
    import pickle

    from codecbench.codecs.spresso import data as data_module

    _mixed_folder(tmp_path / "mixed")
    np.save(tmp_path / "mixed" / "b.text.npy", np.ones((77, 512), np.float32))  # 158 KB of text embedding
    prepare_data(tmp_path / "mixed", tmp_path / "prepared")
    source = ClipSource.from_folder(tmp_path / "prepared")
    assert source.arrays is None and len(pickle.dumps(source)) < 20_000  # names, lengths, rates, text paths only
    direct = [source.batch(4, 12000, 3, step) for step in range(5)]
    reads = []
    real_read = data_module.sf.read

    def counting_read(path, *args, frames=-1, **kwargs):
        reads.append(frames)
        return real_read(path, *args, frames=frames, **kwargs)

    def no_whole_decode(*args, **kwargs):
        raise AssertionError("a prepared 48 kHz file was decoded whole")

    monkeypatch.setattr(data_module.sf, "read", counting_read)
    monkeypatch.setattr(data_module.audio_ops, "read", no_whole_decode)
    streamed = list(stream_batches(source, 4, 12000, 3, 0, 5))
    assert len(reads) == 5 * 4 and all(0 < frames <= 12000 for frames in reads)  # one crop per row, no more
    for (_, got), want in zip(streamed, direct):
        torch.testing.assert_close(got.audio, want.audio)
        torch.testing.assert_close(got.text, want.text)
        assert got.has_text.tolist() == want.has_text.tolist()
    assert any(b.has_text.any() for _, b in streamed)
    monkeypatch.undo()
    workers = list(stream_batches(source, 4, 12000, 3, 0, 5, num_workers=2))
    assert [s for s, _ in workers] == list(range(5))
    for (_, got), want in zip(workers, direct):
        torch.testing.assert_close(got.audio, want.audio)


def test_the_interrupt_checkpoint_survives_a_second_sigint():
    import signal

    hits = []
    previous = signal.signal(signal.SIGINT, lambda *_: hits.append(1))
    try:
        with loop.ignoring_interrupts():
            os.kill(os.getpid(), signal.SIGINT)  # ignored: the save in here goes on
        assert hits == []
        os.kill(os.getpid(), signal.SIGINT)  # the handler is back afterwards
        assert hits == [1]
    finally:
        signal.signal(signal.SIGINT, previous)
