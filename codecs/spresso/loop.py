"""The GPU-scale parts of the S-PRESSO training loop, shared by the AudioAE, DiT, stage-1 and stage-3 stages
(driven by :func:`codecbench.codecs.spresso.train.run_stage`; stage 2 is an offline QINCo2 fit).

- precision: ``bf16`` autocast (weights and optimizer state stay fp32) and TF32 matmuls on CUDA;
- multi-process data parallelism under ``torchrun`` (any backend: NCCL on GPUs, gloo on CPUs): every rank reads
  only its rows of the step's global batch, gradients are averaged over ranks (one flattened all-reduce), logged
  losses are averaged too, so N ranks x A micro-batches follow the trajectory of one process with N x A
  micro-batches (tested on gloo);
- gradient accumulation: ``grad_accum_steps`` micro-batches per optimizer step;
- EMA of the trained weights (:class:`EMA`), swapped in for validation and export;
- warm-up then cosine (or constant) learning rate (:func:`learning_rate`);
- trainable-only resume checkpoints with the sha256 of the frozen weights (:func:`trainable_state`,
  :func:`frozen_digest`), rotation of older ones (:func:`rotate_checkpoints`);
- TensorBoard scalars in ``<out>/tensorboard`` when ``torch.utils.tensorboard`` imports (the ``tensorboard``
  package is optional; CSV logs are always written).

Shapes: B batch (global, per optimizer step), b = B / (ranks x micro-batches), T samples.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from codecbench.bench.core.errors import ConfigError
from torch import nn

# --------------------------------------------------------------------------------------------------------------
# Distributed
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks(device: str | torch.device = "cpu") -> Ranks:
    """This process's rank and the world size; starts the process group under torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if torch.device(device).type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def local_device(device: str) -> str:
    """``cuda`` under torchrun -> ``cuda:<LOCAL_RANK>``."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def average_gradients(params: Sequence[nn.Parameter], where: Ranks) -> None:
    """Mean of the gradients over ranks (one flattened all-reduce); no-op in one process."""
    if where.world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= where.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_scalars(values: dict[str, float], where: Ranks) -> dict[str, float]:
    if where.world == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / where.world for k, v in zip(keys, t.tolist())}


@torch.no_grad()
def broadcast_parameters(modules: Sequence[nn.Module], where: Ranks) -> None:
    """Rank 0's weights on every rank (the same seed already gives them; this guards against drift)."""
    if where.world == 1:
        return
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, 0)


# --------------------------------------------------------------------------------------------------------------
# Precision
# --------------------------------------------------------------------------------------------------------------


def autocast(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device's type (cuda or cpu), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ConfigError(f"precision {precision!r} is not one of fp32, bf16")
    return contextlib.nullcontext()


def enable_tf32(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


# --------------------------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------------------------


class EMA:
    """Exponential moving average of parameters: shadow = decay x shadow + (1 - decay) x param after each step."""

    def __init__(self, params: Sequence[nn.Parameter], decay: float):
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"EMA decay must be in (0, 1), got {decay}")
        self.params, self.decay = list(params), decay
        self.shadow = [p.detach().clone().float() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach().float(), 1.0 - self.decay)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The EMA weights in the model inside the block; the trained weights restored after."""
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": [s.cpu() for s in self.shadow]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ConfigError("EMA state does not match the trained parameters")
        self.shadow = [s.to(p.device).float() for s, p in zip(state["shadow"], self.params)]


def maybe_swapped(ema: EMA | None) -> contextlib.AbstractContextManager:
    return ema.swapped() if ema is not None else contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------------------
# Learning rate
# --------------------------------------------------------------------------------------------------------------


def learning_rate(base_lr: float, step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine down to ``min_ratio`` x lr at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / max(1, warmup)
    if schedule == "constant":
        return base_lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# --------------------------------------------------------------------------------------------------------------
# Checkpoints: trainable weights + hash of the frozen ones; rotation
# --------------------------------------------------------------------------------------------------------------


def frozen_names(module: nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if not p.requires_grad}


def frozen_digest(module: nn.Module) -> str:
    """sha256 over the frozen parameters (name, shape, bytes) of ``module``; "" when none is frozen."""
    names = frozen_names(module)
    if not names:
        return ""
    h = hashlib.sha256()
    for name, p in module.named_parameters():
        if name in names:
            h.update(name.encode())
            h.update(str(tuple(p.shape)).encode())
            h.update(p.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without the frozen parameters (buffers kept: they are small)."""
    names = frozen_names(module)
    return {k: v for k, v in module.state_dict().items() if k not in names}


def load_trainable_state(module: nn.Module, state: dict[str, torch.Tensor], digest: str | None, where: str) -> None:
    """Load a (possibly trainable-only) state; the frozen weights must hash to ``digest`` when it is given."""
    if digest is not None and digest != frozen_digest(module):
        raise ConfigError(f"{where}: the frozen weights (AudioAE / base DiT) differ from those this checkpoint was "
                          f"trained with (sha256 {digest[:12]}); resume with the same --ae / --dit files")
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in frozen_names(module)]
    if missing or unexpected:
        raise ConfigError(f"{where}: checkpoint does not fit the model (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]})")


