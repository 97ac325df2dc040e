"""S-PRESSO stage 3: finetune f_phi and the DiT's LoRA on precomputed quantised latents z_q (stage-1 loss).

Shapes: B batch, T samples (48 kHz), D AudioAE latent dims, F AudioAE frames (100 Hz), Dz z dims, Fz z frames,
t time pooling (F = t x Fz for whole windows), m QINCo2 steps.

g_psi and the quantiser are frozen, so for every clip the AudioAE latents x0 [D, F] and z_q [Dz, Fz] are computed
once (:func:`precompute`); training crops aligned windows (a z frame and its t AudioAE frames) and minimises the
stage-1 denoising loss ``SPresso.denoising_loss(x0, z_q)`` (null text: precomputed clips carry no captions) over
the stage-3 parameters (``SPresso.decoder_parameters()``: f_phi and LoRA; everything else frozen).

The output folder holds, like stage 1:

- ``checkpoint.pt``: latest state with the optimizer (rerun the same command to resume; a kill loses at most
  ``checkpoint_every_steps`` steps; Ctrl-C saves first);
- ``stage3.pt``: the final model. It is a ``stage1``-kind S-PRESSO model file (same modules, so
  ``load_stage1`` reads it) with ``extra.stage = 3`` and the QINCo2 file's path and sha256;
- ``losses.csv``: step, loss, lr, elapsed_s; ``config.yaml``: the resolved config.

Batches and noise depend only on (seed, step), so a resumed run equals an uninterrupted one. Training settings
come from the stage-1 checkpoint's ``stage1`` section (lr, batch size, segment, warm-up, clipping, seed) unless
overridden; the step count defaults to 15 % of stage 1's (paper-notes section 6 suggests 10-25 %; NR).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from codecbench.bench.core.errors import ConfigError
from codecbench.bench.core.weights import file_digest
from codecbench.codecs.spresso.discrete import DiscreteSPresso
from codecbench.codecs.spresso.stage2 import Clip, load_clips

STAGE3_FRACTION_OF_STAGE1 = 0.15


@dataclass(frozen=True)
class Precomputed:
    """One clip's AudioAE latents ``x0`` [D, F] and quantised latents ``zq`` [Dz, Fz], and its ``audio`` [T]."""

    name: str
    x0: torch.Tensor
    zq: torch.Tensor
    audio: torch.Tensor


@torch.no_grad()
def precompute(engine: DiscreteSPresso, clips: Sequence[Clip], num_steps: int | None = None) -> list[Precomputed]:
    """x0 and z_q (QINCo2 codes of z, first ``num_steps`` steps, decoded) for every clip, on the CPU."""
    out = []
    device = engine.quantizer.data_mean.device
    for clip in clips:
        audio = torch.from_numpy(clip.audio)[None].to(device)
        x0 = engine.model.encode_latents(audio)
        codes = engine.encode_codes(audio, num_steps)
        zq = engine.quantized_latents(codes)
        out.append(Precomputed(clip.name, x0[0].cpu(), zq[0].cpu(), audio[0].cpu()))
    return out


