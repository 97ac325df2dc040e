"""S-PRESSO configuration: one frozen dataclass per section of the YAML files in ``configs/``.

Values marked [paper] in ``docs/spresso.md`` come from the paper; the others are defaults (the paper is silent).
Unknown keys, wrong types and missing files raise :class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from codecbench.bench.core.errors import ConfigError

PRESETS = ("tiny", "paper")


@dataclass(frozen=True)
class AudioAEConfig:
    sample_rate_hz: int = 48000  # [paper]
    n_fft: int = 960  # [Woosh-AE]
    hop: int = 480  # [Woosh-AE] -> 100 Hz latents
    latent_dim: int = 128  # [Woosh-AE]
    width: int = 2048  # [Woosh-AE] d_model
    intermediate: int = 3072  # [Woosh-AE]
    num_layers: int = 8  # [Woosh-AE] per side


@dataclass(frozen=True)
class DiscriminatorConfig:
    resolutions: tuple[tuple[int, int], ...] = ((2048, 512), (1024, 256), (512, 128))  # (n_fft, hop)
    channels: int = 32


@dataclass(frozen=True)
class DiTConfig:
    latent_dim: int = 128  # io channels = AudioAE latent dim
    width: int = 1024  # [Woosh-Flow]
    depth: int = 12  # [Woosh-Flow]
    heads: int = 8  # [Woosh-Flow]
    mlp_ratio: float = 4.0  # [Woosh-Flow] MLP 4096
    text_dim: int = 512  # LAION-CLAP text embedding width (default)
    text_tokens: int = 1  # pooled CLAP embedding = one token (default)


@dataclass(frozen=True)
class DiffusionConfig:
    kind: str = "edm"  # "edm" (default) or "rectified_flow"
    sigma_data: float = 1.0  # latents are normalised per channel
    p_mean: float = -1.2  # EDM log-normal sigma sampling
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    loss_weighting: str = "none"  # "none": plain x0 MSE as in the paper's figure; "edm": EDM lambda(sigma)
    sampler_steps: int = 32  # Heun steps at decoding


@dataclass(frozen=True)
class LatentEncoderConfig:
    in_dim: int = 128
    width: int = 512
    depth: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    channel_cut: int = 2  # c [paper, inferred]: z has in_dim / c = 64 dims
    time_pool: int = 9  # t [paper]: 4 -> 25 Hz, 9 -> 11.1 Hz, 100 -> 1 Hz
    output_norm: str = "layernorm"  # "layernorm", "tanh" or "none"


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 32
    alpha: float = 32.0
    targets: tuple[str, ...] = ("qkv", "proj", "fc1", "fc2")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200000
    batch_size: int = 64
    segment_s: float = 5.0
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 5000
    grad_clip: float = 1.0
    checkpoint_every_steps: int = 1000
    log_every_steps: int = 10
    seed: int = 0
    text_dropout: float = 0.1  # probability of replacing an example's text by the null embedding
    loss_weights: dict[str, float] = field(default_factory=dict)
    # -- GPU-scale loop (codecs/spresso/loop.py); defaults reproduce the original fp32 single-process loop --------
    precision: str = "fp32"  # "bf16": autocast to bfloat16 (fp32 master weights); TF32 matmuls on CUDA
    compile: bool = False  # torch.compile the trained modules
    grad_accum_steps: int = 1  # micro-batches per optimizer step (batch_size = effective batch over all ranks)
    ema_decay: float = 0.0  # > 0: EMA of the trained weights, used for validation and the exported model
    lr_schedule: str = "constant"  # after warm-up: "constant" or "cosine" (down to min_lr_ratio x lr at `steps`)
    min_lr_ratio: float = 0.1
    val_every_steps: int = 0  # > 0 with held-out data: validation loss (+ mel distance) every N steps
    val_batches: int = 2
    keep_checkpoints: int = 1  # resume checkpoints kept (checkpoint.pt + checkpoint-<step>.pt for the older ones)
    num_workers: int = 0  # data-loader worker processes reading crops ahead of the loop


@dataclass(frozen=True)
class SPressoConfig:
    name: str = "paper"
    audio_ae: AudioAEConfig = AudioAEConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    dit: DiTConfig = DiTConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    latent_encoder: LatentEncoderConfig = LatentEncoderConfig()
    lora: LoRAConfig = LoRAConfig()
    train_ae: TrainConfig = TrainConfig(lr=2e-4, loss_weights={"mel": 45.0, "stft": 1.0, "adv": 1.0, "fm": 2.0})
    pretrain_dit: TrainConfig = TrainConfig()
    stage1: TrainConfig = TrainConfig(text_dropout=0.9)

    def section(self, name: str) -> dict[str, Any]:
        return _plain(dataclasses.asdict(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


_SECTION_CLASSES = {
    "audio_ae": AudioAEConfig, "discriminator": DiscriminatorConfig, "dit": DiTConfig, "diffusion": DiffusionConfig,
    "latent_encoder": LatentEncoderConfig, "lora": LoRAConfig, "train_ae": TrainConfig, "pretrain_dit": TrainConfig,
    "stage1": TrainConfig,
}


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (YAML/JSON friendly, comparable with a loaded file)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _build_section(cls: type, base: Any, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; valid keys: {', '.join(sorted(known))}")
    checked = {}
    for key, value in values.items():
        default = getattr(base, key)
        if isinstance(default, bool) != isinstance(value, bool) or (
            isinstance(default, (int, float)) and not isinstance(value, (int, float))
        ) or (isinstance(default, str) and not isinstance(value, str)):
            raise ConfigError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and float(value) != int(value):
            raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
        checked[key] = type(default)(value) if isinstance(default, (int, float)) else _tupled(value)
    return dataclasses.replace(base, **checked)


def config_from_dict(data: dict[str, Any], where: str = "config") -> SPressoConfig:
    """Build a :class:`SPressoConfig` from a nested mapping (paper defaults for absent keys); validate values."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(_SECTION_CLASSES) - {"name"})
    if unknown:
        raise ConfigError(f"{where}: unknown section '{unknown[0]}'; valid: name, {', '.join(_SECTION_CLASSES)}")
    base = SPressoConfig()
    sections = {
        key: _build_section(cls, getattr(base, key), data.get(key, {}), f"{where}: {key}")
        for key, cls in _SECTION_CLASSES.items()
    }
    config = SPressoConfig(name=str(data.get("name", "custom")), **sections)
    _validate(config, where)
    return config


