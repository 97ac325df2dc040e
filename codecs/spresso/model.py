"""The S-PRESSO model (AudioAE + g_psi + f_phi + LoRA-adapted DiT) and its checkpoint files.

Shapes: B batch, T samples (48 kHz), D AudioAE latent dims, F AudioAE frames (100 Hz), Dz z dims, Fz z frames.

Checkpoint files are ``torch.save`` dicts with ``format`` = "codecbench-spresso", ``format_version``, ``kind``
("audio_ae", "dit" or "stage1"), the full resolved ``config``, ``step``, ``model`` (state dicts), ``optimizers``
(for resume) and ``extra``. A stage-1 checkpoint is self-contained: AudioAE (with latent statistics), base DiT
weights, LoRA adapters, g_psi and f_phi.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso.audio_ae import AudioAE
from codecbench.codecs.spresso.config import SPressoConfig, config_differences, config_from_dict
from codecbench.codecs.spresso.diffusion import build_diffusion
from codecbench.codecs.spresso.dit import DiT
from codecbench.codecs.spresso.latent_encoder import ConditionProjector, LatentEncoder
from codecbench.codecs.spresso.lora import inject_lora, lora_parameters
from torch import nn

FORMAT = "codecbench-spresso"
FORMAT_VERSION = 1
KIND_SECTIONS = {
    "audio_ae": ("audio_ae",),
    "dit": ("audio_ae", "dit", "diffusion"),
    "stage1": ("audio_ae", "dit", "diffusion", "latent_encoder", "lora"),
}


class SPresso(nn.Module):
    """Stage-1 S-PRESSO: frozen AudioAE, g_psi, f_phi and a DiT with LoRA adapters (base weights frozen)."""

    def __init__(self, config: SPressoConfig, ae: AudioAE, dit: DiT):
        super().__init__()
        self.config = config
        self.ae, self.dit = ae, dit
        self.diffusion = build_diffusion(config.diffusion)
        self.g_psi = LatentEncoder(config.latent_encoder)
        self.f_phi = ConditionProjector(self.g_psi.z_dim, config.dit.width, config.latent_encoder.time_pool)
        self.lora_modules = inject_lora(self.dit, config.lora.rank, config.lora.alpha, config.lora.targets)
        for p in self.ae.parameters():
            p.requires_grad_(False)
        self.ae.eval()

    # -- geometry ---------------------------------------------------------------------------------------------
    @property
    def time_pool(self) -> int:
        return self.config.latent_encoder.time_pool

    @property
    def z_dim(self) -> int:
        return self.g_psi.z_dim

    @property
    def z_frame_rate_hz(self) -> float:
        return self.ae.frame_rate_hz / self.time_pool

    def train(self, mode: bool = True) -> SPresso:
        super().train(mode)
        self.ae.eval()  # always frozen
        return self

    # -- parameter groups -------------------------------------------------------------------------------------
    def stage1_parameters(self) -> list[nn.Parameter]:
        """Trained in stage 1: g_psi, f_phi and the LoRA adapters."""
        return [*self.g_psi.parameters(), *self.f_phi.parameters(), *lora_parameters(self.dit)]

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Trained in stage 3 (default): f_phi and the LoRA adapters."""
        return [*self.f_phi.parameters(), *lora_parameters(self.dit)]

    # -- encoder side -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_latents(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio`` [B, T] at 48 kHz -> normalised AudioAE latents x0 [B, D, ceil(T / hop)]."""
        return self.ae.encode(audio)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio`` [B, T] -> z [B, Dz, ceil(F / t)]."""
        return self.g_psi(self.encode_latents(audio))

    # -- decoder side -----------------------------------------------------------------------------------------
    def denoising_loss(
        self,
        x0: torch.Tensor,
        z: torch.Tensor,
        generator: torch.Generator | None = None,
        text: torch.Tensor | None = None,
        text_dropout: float = 0.0,
        has_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Denoising loss given latents ``x0`` [B, D, F] and condition ``z`` [B, Dz, Fz] (z, or z_q in stage 3).

        ``text`` [B, L, E] or None (null text); ``has_text`` [B] marks examples that have a caption. Each
        example's text is replaced by the null embedding with probability ``text_dropout`` (from ``generator``).
        """
        cond = self.f_phi(z, x0.shape[-1])
        keep = text_keep_mask(x0.shape[0], text, has_text, text_dropout, generator)
        return self.diffusion.training_loss(self.dit, x0, generator, text=text, text_keep=keep, cond=cond)

    def stage1_loss(self, x0: torch.Tensor, generator: torch.Generator | None = None, text: torch.Tensor | None = None,
                    text_dropout: float = 0.0, has_text: torch.Tensor | None = None) -> torch.Tensor:
        """Stage-1 loss: :meth:`denoising_loss` with z = g_psi(x0), gradients into g_psi, f_phi and LoRA."""
        return self.denoising_loss(x0, self.g_psi(x0), generator, text, text_dropout, has_text)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, num_frames: int, seed: int, steps: int | None = None,
                       text: torch.Tensor | None = None, guidance_scale: float = 1.0) -> torch.Tensor:
        """z [B, Dz, Fz] -> sampled latents [B, D, num_frames]; every item's noise comes from its own ``seed``
        generator, so an item's output does not depend on its batch.

        ``guidance_scale`` w != 1 with ``text``: classifier-free guidance on the text, net = uncond + w x (cond -
        uncond), uncond = the null text (z is kept in both). 1 (default) = no guidance; codecs decode with null
        text, where guidance does nothing."""
        noise = torch.stack([
            torch.randn(self.config.dit.latent_dim, num_frames, generator=torch.Generator().manual_seed(seed))
            for _ in range(z.shape[0])
        ]).to(z.device)
        cond = self.f_phi(z, num_frames)
        steps = steps or self.config.diffusion.sampler_steps
        if guidance_scale == 1.0 or text is None:
            return self.diffusion.sample(self.dit, noise, steps, text=text, cond=cond)
        null = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)

        def guided(x, level, **kw):
            conditioned = self.dit(x, level, **kw)
            unconditioned = self.dit(x, level, **{**kw, "text_keep": null})
            return unconditioned + guidance_scale * (conditioned - unconditioned)

        return self.diffusion.sample(guided, noise, steps, text=text, cond=cond)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, num_samples: int, seed: int, steps: int | None = None,
               text: torch.Tensor | None = None, guidance_scale: float = 1.0) -> torch.Tensor:
        """z [B, Dz, Fz] -> audio [B, num_samples] (null text unless ``text`` [B, L, E] is given; classifier-free
        guidance with ``guidance_scale`` != 1, off by default)."""
        latents = self.decode_latents(z, self.ae.num_frames(num_samples), seed, steps, text, guidance_scale)
        return self.ae.decode(latents, num_samples)


