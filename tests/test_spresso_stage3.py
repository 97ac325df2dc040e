"""S-PRESSO stage 3: aligned (x0, z_q) windows, finetuning f_phi + LoRA on z_q, resume, and the comparison."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso import qinco2 as q
from codecbench.codecs.spresso import stage3
from codecbench.codecs.spresso.stage2 import Clip


def demo_clips(n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    from codecbench.codecs.spresso.data import demo_like_clips

    return demo_like_clips(n, seconds, seed)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A random-init tiny stage-1 checkpoint (t = 9) and a QINCo2 (M = 3, K = 8) fitted on its z."""
    from codecbench.codecs.spresso.config import load_config
    from codecbench.codecs.spresso.model import build_spresso, load_stage1, save_checkpoint

    folder = tmp_path_factory.mktemp("stage3")
    config = load_config("tiny", {"latent_encoder.time_pool": 9})
    torch.manual_seed(0)
    ckpt = folder / "stage1.pt"
    model = build_spresso(config)
    with torch.no_grad():  # a "pretrained" DiT: its zero-initialised base layers get weights (LoRA B, f_phi stay 0)
        for name, p in model.dit.named_parameters():
            if "lora" not in name and p.abs().max() == 0:
                p.normal_(0.0, 0.05)
    save_checkpoint(ckpt, "stage1", config, {"spresso": model.state_dict()}, 0)
    with torch.no_grad():
        z = load_stage1(ckpt).encode(torch.from_numpy(np.stack(demo_clips(8, 1.0))))
    config_q = q.QINCo2Config(dim=64, num_steps=3, codebook_size=8, embed_dim=16, hidden_dim=16, num_blocks=1,
                              num_candidates=4, beam_size=4)
    quantizer, _ = q.fit_qinco2(z.transpose(1, 2).reshape(-1, 64), config_q,
                                q.QINCo2TrainConfig(epochs=2, batch_size=32, kmeans_iters=3))
    return ckpt, quantizer.save(folder / "qinco2.pt")


SETTINGS = {"batch_size": 2, "segment_s": 0.45, "lr": 3e-3, "warmup_steps": 0, "checkpoint_every_steps": 3,
            "log_every_steps": 1}


def test_latent_pairs_are_aligned_windows():
    t = 4
    x0 = torch.arange(41, dtype=torch.float32).repeat(3, 1)  # frame index in every channel, F = 41
    zq = torch.arange(11, dtype=torch.float32).repeat(2, 1)  # ceil(41 / 4) = 11 z frames
    item = stage3.Precomputed("a", x0, zq, torch.zeros(41 * 480))
    pairs = stage3.LatentPairs([item], time_pool=t, window_frames=3)
    x, z = pairs.batch(16, seed=0, step=5)
    assert x.shape == (16, 3, 12) and z.shape == (16, 2, 3)
    torch.testing.assert_close(x[:, 0, 0], z[:, 0, 0] * t)  # the window starts on a z-frame boundary
    assert int(z[:, 0, -1].max()) <= 9  # z frame 10 (the padded 41st AudioAE frame) is never used
    again, _ = pairs.batch(16, seed=0, step=5)
    torch.testing.assert_close(again, x)  # batches depend only on (seed, step)
    with pytest.raises(ConfigError, match=r"no clip is as long as one training window \(48 AudioAE frames"):
        stage3.LatentPairs([item], time_pool=t, window_frames=12)
    assert stage3.window_frames(1.0, 9) == 11 and stage3.window_frames(0.01, 100) == 1


