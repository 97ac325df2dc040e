"""S-PRESSO training: AudioAE (train-ae), DiT pretraining (pretrain-dit) and stage 1 (train-stage1).

Every stage writes into its output folder:

- ``checkpoint.pt``: latest state with optimizers (resume: rerun the same command; a kill loses at most
  ``checkpoint_every_steps`` steps, Ctrl-C saves first);
- ``<kind>.pt``: the final model without optimizer state (``audio_ae.pt``, ``dit.pt``, ``stage1.pt``);
- ``losses.csv``: one row per ``log_every_steps`` (step, named losses, lr, elapsed_s);
- ``config.yaml``: the resolved config.

Batches and noise depend only on (seed, step), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from codecbench.bench.core.errors import ConfigError
from codecbench.bench.core.weights import file_digest
from codecbench.codecs.spresso.audio_ae import (
    AudioAE,
    MultiResolutionDiscriminator,
    ReconstructionLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from codecbench.codecs.spresso.config import SPressoConfig, TrainConfig, load_config
from codecbench.codecs.spresso.data import Batch, ClipSource, demo_like_clips
from codecbench.codecs.spresso.diffusion import build_diffusion
from codecbench.codecs.spresso.dit import DiT
from codecbench.codecs.spresso.model import (
    SPresso,
    load_audio_ae,
    load_checkpoint,
    load_dit,
    save_checkpoint,
    text_keep_mask,
)
from torch import nn

StepFn = Callable[[Batch, torch.Generator, int], dict[str, float]]


@dataclass
class Stage:
    """What one training stage needs: modules saved in the checkpoint, optimizers, and a step function."""

    kind: str
    section: str
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    step_fn: StepFn
    extra: dict[str, Any]
    finish: Callable[[], None] | None = None


def step_generator(seed: int, step: int) -> torch.Generator:
    """The noise generator of one step (depends only on seed and step)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _optimizer(params: list[nn.Parameter], train: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, betas=(0.8, 0.99))


def _set_lr(optimizers: dict[str, torch.optim.Optimizer], train: TrainConfig, step: int) -> float:
    lr = train.lr * min(1.0, (step + 1) / max(1, train.warmup_steps))
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = lr
    return lr


def _clip(params: list[nn.Parameter], max_norm: float) -> None:
    if max_norm > 0:
        nn.utils.clip_grad_norm_(params, max_norm)


def _data(data: ClipSource | str | Path) -> ClipSource:
    return data if isinstance(data, ClipSource) else ClipSource.from_folder(data)


# --------------------------------------------------------------------------------------------------------------
# The loop (shared by the three stages)
# --------------------------------------------------------------------------------------------------------------


def run_stage(stage: Stage, config: SPressoConfig, data: ClipSource, out_dir: str | Path, device: str = "cpu",
              steps: int | None = None, progress: bool = True) -> Path:
    """Train ``stage`` to ``steps`` (default: the config's), resuming from ``out_dir/checkpoint.pt`` if present.

    Returns the path of the final model file ``out_dir/<kind>.pt``.
    """
    from tqdm import tqdm

    train: TrainConfig = getattr(config, stage.section)
    total = train.steps if steps is None else steps
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    latest, log_path = out_dir / "checkpoint.pt", out_dir / "losses.csv"
    start = 0
    if latest.is_file():
        payload = load_checkpoint(latest, stage.kind, config)
        for name, module in stage.modules.items():
            module.load_state_dict(payload["model"][name])
        for name, opt in stage.optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
        start = int(payload["step"])
        final = out_dir / f"{stage.kind}.pt"
        if start == total and final.is_file():
            return final  # already finished
        if start > total:
            raise ConfigError(f"{latest}: checkpoint is at step {start}, past the requested {total} steps")
    segment = int(round(train.segment_s * config.audio_ae.sample_rate_hz))
    rows = _read_log(log_path, start)
    started, elapsed0 = time.perf_counter(), (float(rows[-1]["elapsed_s"]) if rows else 0.0)
    for module in stage.modules.values():
        module.to(device).train()

    def save(step: int, path: Path, with_optim: bool = True) -> None:
        save_checkpoint(
            path, stage.kind, config, {n: m.state_dict() for n, m in stage.modules.items()}, step,
            {n: o.state_dict() for n, o in stage.optimizers.items()} if with_optim else None, stage.extra,
        )

    step = start
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"spresso {stage.kind}", disable=not progress)
    try:
        for step in bar:
            lr = _set_lr(stage.optimizers, train, step)
            batch = data.batch(train.batch_size, segment, train.seed, step)
            batch = Batch(batch.audio.to(device), None if batch.text is None else batch.text.to(device), batch.has_text)
            losses = stage.step_fn(batch, step_generator(train.seed, step), step)
            bar.set_postfix(loss=f"{losses['loss']:.4f}")
            if (step + 1) % train.log_every_steps == 0 or step + 1 == total:
                rows.append({"step": step + 1, **losses, "lr": lr,
                             "elapsed_s": elapsed0 + time.perf_counter() - started})
                _write_log(log_path, rows)
            if (step + 1) % train.checkpoint_every_steps == 0 or step + 1 == total:
                save(step + 1, latest)
    except KeyboardInterrupt:
        done = step  # the interrupted step did not finish
        if done > start:
            save(done, latest)
        raise
    if stage.finish is not None:
        stage.finish()
    final = out_dir / f"{stage.kind}.pt"
    save(total, final, with_optim=False)
    if stage.finish is not None:  # statistics changed the model: the resume point must carry them
        save(total, latest)
    return final