def rotate_checkpoints(latest: Path, keep: int, step_of_previous: int | None) -> None:
    """Before ``latest`` is overwritten: keep the previous one as ``checkpoint-<step>.pt`` when ``keep`` > 1 and
    delete the oldest beyond ``keep`` - 1 kept copies."""
    if keep <= 1 or not latest.is_file() or step_of_previous is None:
        return
    os.replace(latest, latest.with_name(f"{latest.stem}-{step_of_previous:09d}{latest.suffix}"))
    kept = sorted(latest.parent.glob(f"{latest.stem}-*{latest.suffix}"))
    for old in kept[: max(0, len(kept) - (keep - 1))]:
        old.unlink()


@contextlib.contextmanager
def ignoring_interrupts() -> Iterator[None]:
    """SIGINT ignored inside the block (the checkpoint written after a Ctrl-C). Under Slurm's ``--signal=INT``
    every process of the job step gets the signal and torchrun forwards it again, so a worker sees it twice;
    the second one used to abort that save (seen on a Slurm rehearsal). No-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------------------------------------------
# The optimizer step: micro-batches, autocast, gradient averaging, clipping, EMA
# --------------------------------------------------------------------------------------------------------------


LossFn = Callable[[Any, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


def micro_generator(seed: int, step: int, index: int) -> torch.Generator:
    """Noise of micro-batch ``index`` (global over ranks) of ``step``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 4099 + index + 1)


def make_step(loss_fn: LossFn, params: Sequence[nn.Parameter], optimizer: torch.optim.Optimizer, train: Any,
              device: str, where: Ranks, ema: EMA | None, split: Callable[[Any, int], list[Any]],
              clip: Callable[[Sequence[nn.Parameter], float], None]) -> Callable[[Any, torch.Generator, int], dict]:
    """One optimizer step over this rank's batch: ``grad_accum_steps`` micro-batches (``split``), each under
    autocast with its own noise (the step's generator when there is one micro-batch in all), gradients averaged
    over ranks, clipped, optimizer step, EMA update. Returns the losses averaged over micro-batches and ranks."""
    params = list(params)
    micro = train.grad_accum_steps

    def step_fn(batch: Any, generator: torch.Generator, step: int) -> dict[str, float]:
        optimizer.zero_grad(set_to_none=True)
        parts = split(batch, micro)
        sums: dict[str, float] = {}
        for i, part in enumerate(parts):
            g = generator if micro * where.world == 1 else micro_generator(train.seed, step, where.rank * micro + i)
            with autocast(train.precision, device):
                loss, logs = loss_fn(part, g)
            (loss.float() / micro).backward()
            for k, v in {"loss": float(loss.detach()), **logs}.items():
                sums[k] = sums.get(k, 0.0) + float(v) / micro
        average_gradients(params, where)
        clip(params, train.grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update()
        return average_scalars(sums, where)

    return step_fn


# --------------------------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------------------------


class ScalarLog:
    """TensorBoard scalars in ``folder/tensorboard`` when ``torch.utils.tensorboard`` imports; else nothing
    (CSV files are written by the loop in any case). ``available`` says which."""

    def __init__(self, folder: Path, enabled: bool):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional tensorboard package is not installed
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(folder / "tensorboard"))

    @property
    def available(self) -> bool:
        return self.writer is not None

    def add(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k not in ("step", "elapsed_s"):
                    self.writer.add_scalar(f"{prefix}/{k}", v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