@pytest.mark.slow  # three short finetuning runs of the tiny model (~15 s on 2 shared cores)
def test_finetune_checkpoints_resume_and_beats_stage1(models, tmp_path):
    from codecbench.codecs.spresso.model import load_checkpoint, load_stage1

    ckpt, qpath = models
    data = demo_clips(4, 1.0)
    final = stage3.finetune_stage3(ckpt, qpath, data, tmp_path / "a", steps=8, overrides=SETTINGS, progress=False)
    payload = load_checkpoint(final, "stage1")
    assert payload["extra"]["stage"] == 3 and payload["step"] == 8 and payload["optimizers"] == {}
    with open(tmp_path / "a" / "losses.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == list(range(1, 9))

    # resume: 4 steps, then the same command to 8 steps, equals 8 uninterrupted steps
    stage3.finetune_stage3(ckpt, qpath, data, tmp_path / "b", steps=4, overrides={**SETTINGS, "checkpoint_every_steps": 2},
                           progress=False)
    resumed = stage3.finetune_stage3(ckpt, qpath, data, tmp_path / "b", steps=8, overrides=SETTINGS, progress=False)
    a, b = load_stage1(final).state_dict(), load_stage1(resumed).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)

    # only f_phi and LoRA changed
    before, after = load_stage1(ckpt), load_stage1(final)
    changed = {k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    assert changed and all(k.startswith("f_phi.") or "lora" in k for k in changed), sorted(changed)

    comparison = stage3.compare_decoders(before, after, q.QINCo2.load(qpath),
                                         [Clip(str(i), c) for i, c in enumerate(data[:2])], draws=8, seeds=(0,))
    assert comparison.stage3_denoising_loss < comparison.stage1_denoising_loss
    assert np.isfinite(comparison.stage1_mel_distance) and np.isfinite(comparison.stage3_mel_distance)


def test_finetune_refuses_bad_overrides_and_other_quantizer(models, tmp_path):
    ckpt, qpath = models
    with pytest.raises(ConfigError, match="stage 3 overrides: .*learning_rate.*valid keys: steps, batch_size"):
        stage3.finetune_stage3(ckpt, qpath, demo_clips(2, 1.0), tmp_path / "x", steps=1,
                               overrides={"learning_rate": 1.0}, progress=False)
    with pytest.raises(ConfigError, match="no clip is as long as one training window"):
        stage3.finetune_stage3(ckpt, qpath, demo_clips(2, 0.2), tmp_path / "y", steps=1,
                               overrides={**SETTINGS, "segment_s": 1.0}, progress=False)


def test_finetune_uses_the_gpu_loop_settings(models, tmp_path):
    """bf16 autocast, 2 micro-batches, EMA export and a trainable-only resume checkpoint in stage 3."""
    from codecbench.codecs.spresso.model import load_checkpoint

    ckpt, qpath = models
    settings = {**SETTINGS, "precision": "bf16", "grad_accum_steps": 2, "ema_decay": 0.5, "lr_schedule": "cosine"}
    final = stage3.finetune_stage3(ckpt, qpath, demo_clips(4, 1.0), tmp_path / "g", steps=3, overrides=settings,
                                   progress=False)
    exported, latest = load_checkpoint(final, "stage1"), load_checkpoint(tmp_path / "g" / "checkpoint.pt", "stage1")
    assert exported["extra"]["ema_decay"] == 0.5 and len(latest["extra"]["frozen_sha256"]["spresso"]) == 64
    kept = latest["model"]["spresso"]
    assert any(k.startswith("f_phi.") for k in kept) and not any(k.startswith("g_psi.") for k in kept)
    shadow = latest["optimizers"]["__ema__"]["shadow"]
    assert torch.equal(exported["model"]["spresso"]["f_phi.linear.weight"], shadow[0])
    with open(tmp_path / "g" / "losses.csv") as handle:
        assert all(np.isfinite(float(r["loss"])) for r in csv.DictReader(handle))


@pytest.mark.slow  # 3.6-5.7 s on 2 shared cores (validation decodes with the sampler)
def test_finetune_runs_the_shared_loop_with_validation_card_and_streamed_pairs(models, tmp_path):
    """Stage 3 through train.run_stage: pairs written to disk (memory-mapped), held-out loss + mel distance in
    val.csv with the EMA weights, a model card with the rate measured from the codes, other QINCo2 refused."""
    import soundfile as sf
    from codecbench.bench.cli import main

    ckpt, qpath = models
    out = tmp_path / "v"
    settings = {**SETTINGS, "val_every_steps": 2, "val_batches": 1, "ema_decay": 0.5}
    for name, clips in (("train", demo_clips(3, 1.0)), ("val", demo_clips(2, 1.0, seed=9))):
        (tmp_path / name).mkdir()
        for i, clip in enumerate(clips):
            sf.write(str(tmp_path / name / f"c{i}.wav"), clip, 48000, subtype="FLOAT")
    args = ["spresso-quant", "finetune-stage3", str(ckpt), "--qinco2", str(qpath), "--data", str(tmp_path / "train"),
            "--val-data", str(tmp_path / "val"), "--out", str(out), "--steps", "2", "--no-progress"]
    assert main(args + [arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")]) == 0
    assert sorted(p.name for p in (out / "pairs").glob("*.npy")) == [
        f"{i:08d}.{part}.npy" for i in range(3) for part in ("x0", "zq")]
    assert (out / "val_pairs" / "00000001.audio.npy").is_file()
    stored = [stage3.StoredPair("a", out / "pairs", 0, 100, False)]
    assert isinstance(stored[0].x0, np.memmap)  # a batch reads its windows from the file, not a copy of the clip
    with open(out / "val.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [2]
    assert float(rows[0]["val_mel_distance"]) > 0 and np.isfinite(float(rows[0]["val_loss"]))
    card = (out / "MODEL_CARD.md").read_text()
    # tiny t = 9: 1-s clips give ceil(100 / 9) = 12 z frames x 3 steps x 3 bits = 108 bits/s
    assert "# S-PRESSO stage3 model card: stage3.pt" in card and "- rate: 0.108 kbps measured from the codes" in card
    assert "held out: 2 clips" in card and "val_mel_distance" in card and "- steps: 2 of batch 2" in card
    # the pairs folder and the checkpoint belong to this QINCo2: another one is refused, naming the file
    other = q.QINCo2.load(qpath)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    other_path = other.save(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match=r"pairs/key.json: these pairs were computed with another"):
        stage3.finetune_stage3(ckpt, other_path, demo_clips(3, 1.0), out, steps=3, overrides=settings, progress=False)


def test_precompute_streams_the_corpus_one_clip_at_a_time(models, tmp_path):
    """Peak numpy memory while writing the pairs does not grow with the corpus (6 clips vs 2 clips of 1 s)."""
    import tracemalloc

    import soundfile as sf
    from codecbench.codecs.spresso.model import load_stage1

    ckpt, qpath = models
    engine = stage3.DiscreteSPresso(load_stage1(ckpt), q.QINCo2.load(qpath))

    def peak_of(count: int) -> tuple[int, int]:
        folder = tmp_path / f"clips{count}"
        folder.mkdir()
        for i, clip in enumerate(demo_clips(count, 1.0, seed=5)):
            sf.write(str(folder / f"c{i}.wav"), clip, 48000, subtype="FLOAT")
        tracemalloc.start()
        try:
            stored, totals = stage3.precompute_to_folder(engine, folder, tmp_path / f"pairs{count}", None, {"k": 1})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(stored) == count and totals["seconds"] == pytest.approx(1.0 * count)
        return peak, count * 48000 * 4

    peak_of(1)  # warm-up: imports and first-call allocations are not the corpus
    small, _ = peak_of(2)
    large, corpus_bytes = peak_of(6)
    # holding the clips would add >= corpus_bytes (1.15 MB) to the 6-clip peak
    assert large < small + corpus_bytes / 4, (small, large, corpus_bytes)
    # DataLoader workers read the memory-mapped windows: the same batches as in this process
    from codecbench.codecs.spresso.data import stream_batches

    stored, _ = stage3.precompute_to_folder(engine, tmp_path / "clips6", tmp_path / "pairs6", None, {"k": 1})
    pairs = stage3.LatentPairs(stored, time_pool=9, window_frames=3)
    streamed = list(stream_batches(pairs, 4, 0, 7, 0, 3, num_workers=2))
    assert [s for s, _ in streamed] == [0, 1, 2]
    for step, (x0, zq) in streamed:
        want = pairs.batch(4, 0, 7, step)
        torch.testing.assert_close(x0, want[0])
        torch.testing.assert_close(zq, want[1])


@pytest.mark.slow  # two torchrun processes
def test_ddp_two_gloo_ranks_equal_one_process_with_two_micro_batches(models, tmp_path):
    """Stage 3 under torchrun: each rank precomputes its share of the pairs (barriers), reads its rows of the
    global batch; the loss rows and weights equal one process with 2 micro-batches."""
    import os
    import subprocess
    import sys
    import textwrap

    import soundfile as sf
    from codecbench.codecs.spresso.model import load_stage1

    ckpt, qpath = models
    (tmp_path / "data").mkdir()
    for i, clip in enumerate(demo_clips(3, 1.0)):
        sf.write(str(tmp_path / "data" / f"c{i}.wav"), clip, 48000, subtype="FLOAT")
    settings = {**SETTINGS, "batch_size": 4, "val_every_steps": 3, "val_batches": 1}
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from codecbench.codecs.spresso.stage3 import finetune_stage3
        finetune_stage3({str(ckpt)!r}, {str(qpath)!r}, {str(tmp_path / 'data')!r}, {str(tmp_path / 'ddp')!r},
                        steps=3, overrides={settings!r}, progress=False, val_data={str(tmp_path / 'data')!r})
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single = stage3.finetune_stage3(ckpt, qpath, tmp_path / "data", tmp_path / "one", steps=3,
                                    overrides={**settings, "grad_accum_steps": 2}, progress=False)
    rows = {}
    for name in ("ddp", "one"):
        with open(tmp_path / name / "losses.csv") as handle:
            rows[name] = [float(r["loss"]) for r in csv.DictReader(handle)]
    assert len(rows["ddp"]) == 3 and rows["ddp"] == pytest.approx(rows["one"], rel=1e-4)
    with open(tmp_path / "ddp" / "val.csv") as handle:  # each rank validated its rows of the held-out batch
        val = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in val] == [3] and float(val[0]["val_mel_distance"]) > 0
    assert sorted(p.name for p in (tmp_path / "ddp" / "pairs").glob("*.json")) == [
        "00000000.json", "00000001.json", "00000002.json", "key.json"]
    a, b = load_stage1(single).state_dict(), load_stage1(tmp_path / "ddp" / "stage3.pt").state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