def text_keep_mask(batch: int, text: torch.Tensor | None, has_text: torch.Tensor | None, text_dropout: float,
                   generator: torch.Generator | None) -> torch.Tensor | None:
    """[B] bool: keep an example's text when it has one and survives dropout; None when there is no text."""
    if text is None:
        return None
    keep = torch.rand(batch, generator=generator) >= text_dropout
    if has_text is not None:
        keep = keep & has_text.cpu()
    return keep.to(text.device)


# --------------------------------------------------------------------------------------------------------------
# Building and checkpoints
# --------------------------------------------------------------------------------------------------------------


def build_spresso(config: SPressoConfig) -> SPresso:
    """A random-init S-PRESSO (LoRA injected) from ``config``."""
    return SPresso(config, AudioAE(config.audio_ae), DiT(config.dit))


def save_checkpoint(path: str | os.PathLike, kind: str, config: SPressoConfig, model: dict[str, Any], step: int,
                    optimizers: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "config": config.to_dict(), "step": step,
        "model": model, "optimizers": optimizers or {}, "extra": extra or {},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, kind: str, config: SPressoConfig | None = None) -> dict[str, Any]:
    """Read a checkpoint of ``kind``; refuse another format, version or kind, or a config that does not match."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: S-PRESSO {kind} checkpoint does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False, mmap=True)  # cheap header checks
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a codecbench S-PRESSO checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{path}: checkpoint format version {payload.get('format_version')} is not supported "
                          f"(this codecbench reads version {FORMAT_VERSION})")
    if payload.get("kind") != kind:
        raise ConfigError(f"{path}: is a '{payload.get('kind')}' checkpoint, expected '{kind}'")
    if config is not None:
        diffs = config_differences(payload["config"], config.to_dict(), KIND_SECTIONS[kind])
        if diffs:
            raise ConfigError(f"{path}: checkpoint does not match the config: " + "; ".join(diffs))
    return payload


def checkpoint_config(payload: dict[str, Any], path: str | os.PathLike) -> SPressoConfig:
    return config_from_dict(payload["config"], f"{path} (saved config)")


def load_audio_ae(path: str | os.PathLike, config: SPressoConfig | None = None) -> AudioAE:
    """A trained AudioAE from an ``audio_ae`` checkpoint (``config`` checked when given)."""
    payload = load_checkpoint(path, "audio_ae", config)
    ae = AudioAE(checkpoint_config(payload, path).audio_ae)
    ae.load_state_dict(payload["model"]["ae"])
    return ae.eval()


def load_dit(path: str | os.PathLike, config: SPressoConfig | None = None) -> DiT:
    """A pretrained DiT from a ``dit`` checkpoint."""
    payload = load_checkpoint(path, "dit", config)
    dit = DiT(checkpoint_config(payload, path).dit)
    dit.load_state_dict(payload["model"]["dit"])
    return dit


def load_stage1(path: str | os.PathLike, device: str | torch.device = "cpu") -> SPresso:
    """A stage-1 S-PRESSO model from its checkpoint (config from the file), in eval mode on ``device``."""
    payload = load_checkpoint(path, "stage1")
    model = build_spresso(checkpoint_config(payload, path))
    model.load_state_dict(payload["model"]["spresso"])
    model.checkpoint_step = int(payload["step"])
    return model.to(device).eval()


def parameter_counts(config: SPressoConfig) -> dict[str, int]:
    """Parameter counts of every part for ``config``, built on the meta device (no memory, no init cost)."""
    from codecbench.codecs.spresso.audio_ae import MultiResolutionDiscriminator
    from codecbench.codecs.spresso.lora import lora_parameters

    with torch.device("meta"):
        model = build_spresso(config)
        disc = MultiResolutionDiscriminator(config.discriminator.resolutions, config.discriminator.channels)

    def count(params) -> int:
        return sum(p.numel() for p in params)

    lora = count(lora_parameters(model.dit))
    return {
        "audio_ae_encoder": count([*model.ae.encoder.parameters(), *model.ae.to_latent.parameters()]),
        "audio_ae_decoder": count([*model.ae.decoder.parameters(), *model.ae.head.parameters()]),
        "discriminator": count(disc.parameters()),
        "dit_base": count(model.dit.parameters()) - lora,
        "lora": lora,
        "g_psi": count(model.g_psi.parameters()),
        "f_phi": count(model.f_phi.parameters()),
        "stage1_trainable": count(model.stage1_parameters()),
    }
