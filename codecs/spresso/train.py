"""S-PRESSO training: AudioAE (train-ae), DiT pretraining (pretrain-dit) and stage 1 (train-stage1).

Every stage writes into its output folder:

- ``checkpoint.pt``: latest state with optimizers (resume: rerun the same command; a kill loses at most
  ``checkpoint_every_steps`` steps, Ctrl-C saves first);
- ``<kind>.pt``: the final model without optimizer state (``audio_ae.pt``, ``dit.pt``, ``stage1.pt``);
- ``losses.csv``: one row per ``log_every_steps`` (step, named losses, lr, elapsed_s);
- ``config.yaml``: the resolved config.

Batches and noise depend only on (seed, step), so a resumed run equals an uninterrupted one.

GPU scale (``codecs/spresso/loop.py``; settings in each training section, defaults = the original fp32 loop):
``precision: bf16`` (autocast, fp32 master weights, TF32 on CUDA), ``compile``, ``grad_accum_steps``, DDP under
``torchrun`` (each rank reads its rows of the global batch; ``batch_size`` is the effective batch),
``ema_decay`` (EMA weights validated and exported), ``lr_schedule: cosine``, ``val_every_steps`` with
``val_data`` (``val.csv``: loss and, for the AudioAE and stage 1, mel distance on held-out clips; TensorBoard
scalars too when it imports), ``num_workers`` (crops read by DataLoader workers), ``keep_checkpoints``.
``checkpoint.pt`` holds only the trained weights (frozen AudioAE / base DiT are left out; their sha256 is
stored and checked on resume); the exported ``<kind>.pt`` holds the whole model (EMA weights when enabled).
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
from codecbench.codecs.spresso import loop
from codecbench.codecs.spresso.audio_ae import (
    AudioAE,
    MultiResolutionDiscriminator,
    ReconstructionLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from codecbench.codecs.spresso.config import SPressoConfig, TrainConfig, load_config
from codecbench.codecs.spresso.data import Batch, ClipSource, demo_like_clips, stream_batches
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
    ema: loop.EMA | None = None
    validate: Callable[[Any, torch.Generator], dict[str, float]] | None = None  # held-out metrics, no grad
    train: TrainConfig | None = None  # default: the config's ``section``
    file_name: str = ""  # the exported model (default ``<kind>.pt``)
    must_match: tuple[str, ...] = ()  # keys of ``extra`` a resumed checkpoint must share (e.g. the QINCo2 sha256)
    config_extra: dict[str, Any] | None = None  # more sections of ``config.yaml``
    card_lines: list[str] | None = None  # more lines of ``MODEL_CARD.md`` (e.g. rates measured from codes)

    def settings(self, config: SPressoConfig) -> TrainConfig:
        return self.train if self.train is not None else getattr(config, self.section)

    def export_name(self) -> str:
        return self.file_name or f"{self.kind}.pt"


def to_device(batch: Any, device: str) -> Any:
    """A :class:`Batch` or a tuple of tensors (stage 3) on ``device`` (``has_text`` stays where it is)."""
    if isinstance(batch, Batch):
        return Batch(batch.audio.to(device), None if batch.text is None else batch.text.to(device), batch.has_text)
    return tuple(t.to(device) for t in batch)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The noise generator of one step (depends only on seed and step)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _optimizer(params: list[nn.Parameter], train: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, betas=(0.8, 0.99))


def _set_lr(optimizers: dict[str, torch.optim.Optimizer], train: TrainConfig, step: int, total: int) -> float:
    lr = loop.learning_rate(train.lr, step, total, train.warmup_steps, train.lr_schedule, train.min_lr_ratio)
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = lr
    return lr


def _clip(params: list[nn.Parameter], max_norm: float) -> None:
    if max_norm > 0:
        nn.utils.clip_grad_norm_(params, max_norm)


def _data(data: ClipSource | str | Path | None) -> ClipSource | None:
    if data is None:
        return None
    return data if isinstance(data, ClipSource) else ClipSource.from_folder(data)


def _split(batch: Batch, parts: int) -> list[Batch]:
    """``parts`` equal micro-batches of ``batch``."""
    if parts == 1:
        return [batch]
    n = batch.audio.shape[0]
    if n % parts:
        raise ConfigError(f"a batch of {n} does not split into {parts} micro-batches")
    size = n // parts
    return [Batch(batch.audio[i * size:(i + 1) * size],
                  None if batch.text is None else batch.text[i * size:(i + 1) * size],
                  batch.has_text[i * size:(i + 1) * size]) for i in range(parts)]


def _ema(params: list[nn.Parameter], train: TrainConfig) -> loop.EMA | None:
    return loop.EMA(params, train.ema_decay) if train.ema_decay > 0 else None


# --------------------------------------------------------------------------------------------------------------
# The loop (shared by the three stages)
# --------------------------------------------------------------------------------------------------------------


def run_stage(stage: Stage, config: SPressoConfig, data: Any, out_dir: str | Path, device: str = "cpu",
              steps: int | None = None, progress: bool = True, val_data: Any = None) -> Path:
    """Train ``stage`` to ``steps`` (default: the config's), resuming from ``out_dir/checkpoint.pt`` if present.

    ``data`` / ``val_data``: a :class:`ClipSource` (or its folder) or any source with the same ``batch(batch_size,
    segment_samples, seed, step, rows)``, ``len`` and ``hours`` (stage 3's latent pairs). Under torchrun every
    rank runs this; rank 0 writes the files. Returns the path of the exported model (``out_dir/<kind>.pt``).
    """
    from tqdm import tqdm

    train: TrainConfig = stage.settings(config)
    where = loop.ranks(device)
    loop.enable_tf32(device)
    total = train.steps if steps is None else steps
    if train.batch_size % (where.world * train.grad_accum_steps):
        raise ConfigError(f"{stage.section}.batch_size {train.batch_size} is not a multiple of ranks x "
                          f"grad_accum_steps = {where.world} x {train.grad_accum_steps}")
    out_dir = Path(out_dir)
    if where.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(".*.pt.*.tmp"):  # a save cut short by a kill (checkpoints are written atomically)
            stale.unlink()
        (out_dir / "config.yaml").write_text(yaml.safe_dump({**config.to_dict(), **(stage.config_extra or {})},
                                                            sort_keys=False))
    latest, log_path, val_path = out_dir / "checkpoint.pt", out_dir / "losses.csv", out_dir / "val.csv"
    digests = {name: loop.frozen_digest(m) for name, m in stage.modules.items()}
    start = 0
    if latest.is_file():
        payload = load_checkpoint(latest, stage.kind, config)
        for key in stage.must_match:
            if payload["extra"].get(key) != stage.extra.get(key):
                raise ConfigError(f"{latest}: was trained with another {key.removesuffix('_sha256')} file (sha256 "
                                  f"{str(payload['extra'].get(key))[:12]}); use a new output folder")
        saved_digests = payload["extra"].get("frozen_sha256", {})
        for name, module in stage.modules.items():
            loop.load_trainable_state(module, payload["model"][name], saved_digests.get(name), str(latest))
        for name, opt in stage.optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
        if stage.ema is not None and "__ema__" in payload["optimizers"]:
            stage.ema.load_state_dict(payload["optimizers"]["__ema__"])
        start = int(payload["step"])
        final = out_dir / stage.export_name()
        if start == total and final.is_file():
            return final  # already finished
        if start > total:
            raise ConfigError(f"{latest}: checkpoint is at step {start}, past the requested {total} steps")
    loop.broadcast_parameters(list(stage.modules.values()), where)
    segment = int(round(train.segment_s * config.audio_ae.sample_rate_hz))
    rows = _read_log(log_path, start)
    val_rows = _read_log(val_path, start)
    started, elapsed0 = time.perf_counter(), (float(rows[-1]["elapsed_s"]) if rows else 0.0)
    for module in stage.modules.values():
        module.to(device).train()
        if train.compile:
            module.compile()
    val_data = _data(val_data) if isinstance(val_data, (str, Path)) else val_data
    scalars = loop.ScalarLog(out_dir, where.is_main)
    saved_step = start if latest.is_file() else None

    def save(step: int, path: Path, with_optim: bool = True) -> None:
        nonlocal saved_step
        if not where.is_main:
            return
        if with_optim:  # resume checkpoint: trained weights only, frozen ones by hash; older ones rotated
            model = {n: loop.trainable_state(m) for n, m in stage.modules.items()}
            optim = {n: o.state_dict() for n, o in stage.optimizers.items()}
            if stage.ema is not None:
                optim["__ema__"] = stage.ema.state_dict()
            loop.rotate_checkpoints(path, train.keep_checkpoints, saved_step)
            save_checkpoint(path, stage.kind, config, model, step, optim, {**stage.extra, "frozen_sha256": digests})
            saved_step = step
        else:  # the exported model: whole, with the EMA weights when enabled
            with loop.maybe_swapped(stage.ema):
                model = {n: m.state_dict() for n, m in stage.modules.items()}
                save_checkpoint(path, stage.kind, config, model, step, None,
                                {**stage.extra, "ema_decay": train.ema_decay})

    rank_rows = slice(where.rank * train.batch_size // where.world, (where.rank + 1) * train.batch_size // where.world)

    def validate(step: int) -> None:
        if stage.validate is None or val_data is None or not train.val_every_steps:
            return
        for module in stage.modules.values():
            module.eval()
        sums: dict[str, float] = {}
        with loop.maybe_swapped(stage.ema), torch.no_grad(), loop.autocast(train.precision, device):
            for i in range(train.val_batches):
                # every rank scores its rows of the same held-out batch (with its own noise draws), averaged
                batch = to_device(val_data.batch(train.batch_size, segment, train.seed + 104729, i,
                                                 rank_rows if where.world > 1 else None), device)
                for k, v in stage.validate(batch, step_generator(train.seed + 104729, i)).items():
                    sums[k] = sums.get(k, 0.0) + float(v) / train.val_batches
        for module in stage.modules.values():
            module.train()
        sums = loop.average_scalars(sums, where)
        if where.is_main:
            val_rows.append({"step": step, **{f"val_{k}": v for k, v in sums.items()}})
            _write_log(val_path, val_rows)
            scalars.add("val", sums, step)

    batches = stream_batches(data, train.batch_size, segment, train.seed, start, total,
                             rank_rows if where.world > 1 else None, train.num_workers)
    step = start
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"spresso {Path(stage.export_name()).stem}",
               disable=not progress or not where.is_main)
    try:
        for step in bar:
            lr = _set_lr(stage.optimizers, train, step, total)
            batch_step, batch = next(batches)
            assert batch_step == step, (batch_step, step)
            batch = to_device(batch, device)
            losses = stage.step_fn(batch, step_generator(train.seed, step), step)
            bar.set_postfix(loss=f"{losses['loss']:.4f}")
            if where.is_main and ((step + 1) % train.log_every_steps == 0 or step + 1 == total):
                rows.append({"step": step + 1, **losses, "lr": lr,
                             "elapsed_s": elapsed0 + time.perf_counter() - started})
                _write_log(log_path, rows)
                scalars.add("train", {**losses, "lr": lr}, step + 1)
            if train.val_every_steps and ((step + 1) % train.val_every_steps == 0 or step + 1 == total):
                validate(step + 1)
            if (step + 1) % train.checkpoint_every_steps == 0 or step + 1 == total:
                save(step + 1, latest)
    except KeyboardInterrupt:
        done = step  # the interrupted step did not finish
        if done > start:
            with loop.ignoring_interrupts():  # a second SIGINT (Slurm + torchrun) must not abort this save
                save(done, latest)
        raise
    finally:
        scalars.close()
    if stage.finish is not None:
        stage.finish()
    final = out_dir / stage.export_name()
    save(total, final, with_optim=False)
    if stage.finish is not None:  # statistics changed the model: the resume point must carry them
        save(total, latest)
    if where.is_main:
        (out_dir / "MODEL_CARD.md").write_text(model_card(stage, config, data, val_data, final, rows, val_rows,
                                                          where.world))
    return final


def model_card(stage: Stage, config: SPressoConfig, data: Any, val_data: Any, final: Path,
               rows: list[dict[str, Any]], val_rows: list[dict[str, Any]], world: int) -> str:
    """Markdown card of one trained model: data, steps, settings, last training and held-out losses."""
    train: TrainConfig = stage.settings(config)
    hours = lambda source: source.hours  # noqa: E731
    last = rows[-1] if rows else {}
    lines = [
        f"# S-PRESSO {final.stem} model card: {final.name} (sha256 {file_digest(final)[:12]})", "",
        f"- config: {config.name}; time_pool t = {config.latent_encoder.time_pool}"
        + (f" (z {100 / config.latent_encoder.time_pool:.4g} Hz)" if stage.kind == "stage1" else ""),
        f"- data: {len(data)} clips, {hours(data):.3f} h"
        + (f"; held out: {len(val_data)} clips, {hours(val_data):.3f} h" if val_data is not None else
           "; no held-out clips (no validation)"),
        f"- steps: {last.get('step', 0)} of batch {train.batch_size} x {train.segment_s:g} s ({world} rank(s), "
        f"{train.grad_accum_steps} micro-batch(es)), lr {train.lr:g} ({train.lr_schedule}), precision "
        f"{train.precision}, EMA {train.ema_decay:g}",
        "- last training losses: " + ", ".join(f"{k} {float(v):.5g}" for k, v in last.items()
                                               if k not in ("step", "elapsed_s", "lr")),
        "- held-out: " + (", ".join(f"{k} {float(v):.5g}" for k, v in val_rows[-1].items() if k != "step")
                          + f" (step {val_rows[-1]['step']})" if val_rows else "not measured"),
        f"- frozen inputs: {', '.join(f'{k} {v}' for k, v in stage.extra.items() if k.endswith('sha256')) or 'none'}",
        *(stage.card_lines or []),
        "", "Trained with codecbench (random-init start; no published S-PRESSO weights).", "",
    ]
    return "\n".join(lines)


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
    where = loop.ranks(device)
    if train.grad_accum_steps != 1:
        raise ConfigError("train_ae.grad_accum_steps: the AudioAE's GAN step takes whole batches (set 1; use more "
                          "ranks or a smaller batch_size)")
    ema = _ema(list(ae.parameters()), train)
    amp = lambda: loop.autocast(train.precision, device)  # noqa: E731

    def step_fn(batch: Batch, generator: torch.Generator, step: int) -> dict[str, float]:
        audio = batch.audio
        with amp():
            recon = ae(audio)
        losses: dict[str, torch.Tensor] = {}
        if adversarial:
            opt_d.zero_grad()
            with amp():
                losses["disc"] = discriminator_loss(disc(audio), disc(recon.detach()))
            losses["disc"].float().backward()
            loop.average_gradients(list(disc.parameters()), where)
            _clip(list(disc.parameters()), train.grad_clip)
            opt_d.step()
            with amp():
                real, fake = disc(audio), disc(recon)
                losses["adv"], losses["fm"] = generator_adversarial_loss(fake), feature_matching_loss(real, fake)
        recon32 = recon.float()
        losses["mel"], losses["stft"] = recon_loss.mel(recon32, audio), recon_loss.stft(recon32, audio)
        total = sum(weights[k] * v.float() for k, v in losses.items() if k in weights)
        opt_g.zero_grad()
        total.backward()
        loop.average_gradients(list(ae.parameters()), where)
        _clip(list(ae.parameters()), train.grad_clip)
        opt_g.step()
        if ema is not None:
            ema.update()
        return loop.average_scalars({"loss": total.item(), **{k: v.item() for k, v in losses.items()}}, where)

    def validate(batch: Batch, generator: torch.Generator) -> dict[str, float]:
        recon = ae(batch.audio).float()
        return {"loss": float(recon_loss.mel(recon, batch.audio)), "mel_distance": _mel_distance(batch.audio, recon)}

    def finish() -> None:
        with loop.maybe_swapped(ema):  # statistics of the exported (EMA) weights
            set_latent_stats(ae, data, config, device)

    return Stage("audio_ae", "train_ae", {"ae": ae, "discriminator": disc}, {"ae": opt_g, "disc": opt_d}, step_fn,
                 {}, finish, ema, validate)


def _mel_distance(reference: torch.Tensor, decoded: torch.Tensor, sample_rate_hz: int = 48000) -> float:
    """Mean multi-scale mel distance (codecbench's metric) of decoded [B, T] against reference [B, T]."""
    from codecbench.bench.core.spectral import multiscale_mel_distance

    values = multiscale_mel_distance(reference[:, None].float().cpu(), decoded[:, None].float().cpu(), sample_rate_hz)
    return float(torch.as_tensor(values).float().mean())


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
    params = list(dit.parameters())
    opt = _optimizer(params, train)
    ema = _ema(params, train)

    def loss_fn(batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            x0 = ae.encode(batch.audio)
        keep = text_keep_mask(x0.shape[0], batch.text, batch.has_text, train.text_dropout, generator)
        return diffusion.training_loss(dit, x0, generator, text=batch.text, text_keep=keep), {}

    def validate(batch: Batch, generator: torch.Generator) -> dict[str, float]:
        x0 = ae.encode(batch.audio)
        keep = text_keep_mask(x0.shape[0], batch.text, batch.has_text, 0.0, generator)
        return {"loss": float(diffusion.training_loss(dit, x0, generator, text=batch.text, text_keep=keep))}

    step_fn = loop.make_step(loss_fn, params, opt, train, device, loop.ranks(device), ema, _split, _clip)
    extra = {"ae_checkpoint": str(ae_checkpoint), "ae_sha256": file_digest(ae_checkpoint)}
    return Stage("dit", "pretrain_dit", {"dit": dit}, {"dit": opt}, step_fn, extra, None, ema, validate)


def stage1_stage(config: SPressoConfig, data: ClipSource, ae_checkpoint: str | Path, dit_checkpoint: str | Path,
                 device: str = "cpu") -> Stage:
    """Stage 1: g_psi, f_phi and LoRA trained jointly with the denoising loss; AudioAE and base DiT frozen."""
    train = config.stage1
    torch.manual_seed(train.seed)
    model = SPresso(config, load_audio_ae(ae_checkpoint, config), load_dit(dit_checkpoint, config)).to(device)
    params = model.stage1_parameters()
    opt = _optimizer(params, train)
    ema = _ema(params, train)

    def loss_fn(batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = model.encode_latents(batch.audio)
        return model.stage1_loss(x0, generator, batch.text, train.text_dropout, batch.has_text), {}

    def validate(batch: Batch, generator: torch.Generator) -> dict[str, float]:
        x0 = model.encode_latents(batch.audio)
        loss = float(model.stage1_loss(x0, generator, None, 1.0, None))  # null text, as the codec decodes
        decoded = model.decode(model.encode(batch.audio), batch.audio.shape[-1], seed=0)
        return {"loss": loss, "mel_distance": _mel_distance(batch.audio, decoded)}

    step_fn = loop.make_step(loss_fn, params, opt, train, device, loop.ranks(device), ema, _split, _clip)

    extra = {
        "ae_checkpoint": str(ae_checkpoint), "ae_sha256": file_digest(ae_checkpoint),
        "dit_checkpoint": str(dit_checkpoint), "dit_sha256": file_digest(dit_checkpoint),
    }
    return Stage("stage1", "stage1", {"spresso": model}, {"stage1": opt}, step_fn, extra, None, ema, validate)


# --------------------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------------------


def train_audio_ae(config: SPressoConfig, data: ClipSource | str | Path, out_dir: str | Path, device: str = "cpu",
                   steps: int | None = None, progress: bool = True, val_data: ClipSource | str | Path | None = None,
                   ) -> Path:
    data, device = _data(data), loop.local_device(device)
    return run_stage(audio_ae_stage(config, data, device), config, data, out_dir, device, steps, progress, val_data)


def pretrain_dit(config: SPressoConfig, data: ClipSource | str | Path, out_dir: str | Path, ae_checkpoint: str | Path,
                 device: str = "cpu", steps: int | None = None, progress: bool = True,
                 val_data: ClipSource | str | Path | None = None) -> Path:
    data, device = _data(data), loop.local_device(device)
    return run_stage(dit_stage(config, data, ae_checkpoint, device), config, data, out_dir, device, steps, progress,
                     val_data)


def train_stage1(config: SPressoConfig, data: ClipSource | str | Path, out_dir: str | Path, ae_checkpoint: str | Path,
                 dit_checkpoint: str | Path, device: str = "cpu", steps: int | None = None,
                 progress: bool = True, val_data: ClipSource | str | Path | None = None) -> Path:
    data, device = _data(data), loop.local_device(device)
    stage = stage1_stage(config, data, ae_checkpoint, dit_checkpoint, device)
    return run_stage(stage, config, data, out_dir, device, steps, progress, val_data)


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