def _validate(config: SPressoConfig, where: str) -> None:
    ae, enc, diff = config.audio_ae, config.latent_encoder, config.diffusion
    if ae.n_fft % 2 or (ae.n_fft - ae.hop) % 2:
        raise ConfigError(f"{where}: audio_ae.n_fft ({ae.n_fft}) and hop ({ae.hop}) must give an even 'same' padding")
    if enc.in_dim != ae.latent_dim or config.dit.latent_dim != ae.latent_dim:
        raise ConfigError(
            f"{where}: latent_encoder.in_dim ({enc.in_dim}) and dit.latent_dim ({config.dit.latent_dim}) must equal "
            f"audio_ae.latent_dim ({ae.latent_dim})"
        )
    if enc.in_dim % enc.channel_cut:
        raise ConfigError(f"{where}: latent_encoder.channel_cut {enc.channel_cut} does not divide {enc.in_dim}")
    if enc.time_pool < 1:
        raise ConfigError(f"{where}: latent_encoder.time_pool must be >= 1, got {enc.time_pool}")
    if enc.output_norm not in ("layernorm", "tanh", "none"):
        raise ConfigError(f"{where}: latent_encoder.output_norm {enc.output_norm!r} is not one of layernorm, tanh, none")
    if diff.kind not in ("edm", "rectified_flow"):
        raise ConfigError(f"{where}: diffusion.kind {diff.kind!r} is not one of edm, rectified_flow")
    if diff.loss_weighting not in ("none", "edm"):
        raise ConfigError(f"{where}: diffusion.loss_weighting {diff.loss_weighting!r} is not one of none, edm")
    for name in ("train_ae", "pretrain_dit", "stage1"):
        train = getattr(config, name)
        if train.precision not in ("fp32", "bf16"):
            raise ConfigError(f"{where}: {name}.precision {train.precision!r} is not one of fp32, bf16")
        if train.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"{where}: {name}.lr_schedule {train.lr_schedule!r} is not one of constant, cosine")
        for key in ("grad_accum_steps", "keep_checkpoints", "val_batches", "batch_size"):
            if not isinstance(getattr(train, key), int) or getattr(train, key) < 1:
                raise ConfigError(f"{where}: {name}.{key} must be an integer >= 1, got {getattr(train, key)!r}")
        for key in ("val_every_steps", "num_workers"):
            if not isinstance(getattr(train, key), int) or getattr(train, key) < 0:
                raise ConfigError(f"{where}: {name}.{key} must be an integer >= 0, got {getattr(train, key)!r}")
        if not 0.0 <= train.ema_decay < 1.0:
            raise ConfigError(f"{where}: {name}.ema_decay must be in [0, 1), got {train.ema_decay}")
        if train.batch_size % train.grad_accum_steps:
            raise ConfigError(f"{where}: {name}.batch_size {train.batch_size} is not a multiple of grad_accum_steps "
                              f"{train.grad_accum_steps}")
    for name in ("pretrain_dit", "stage1"):
        rate = getattr(config, name).text_dropout
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"{where}: {name}.text_dropout must be in [0, 1], got {rate}")


def load_config(path_or_preset: str | Path, overrides: dict[str, Any] | None = None) -> SPressoConfig:
    """Load a YAML file, or a preset name (``tiny``, ``paper``) from the packaged ``configs/`` folder.

    ``overrides`` are dotted keys (``{"latent_encoder.time_pool": 4}``) applied after the file.
    """
    text, where = _read(path_or_preset)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({exc})") from exc
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section not in _SECTION_CLASSES or not key:
            raise ConfigError(f"override '{dotted}': expected <section>.<key>, sections: {', '.join(_SECTION_CLASSES)}")
        data.setdefault(section, {})[key] = value
    return config_from_dict(data, where)


def _read(path_or_preset: str | Path) -> tuple[str, str]:
    if str(path_or_preset) in PRESETS:
        resource = resources.files("codecbench.codecs.spresso").joinpath("configs", f"{path_or_preset}.yaml")
        return resource.read_text(), f"preset '{path_or_preset}'"
    path = Path(path_or_preset)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist (or give a preset: {', '.join(PRESETS)})")
    return path.read_text(), str(path)


def config_differences(saved: dict[str, Any], current: dict[str, Any], sections: tuple[str, ...]) -> list[str]:
    """Dotted keys whose values differ between two config dicts, restricted to ``sections``."""
    out = []
    for section in sections:
        a, b = saved.get(section, {}), current.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}: checkpoint {a.get(key)!r} vs config {b.get(key)!r}")
    return out
