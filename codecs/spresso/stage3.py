"""S-PRESSO stage 3: finetune f_phi and the DiT's LoRA on precomputed quantised latents z_q (stage-1 loss).

Shapes: B batch, T samples (48 kHz), D AudioAE latent dims, F AudioAE frames (100 Hz), Dz z dims, Fz z frames,
t time pooling (F = t x Fz for whole windows), m QINCo2 steps.

g_psi and the quantiser are frozen, so for every clip the AudioAE latents x0 [D, F] and z_q [Dz, Fz] are computed
once and written to ``<out>/pairs/`` one clip at a time (:func:`precompute_to_folder`; the corpus is streamed, never
held in memory; the files are memory-mapped, so a batch reads only its windows); training crops aligned windows (a z frame and its t AudioAE frames) and minimises the
stage-1 denoising loss ``SPresso.denoising_loss(x0, z_q)`` (null text: precomputed clips carry no captions) over
the stage-3 parameters (``SPresso.decoder_parameters()``: f_phi and LoRA; everything else frozen).

Training runs through the same loop as the other stages (:func:`codecbench.codecs.spresso.train.run_stage`: bf16,
micro-batches, DDP, EMA, warm-up + cosine, periodic validation with ``val_data`` -- denoising loss and mel distance
of decodes from z_q of held-out clips, EMA weights -- TensorBoard, rotated trainable-only checkpoints). The output
folder holds, like stage 1:

- ``checkpoint.pt``: latest state with the optimizer (rerun the same command to resume; a kill loses at most
  ``checkpoint_every_steps`` steps; Ctrl-C saves first);
- ``stage3.pt``: the final model. It is a ``stage1``-kind S-PRESSO model file (same modules, so
  ``load_stage1`` reads it) with ``extra.stage = 3`` and the QINCo2 file's path and sha256;
- ``losses.csv``: step, loss, lr, elapsed_s; ``val.csv`` (with ``val_data``); ``config.yaml``: the resolved
  config; ``MODEL_CARD.md``: data, steps, losses, and the rate measured from the codes of the training clips;
- ``pairs/`` (and ``val_pairs/``, with the held-out audio): the precomputed (x0, z_q) files.

Batches and noise depend only on (seed, step), so a resumed run equals an uninterrupted one. Training settings
come from the stage-1 checkpoint's ``stage1`` section (lr, batch size, segment, warm-up, clipping, seed) unless
overridden; the step count defaults to 15 % of stage 1's (paper-notes section 6 suggests 10-25 %; NR).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.bench.core.weights import file_digest
from codecbench.codecs.spresso.discrete import DiscreteSPresso
from codecbench.codecs.spresso.stage2 import Clip, clip_count, iter_clips

STAGE3_FRACTION_OF_STAGE1 = 0.15


@dataclass(frozen=True)
class Precomputed:
    """One clip's AudioAE latents ``x0`` [D, F] and quantised latents ``zq`` [Dz, Fz], and its ``audio`` [T]."""

    name: str
    x0: torch.Tensor
    zq: torch.Tensor
    audio: torch.Tensor | None


@torch.no_grad()
def precompute(engine: DiscreteSPresso, clips: Iterable[Clip], num_steps: int | None = None) -> list[Precomputed]:
    """x0 and z_q (QINCo2 codes of z, first ``num_steps`` steps, decoded) for every clip, on the CPU (in memory:
    for the few clips of an evaluation; training uses :func:`precompute_to_folder`)."""
    return [_one(engine, clip, num_steps)[0] for clip in clips]


def _one(engine: DiscreteSPresso, clip: Clip, num_steps: int | None) -> tuple[Precomputed, int]:
    """One clip's pair and the number of code values sent for it (z frames x m)."""
    device = engine.quantizer.data_mean.device
    audio = torch.from_numpy(clip.audio)[None].to(device)
    x0 = engine.model.encode_latents(audio)
    codes = engine.encode_codes(audio, num_steps)
    zq = engine.quantized_latents(codes)
    return Precomputed(clip.name, x0[0].cpu(), zq[0].cpu(), audio[0].cpu()), int(codes[0].size)