class LatentPairs:
    """Aligned random windows of (x0, z_q): ``batch`` -> x0 [B, D, W x t], z_q [B, Dz, W], by (seed, step)."""

    def __init__(self, items: Sequence[Precomputed], time_pool: int, window_frames: int):
        self.time_pool, self.window = time_pool, window_frames
        self.items = [p for p in items if p.x0.shape[-1] >= window_frames * time_pool]
        if not self.items:
            longest = max((p.x0.shape[-1] for p in items), default=0) / 100.0
            raise ConfigError(
                f"stage 3: no clip is as long as one training window ({window_frames * time_pool} AudioAE frames = "
                f"{window_frames * time_pool / 100.0:g} s; longest clip {longest:g} s); shorten segment_s"
            )

    def batch(self, batch_size: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([seed, step, 3])
        x0s, zqs = [], []
        t, w = self.time_pool, self.window
        for _ in range(batch_size):
            item = self.items[int(rng.integers(len(self.items)))]
            whole = item.x0.shape[-1] // t  # z frames whose t AudioAE frames all exist
            start = int(rng.integers(0, whole - w + 1))
            x0s.append(item.x0[:, start * t : (start + w) * t])
            zqs.append(item.zq[:, start : start + w])
        return torch.stack(x0s), torch.stack(zqs)


def window_frames(segment_s: float, time_pool: int, ae_frame_rate_hz: float = 100.0) -> int:
    """z frames per training window: the segment rounded to whole z frames (at least 1)."""
    return max(1, int(round(segment_s * ae_frame_rate_hz / time_pool)))


def finetune_stage3(
    checkpoint: str | os.PathLike,
    qinco2_path: str | os.PathLike,
    data: str | os.PathLike | Sequence[np.ndarray],
    out_dir: str | os.PathLike,
    *,
    steps: int | None = None,
    num_steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Finetune the stage-1 ``checkpoint``'s f_phi and LoRA on z_q from ``qinco2_path`` (first ``num_steps`` QINCo2
    steps, default all); ``overrides`` replace keys of the checkpoint's ``stage1`` training section (lr,
    batch_size, segment_s, ...). Resumes from ``out_dir/checkpoint.pt``. Returns ``out_dir/stage3.pt``."""
    from codecbench.codecs.spresso.model import load_checkpoint, load_stage1, save_checkpoint
    from codecbench.codecs.spresso.qinco2 import QINCo2
    from codecbench.codecs.spresso.train import step_generator
    from tqdm import tqdm

    model = load_stage1(checkpoint, device)
    config = model.config
    try:
        train = dataclasses.replace(config.stage1, **(overrides or {}))
    except TypeError as error:
        valid = ", ".join(f.name for f in dataclasses.fields(config.stage1))
        raise ConfigError(f"stage 3 overrides: {error}; valid keys: {valid}") from None
    total = steps if steps is not None else max(1, math.ceil(STAGE3_FRACTION_OF_STAGE1 * config.stage1.steps))
    engine = DiscreteSPresso(model, QINCo2.load(qinco2_path, device))
    pairs = LatentPairs(precompute(engine, load_clips(data), num_steps), model.time_pool,
                        window_frames(train.segment_s, model.time_pool, model.ae.frame_rate_hz))

    for p in model.parameters():
        p.requires_grad_(False)
    params = model.decoder_parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, betas=(0.8, 0.99))
    from codecbench.codecs.spresso import loop

    where = loop.ranks(device)
    loop.enable_tf32(device)
    if train.batch_size % (where.world * train.grad_accum_steps):
        raise ConfigError(f"stage 3: batch_size {train.batch_size} is not a multiple of ranks x grad_accum_steps = "
                          f"{where.world} x {train.grad_accum_steps}")
    ema = loop.EMA(params, train.ema_decay) if train.ema_decay > 0 else None
    frozen = loop.frozen_digest(model)

    def loss_fn(pair, generator):
        return model.denoising_loss(pair[0], pair[1], generator), {}

    def split(pair, parts):
        n = pair[0].shape[0] // parts
        return [(pair[0][i * n:(i + 1) * n], pair[1][i * n:(i + 1) * n]) for i in range(parts)]

    def clip(ps, max_norm):
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_(ps, max_norm)

    train_step = loop.make_step(loss_fn, params, opt, train, device, where, ema, split, clip)
    share = train.batch_size // where.world
    rows_of_rank = slice(where.rank * share, (where.rank + 1) * share)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(
        {**config.to_dict(), "stage3": {**dataclasses.asdict(train), "steps": total, "num_steps": num_steps,
                                        "qinco2": str(qinco2_path)}}, sort_keys=False))
    latest, log_path = out_dir / "checkpoint.pt", out_dir / "losses.csv"
    extra = {"stage": 3, "stage1_checkpoint": str(checkpoint), "stage1_sha256": file_digest(checkpoint),
             "qinco2": str(qinco2_path), "qinco2_sha256": file_digest(qinco2_path), "qinco2_num_steps": num_steps}
    start = 0
    if latest.is_file():
        payload = load_checkpoint(latest, "stage1", config)
        if payload["extra"].get("qinco2_sha256") != extra["qinco2_sha256"]:
            raise ConfigError(f"{latest}: was trained with another QINCo2 file; use a new output folder")
        loop.load_trainable_state(model, payload["model"]["spresso"], payload["extra"].get("frozen_sha256"),
                                  str(latest))
        opt.load_state_dict(payload["optimizers"]["stage3"])
        if ema is not None and "__ema__" in payload["optimizers"]:
            ema.load_state_dict(payload["optimizers"]["__ema__"])
        start = int(payload["step"])
    rows = _read_log(log_path, start)
    elapsed0, started = (float(rows[-1]["elapsed_s"]) if rows else 0.0), time.perf_counter()

    saved_step = start if latest.is_file() else None

    def save(step: int, path: Path, with_optim: bool = True) -> None:
        nonlocal saved_step
        if not where.is_main:
            return
        if not with_optim:  # the exported stage3.pt: the whole model, EMA weights when enabled
            with loop.maybe_swapped(ema):
                save_checkpoint(path, "stage1", config, {"spresso": model.state_dict()}, step, None,
                                {**extra, "ema_decay": train.ema_decay})
            return
        optim = {"stage3": opt.state_dict(), **({"__ema__": ema.state_dict()} if ema is not None else {})}
        loop.rotate_checkpoints(path, train.keep_checkpoints, saved_step)
        save_checkpoint(path, "stage1", config, {"spresso": loop.trainable_state(model)}, step, optim,
                        {**extra, "frozen_sha256": frozen})
        saved_step = step

    model.train()
    step = start
    bar = tqdm(range(start, total), initial=start, total=total, desc="spresso stage3",
               disable=not progress or not where.is_main)
    try:
        for step in bar:
            lr = loop.learning_rate(train.lr, step, total, train.warmup_steps, train.lr_schedule, train.min_lr_ratio)
            for group in opt.param_groups:
                group["lr"] = lr
            x0, zq = pairs.batch(train.batch_size, train.seed, step)
            if where.world > 1:
                x0, zq = x0[rows_of_rank], zq[rows_of_rank]
            value = train_step((x0.to(device), zq.to(device)), step_generator(train.seed, step), step)["loss"]
            bar.set_postfix(loss=f"{value:.4f}")
            if where.is_main and ((step + 1) % train.log_every_steps == 0 or step + 1 == total):
                rows.append({"step": step + 1, "loss": value, "lr": lr,
                             "elapsed_s": elapsed0 + time.perf_counter() - started})
                _write_log(log_path, rows)
                if log is not None:
                    log(f"step {step + 1}/{total} loss={value:.5g}")
            if (step + 1) % train.checkpoint_every_steps == 0 or step + 1 == total:
                save(step + 1, latest)
    except KeyboardInterrupt:
        if step > start:
            save(step, latest)
        raise
    final = out_dir / "stage3.pt"
    save(total, final, with_optim=False)
    return final


def _read_log(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "loss", "lr", "elapsed_s"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


# --------------------------------------------------------------------------------------------------------------
# Evidence: stage 3 vs the stage-1 decoder on z_q
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage3Comparison:
    """Denoising loss (same x0, sigma and noise draws) and multi-scale mel distance of decodes, on z_q."""

    stage1_denoising_loss: float
    stage3_denoising_loss: float
    stage1_mel_distance: float
    stage3_mel_distance: float
    draws: int
    seeds: tuple[int, ...]


@torch.no_grad()
def compare_decoders(stage1_model, stage3_model, quantizer, clips: Sequence[Clip], *, num_steps: int | None = None,
                     draws: int = 16, seeds: Sequence[int] = (0, 1)) -> Stage3Comparison:
    """Score the stage-1 and stage-3 decoders on the same z_q (codes from the shared frozen g_psi + QINCo2).

    Denoising loss: mean over clips and ``draws`` seeded (sigma, noise) draws, identical for both models.
    Mel distance: DAC multi-scale log-mel distance between each clip and its decode from z_q, mean over
    clips and ``seeds``.
    """
    from codecbench.bench.core.spectral import multiscale_mel_distance
    from codecbench.codecs.spresso.train import step_generator

    engines = [DiscreteSPresso(stage1_model, quantizer), DiscreteSPresso(stage3_model, quantizer)]
    data = precompute(engines[0], clips, num_steps)  # g_psi and the quantiser are shared: same z_q for both
    losses, mels = [0.0, 0.0], [0.0, 0.0]
    for j, engine in enumerate(engines):
        model = engine.model.eval()
        device = engine.quantizer.data_mean.device
        for p in data:
            for d in range(draws):
                loss = model.denoising_loss(p.x0[None].to(device), p.zq[None].to(device), step_generator(10_007, d))
                losses[j] += float(loss) / (draws * len(data))
            for seed in seeds:
                decoded = model.decode(p.zq[None].to(device), p.audio.shape[-1], int(seed)).cpu()
                mel = multiscale_mel_distance(p.audio[None, None], decoded[:, None], 48000)
                mels[j] += float(mel[0]) / (len(seeds) * len(data))
    return Stage3Comparison(losses[0], losses[1], mels[0], mels[1], draws, tuple(int(s) for s in seeds))