def _read_log(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """Rows of ``losses.csv`` up to ``up_to_step`` (later rows came from steps lost by a kill)."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


# --------------------------------------------------------------------------------------------------------------
# Stage builders
# --------------------------------------------------------------------------------------------------------------


def audio_ae_stage(config: SPressoConfig, data: ClipSource, device: str = "cpu") -> Stage:
    """AudioAE training: multi-resolution mel + STFT reconstruction, hinge adversarial and feature matching."""
    train = config.train_ae
    weights = {"mel": 45.0, "stft": 1.0, "adv": 1.0, "fm": 2.0, **train.loss_weights}
    unknown = sorted(set(weights) - {"mel", "stft", "adv", "fm"})
    if unknown:
        raise ConfigError(f"train_ae.loss_weights: unknown loss '{unknown[0]}'; valid: adv, fm, mel, stft")
    torch.manual_seed(train.seed)
    ae = AudioAE(config.audio_ae).to(device)
    disc = MultiResolutionDiscriminator(config.discriminator.resolutions, config.discriminator.channels).to(device)
    recon_loss = ReconstructionLoss(config.audio_ae.sample_rate_hz).to(device)
    opt_g, opt_d = _optimizer(list(ae.parameters()), train), _optimizer(list(disc.parameters()), train)
    adversarial = weights["adv"] > 0 or weights["fm"] > 0

    def step_fn(batch: Batch, generator: torch.Generator, step: int) -> dict[str, float]:
        audio = batch.audio
        recon = ae(audio)
        losses: dict[str, torch.Tensor] = {}
        if adversarial:
            opt_d.zero_grad()
            losses["disc"] = discriminator_loss(disc(audio), disc(recon.detach()))
            losses["disc"].backward()
            _clip(list(disc.parameters()), train.grad_clip)
            opt_d.step()
            real, fake = disc(audio), disc(recon)
            losses["adv"], losses["fm"] = generator_adversarial_loss(fake), feature_matching_loss(real, fake)
        losses["mel"], losses["stft"] = recon_loss.mel(recon, audio), recon_loss.stft(recon, audio)
        total = sum(weights[k] * v for k, v in losses.items() if k in weights)
        opt_g.zero_grad()
        total.backward()
        _clip(list(ae.parameters()), train.grad_clip)
        opt_g.step()
        return {"loss": total.item(), **{k: v.item() for k, v in losses.items()}}

    def finish() -> None:
        set_latent_stats(ae, data, config, device)

    return Stage("audio_ae", "train_ae", {"ae": ae, "discriminator": disc}, {"ae": opt_g, "disc": opt_d}, step_fn,
                 {}, finish)


@torch.no_grad()
def set_latent_stats(ae: AudioAE, data: ClipSource, config: SPressoConfig, device: str = "cpu",
                     num_batches: int = 4) -> None:
    """Per-channel latent mean/std over ``num_batches`` batches of crops (seeded apart from training)."""
    train = config.train_ae
    segment = int(round(train.segment_s * config.audio_ae.sample_rate_hz))
    ae.eval()
    raw = torch.cat([
        ae.encode_raw(data.batch(train.batch_size, segment, train.seed + 7919, 10**9 + i).audio.to(device))
        for i in range(num_batches)
    ])
    ae.set_latent_stats_(raw)


def dit_stage(config: SPressoConfig, data: ClipSource, ae_checkpoint: str | Path, device: str = "cpu") -> Stage:
    """DiT pretraining on normalised AudioAE latents (text-conditioned where text embeddings exist)."""
    train = config.pretrain_dit
    ae = load_audio_ae(ae_checkpoint, config).to(device)
    for p in ae.parameters():
        p.requires_grad_(False)
    torch.manual_seed(train.seed)
    dit = DiT(config.dit).to(device)
    diffusion = build_diffusion(config.diffusion)
    opt = _optimizer(list(dit.parameters()), train)

    def step_fn(batch: Batch, generator: torch.Generator, step: int) -> dict[str, float]:
        with torch.no_grad():
            x0 = ae.encode(batch.audio)
        keep = text_keep_mask(x0.shape[0], batch.text, batch.has_text, train.text_dropout, generator)
        loss = diffusion.training_loss(dit, x0, generator, text=batch.text, text_keep=keep)
        opt.zero_grad()
        loss.backward()
        _clip(list(dit.parameters()), train.grad_clip)
        opt.step()
        return {"loss": loss.item()}

    extra = {"ae_checkpoint": str(ae_checkpoint), "ae_sha256": file_digest(ae_checkpoint)}
    return Stage("dit", "pretrain_dit", {"dit": dit}, {"dit": opt}, step_fn, extra)


def stage1_stage(config: SPressoConfig, data: ClipSource, ae_checkpoint: str | Path, dit_checkpoint: str | Path,
                 device: str = "cpu") -> Stage:
    """Stage 1: g_psi, f_phi and LoRA trained jointly with the denoising loss; AudioAE and base DiT frozen."""
    train = config.stage1
    torch.manual_seed(train.seed)
    model = SPresso(config, load_audio_ae(ae_checkpoint, config), load_dit(dit_checkpoint, config)).to(device)
    params = model.stage1_parameters()
    opt = _optimizer(params, train)

    def step_fn(batch: Batch, generator: torch.Generator, step: int) -> dict[str, float]:
        x0 = model.encode_latents(batch.audio)
        loss = model.stage1_loss(x0, generator, batch.text, train.text_dropout, batch.has_text)
        opt.zero_grad()
        loss.backward()
        _clip(params, train.grad_clip)
        opt.step()
        return {"loss": loss.item()}

    extra = {
        "ae_checkpoint": str(ae_checkpoint), "ae_sha256": file_digest(ae_checkpoint),
        "dit_checkpoint": str(dit_checkpoint), "dit_sha256": file_digest(dit_checkpoint),
    }
    return Stage("stage1", "stage1", {"spresso": model}, {"stage1": opt}, step_fn, extra)


# --------------------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------------------


def train_audio_ae(config: SPressoConfig, data: ClipSource | str | Path, out_dir: str | Path, device: str = "cpu",
                   steps: int | None = None, progress: bool = True) -> Path:
    data = _data(data)
    return run_stage(audio_ae_stage(config, data, device), config, data, out_dir, device, steps, progress)


def pretrain_dit(config: SPressoConfig, data: ClipSource | str | Path, out_dir: str | Path, ae_checkpoint: str | Path,
                 device: str = "cpu", steps: int | None = None, progress: bool = True) -> Path:
    data = _data(data)
    return run_stage(dit_stage(config, data, ae_checkpoint, device), config, data, out_dir, device, steps, progress)


def train_stage1(config: SPressoConfig, data: ClipSource | str | Path, out_dir: str | Path, ae_checkpoint: str | Path,
                 dit_checkpoint: str | Path, device: str = "cpu", steps: int | None = None,
                 progress: bool = True) -> Path:
    data = _data(data)
    stage = stage1_stage(config, data, ae_checkpoint, dit_checkpoint, device)
    return run_stage(stage, config, data, out_dir, device, steps, progress)


def make_tiny_checkpoint(out_dir: str | Path, time_pool: int = 4, steps: tuple[int, int, int] = (60, 150, 300),
                         seed: int = 0, data: ClipSource | None = None, progress: bool = False) -> Path:
    """Train the tiny config through AE, DiT and stage 1 on seeded demo-like clips; returns ``stage1.pt``.

    For tests and demos (a few seconds on one CPU thread with the default steps). Reuses finished stages in
    ``out_dir`` (each stage resumes from its folder). Runs with one torch thread, restored afterwards.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is far faster than two on a loaded machine (measured)
    try:
        return _make_tiny_checkpoint(Path(out_dir), time_pool, steps, seed, data, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _make_tiny_checkpoint(out_dir: Path, time_pool: int, steps: tuple[int, int, int], seed: int,
                          data: ClipSource | None, progress: bool) -> Path:
    overrides = {"latent_encoder.time_pool": time_pool}
    for section in ("train_ae", "pretrain_dit", "stage1"):
        overrides[f"{section}.seed"] = seed
    config = load_config("tiny", overrides)
    data = data or ClipSource.from_arrays(demo_like_clips(4, 2.0, seed))
    ae = train_audio_ae(config, data, out_dir / "ae", steps=steps[0], progress=progress)
    dit = pretrain_dit(config, data, out_dir / "dit", ae, steps=steps[1], progress=progress)
    return train_stage1(config, data, out_dir / f"stage1_t{time_pool}", ae, dit, steps=steps[2], progress=progress)


def steps_per_second(stage: Stage, config: SPressoConfig, data: ClipSource, repeats: int = 3) -> float:
    """Measured training throughput of ``stage`` (steps/s, after one warm-up step)."""
    train: TrainConfig = getattr(config, stage.section)
    segment = int(round(train.segment_s * config.audio_ae.sample_rate_hz))
    stage.step_fn(data.batch(train.batch_size, segment, 0, 0), step_generator(0, 0), 0)
    started = time.perf_counter()
    for i in range(repeats):
        stage.step_fn(data.batch(train.batch_size, segment, 0, i + 1), step_generator(0, i + 1), i + 1)
    return repeats / (time.perf_counter() - started)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