@dataclass(frozen=True)
class StoredPair:
    """One clip's precomputed pair on disk (``<index>.x0.npy`` [D, F], ``.zq.npy`` [Dz, Fz], optional
    ``.audio.npy`` [T]); the arrays are memory-mapped when read, so only the windows of a batch enter memory."""

    name: str
    folder: Path
    index: int
    frames: int  # F, AudioAE frames
    with_audio: bool

    def _array(self, part: str) -> np.ndarray:
        return np.load(self.folder / f"{self.index:08d}.{part}.npy", mmap_mode="r")

    @property
    def x0(self) -> np.ndarray:
        return self._array("x0")

    @property
    def zq(self) -> np.ndarray:
        return self._array("zq")

    @property
    def audio(self) -> np.ndarray | None:
        return self._array("audio") if self.with_audio else None


def precompute_to_folder(engine: DiscreteSPresso, data, folder: str | os.PathLike, num_steps: int | None,
                         key: dict[str, Any], with_audio: bool = False, where=None,
                         ) -> tuple[list[StoredPair], dict[str, float]]:
    """x0 and z_q of every clip of ``data`` written one clip at a time under ``folder`` (only one clip's audio in
    memory), resumable (clips already written are kept); under torchrun each rank writes its share. ``key`` (the
    stage-1 and QINCo2 sha256, m) must match a folder written before. Returns the stored pairs and the totals
    (seconds, code values, AudioAE frames) from which the card's rates are measured."""
    import torch.distributed as dist
    from codecbench.codecs.spresso import loop

    folder = Path(folder)
    where = where or loop.Ranks()
    key_path = folder / "key.json"
    if key_path.is_file() and json.loads(key_path.read_text()) != key:  # checked on every rank: none waits
        raise ConfigError(f"{key_path}: these pairs were computed with another stage-1 checkpoint, QINCo2 file "
                          "or number of steps; use a new output folder")
    if where.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        key_path.write_text(json.dumps(key))
    if dist.is_initialized():
        dist.barrier()
    count = clip_count(data)
    mine = [i for i in range(count) if i % where.world == where.rank]
    todo = [i for i in mine if not (folder / f"{i:08d}.json").is_file()]
    for i, clip in zip(todo, iter_clips(data, todo)):
        pair, codes = _one(engine, clip, num_steps)
        parts = {"x0": pair.x0, "zq": pair.zq}
        if with_audio:  # zero-padded to whole AudioAE frames, so every window's audio has its full length
            hop = engine.model.config.audio_ae.hop
            parts["audio"] = torch.nn.functional.pad(pair.audio, (0, pair.x0.shape[-1] * hop - len(pair.audio)))
        for part, value in parts.items():
            tmp = folder / f".{i:08d}.{part}.tmp.npy"
            np.save(tmp, value.numpy().astype(np.float32))
            tmp.replace(folder / f"{i:08d}.{part}.npy")
        meta = {"name": clip.name, "frames": int(pair.x0.shape[-1]), "seconds": len(clip.audio) / 48000,
                "code_values": codes, "audio": with_audio}
        (folder / f".{i:08d}.json.tmp").write_text(json.dumps(meta))
        (folder / f".{i:08d}.json.tmp").replace(folder / f"{i:08d}.json")
    if dist.is_initialized():
        dist.barrier()
    pairs, totals = [], {"seconds": 0.0, "code_values": 0.0, "frames": 0.0}
    for i in range(count):
        meta = json.loads((folder / f"{i:08d}.json").read_text())
        pairs.append(StoredPair(meta["name"], folder, i, meta["frames"], bool(meta["audio"])))
        totals["seconds"] += meta["seconds"]
        totals["code_values"] += meta["code_values"]
        totals["frames"] += meta["frames"]
    return pairs, totals


def _window(array, start: int, stop: int) -> torch.Tensor:
    """array[..., start:stop] as a tensor (a copy of the window only, for memory-mapped arrays)."""
    if isinstance(array, torch.Tensor):
        return array[..., start:stop]
    return torch.from_numpy(np.array(array[..., start:stop], dtype=np.float32, copy=True))


class LatentPairs:
    """Aligned random windows of (x0, z_q): ``batch`` -> x0 [B, D, W x t], z_q [B, Dz, W] (and the audio
    [B, W x t x 480] when every item has it), by (seed, step). Items are :class:`Precomputed` (in memory) or
    :class:`StoredPair` (memory-mapped files: a batch reads only its windows)."""

    def __init__(self, items: Sequence[Precomputed | StoredPair], time_pool: int, window_frames: int,
                 hop: int = 480, sample_rate_hz: int = 48000, with_audio: bool = False):
        self.time_pool, self.window, self.hop, self.sample_rate_hz = time_pool, window_frames, hop, sample_rate_hz
        self.items = [p for p in items if _frames(p) >= window_frames * time_pool]
        if not self.items:
            longest = max((_frames(p) for p in items), default=0) / 100.0
            raise ConfigError(
                f"stage 3: no clip is as long as one training window ({window_frames * time_pool} AudioAE frames = "
                f"{window_frames * time_pool / 100.0:g} s; longest clip {longest:g} s); shorten segment_s"
            )
        if with_audio and any(p.audio is None for p in self.items):
            raise ConfigError("stage 3: held-out pairs need their audio (precompute_to_folder(..., with_audio=True))")
        self.with_audio = with_audio
        self.total_frames = sum(_frames(p) for p in items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def hours(self) -> float:
        return self.total_frames * self.hop / self.sample_rate_hz / 3600

    def batch(self, batch_size: int, segment_samples: int = 0, seed: int = 0, step: int = 0,
              rows: slice | None = None) -> tuple[torch.Tensor, ...]:
        """``segment_samples`` is ignored (the window is fixed); ``rows``: one rank's rows of the batch."""
        rng = np.random.default_rng([seed, step, 3])
        picks = []
        t, w = self.time_pool, self.window
        for _ in range(batch_size):
            item = self.items[int(rng.integers(len(self.items)))]
            whole = _frames(item) // t  # z frames whose t AudioAE frames all exist
            picks.append((item, int(rng.integers(0, whole - w + 1))))
        if rows is not None:
            picks = picks[rows]
        x0s = [_window(item.x0, start * t, (start + w) * t) for item, start in picks]
        zqs = [_window(item.zq, start, start + w) for item, start in picks]
        out = (torch.stack(x0s), torch.stack(zqs))
        if self.with_audio:
            hop = self.hop
            out += (torch.stack([_window(item.audio, start * t * hop, (start + w) * t * hop)
                                 for item, start in picks]),)
        return out


def _frames(item: Precomputed | StoredPair) -> int:
    return item.frames if isinstance(item, StoredPair) else int(item.x0.shape[-1])


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
    val_data: str | os.PathLike | Sequence[np.ndarray] | None = None,
) -> Path:
    """Finetune the stage-1 ``checkpoint``'s f_phi and LoRA on z_q from ``qinco2_path`` (first ``num_steps`` QINCo2
    steps, default all) with the shared training loop (:func:`train.run_stage`); ``overrides`` replace keys of the
    checkpoint's ``stage1`` training section (lr, batch_size, segment_s, ...). ``val_data``: held-out clips for
    the periodic validation (``val_every_steps``: denoising loss and mel distance of decodes from z_q). Resumes
    from ``out_dir/checkpoint.pt``. Returns ``out_dir/stage3.pt``."""
    from codecbench.codecs.spresso import loop
    from codecbench.codecs.spresso.model import load_stage1
    from codecbench.codecs.spresso.qinco2 import QINCo2
    from codecbench.codecs.spresso.train import Stage, _clip, _mel_distance, run_stage

    device = loop.local_device(device)
    where = loop.ranks(device)
    model = load_stage1(checkpoint, device)
    config = model.config
    try:
        train = dataclasses.replace(config.stage1, **(overrides or {}))
    except TypeError as error:
        valid = ", ".join(f.name for f in dataclasses.fields(config.stage1))
        raise ConfigError(f"stage 3 overrides: {error}; valid keys: {valid}") from None
    total = steps if steps is not None else max(1, math.ceil(STAGE3_FRACTION_OF_STAGE1 * config.stage1.steps))
    quantizer = QINCo2.load(qinco2_path, device)
    engine = DiscreteSPresso(model, quantizer)
    out_dir = Path(out_dir)
    extra = {"stage": 3, "stage1_checkpoint": str(checkpoint), "stage1_sha256": file_digest(checkpoint),
             "qinco2": str(qinco2_path), "qinco2_sha256": file_digest(qinco2_path), "qinco2_num_steps": num_steps}
    key = {k: extra[k] for k in ("stage1_sha256", "qinco2_sha256", "qinco2_num_steps")}
    window = window_frames(train.segment_s, model.time_pool, model.ae.frame_rate_hz)
    stored, totals = precompute_to_folder(engine, data, out_dir / "pairs", num_steps, key, where=where)
    pairs = LatentPairs(stored, model.time_pool, window)
    val_pairs = None
    if val_data is not None:
        val_stored, _ = precompute_to_folder(engine, val_data, out_dir / "val_pairs", num_steps, key,
                                             with_audio=True, where=where)
        val_pairs = LatentPairs(val_stored, model.time_pool, window, with_audio=True)
    bits = math.log2(quantizer.config.codebook_size)
    m = num_steps or quantizer.config.num_steps
    measured = totals["code_values"] * bits / totals["seconds"] / 1000
    card_rate = (f"- rate: {measured:.4g} kbps measured from the codes of the training clips "
                 f"({int(totals['code_values'])} code values of {bits:g} bits over {totals['seconds']:.1f} s); "
                 f"nominal {model.z_frame_rate_hz:.4g} Hz x {m} x {bits:g} bits = "
                 f"{model.z_frame_rate_hz * m * bits / 1000:.4g} kbps")

    for p in model.parameters():
        p.requires_grad_(False)
    params = model.decoder_parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, betas=(0.8, 0.99))
    if train.batch_size % (where.world * train.grad_accum_steps):
        raise ConfigError(f"stage 3: batch_size {train.batch_size} is not a multiple of ranks x grad_accum_steps = "
                          f"{where.world} x {train.grad_accum_steps}")
    ema = loop.EMA(params, train.ema_decay) if train.ema_decay > 0 else None

    def loss_fn(pair, generator):
        return model.denoising_loss(pair[0], pair[1], generator), {}

    def split(pair, parts):
        n = pair[0].shape[0] // parts
        return [tuple(t[i * n:(i + 1) * n] for t in pair) for i in range(parts)]

    def validate(pair, generator):
        x0, zq, audio = pair
        loss = float(model.denoising_loss(x0, zq, generator))
        decoded = model.decode(zq, audio.shape[-1], seed=0)  # null text, as the codec decodes
        return {"loss": loss, "mel_distance": _mel_distance(audio, decoded)}

    step_fn = loop.make_step(loss_fn, params, opt, train, device, where, ema, split, _clip)
    stage = Stage("stage1", "stage1", {"spresso": model}, {"stage3": opt}, step_fn, extra, None, ema, validate,
                  train=train, file_name="stage3.pt", must_match=("qinco2_sha256",),
                  config_extra={"stage3": {**dataclasses.asdict(train), "steps": total, "num_steps": num_steps,
                                           "qinco2": str(qinco2_path)}},
                  card_lines=[f"- stage 3 on z_q of {qinco2_path} (sha256 {extra['qinco2_sha256'][:12]}), m = {m}",
                              card_rate])
    return run_stage(stage, config, pairs, out_dir, device, total, progress, val_pairs)


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
