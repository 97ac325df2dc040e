"""The ``spresso`` continuous codec: a stage-1 S-PRESSO model (one per time-pooling factor t).

Operating points: ``time_pool`` t in {4, 9, 100} (25 Hz / 11.1 Hz / 1 Hz with c = 2, 64-dim z) and the decoding
``seed`` (decoding is stochastic; the seed is part of the point and so of the cache key). The bitstream holds z
[Dz, Fz] as float32 latents; its compression ratio (input samples / latent values) is computed from them. Decoding
uses the null text (no captions) and the sampler steps of the checkpoint's config unless ``sampler_steps`` is set.

Options (from the run config):

- ``checkpoint``: one stage-1 checkpoint (``stage1.pt``); only its own t is offered;
- ``checkpoints``: ``{t: path}`` for several rates;
- neither: random-init models from the ``random_init_config`` preset (default ``tiny``), labelled "random-init".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.bench.core.weights import file_digest
from codecbench.codecs.base import Bitstream, Codec, CodecInfo, LatentBitstream, OperatingPoint, ParamSpec

TIME_POOLS = (4, 9, 100)


class SPressoCodec(Codec):
    info = CodecInfo(
        name="spresso",
        kind="continuous",
        sample_rate_hz=48000,
        channels=1,
        description="S-PRESSO diffusion autoencoder (stage 1, continuous z): 25 / 11.1 / 1 Hz x 64-dim latents",
        version="1",
        source="codecbench codecs/spresso (own implementation)",
        paper="Lahrichi et al., S-PRESSO, arXiv:2602.15082",
        needs_weights=True,
        is_continuous=True,
    )
    params = (
        ParamSpec("time_pool", int, choices=TIME_POOLS, help="t: 4 -> 25 Hz (30x), 9 -> 11.1 Hz (67.5x), 100 -> 1 Hz (750x)"),
        ParamSpec("seed", int, low=0, help="decoding noise seed"),
    )
    default_points = tuple({"time_pool": t, "seed": 0} for t in TIME_POOLS)

    def __init__(
        self,
        device: str = "cpu",
        checkpoint: str | None = None,
        checkpoints: Mapping[Any, str] | None = None,
        sampler_steps: int | None = None,
        random_init_config: str = "tiny",
        random_init_seed: int = 0,
        **options: Any,
    ):
        super().__init__(device=device, **options)  # unknown options: ConfigError naming them
        if checkpoint is not None and checkpoints is not None:
            raise ConfigError("codec 'spresso': give either option 'checkpoint' or 'checkpoints', not both")
        if sampler_steps is not None and (not isinstance(sampler_steps, int) or sampler_steps < 1):
            raise ConfigError(f"codec 'spresso' option 'sampler_steps': expected a positive integer, got {sampler_steps!r}")
        self.sampler_steps = sampler_steps
        self.random_init_config, self.random_init_seed = random_init_config, random_init_seed
        self._paths: dict[int, Path] = {}
        self._labels: dict[int, str] = {}  # weights label per t, computed once (file digest included)
        if checkpoint is not None:
            self._add_checkpoint(Path(checkpoint), None, "checkpoint")
        for key, path in (checkpoints or {}).items():
            t = ParamSpec("time_pool", int, choices=TIME_POOLS).check("spresso", int(key) if str(key).isdigit() else key)
            self._add_checkpoint(Path(path), t, f"checkpoints[{key}]")
        self._models: dict[int, Any] = {}
        self._last_time_pool: int | None = None  # the runner asks num_parameters() after running a point

    # -- checkpoints --------------------------------------------------------------------------------------------
    def _add_checkpoint(self, path: Path, expected_t: int | None, option: str) -> None:
        """Check a stage-1 checkpoint (format, kind, t) once and remember its weights label."""
        from codecbench.codecs.spresso.model import load_checkpoint

        payload = load_checkpoint(path, "stage1")
        t = int(payload["config"]["latent_encoder"]["time_pool"])
        if expected_t is not None and t != expected_t:
            raise ConfigError(f"codec 'spresso' option {option}: {path} was trained with time_pool={t}")
        if t not in TIME_POOLS:
            raise ConfigError(f"codec 'spresso' option {option}: {path} has time_pool={t}; the codec offers {TIME_POOLS}")
        self._paths[t] = path
        self._labels[t] = (
            f"trained {payload['config'].get('name', 'custom')} checkpoint {path.name} (t={t}, "
            f"{payload['step']} stage-1 steps, sha256 {file_digest(path)[:12]})"
        )

    def model(self, time_pool: int):
        """The stage-1 model for ``time_pool`` (loaded once), in eval mode on the codec's device."""
        if time_pool in self._models:
            return self._models[time_pool]
        from codecbench.codecs.spresso.config import load_config
        from codecbench.codecs.spresso.model import build_spresso, load_stage1

        if self._paths:
            if time_pool not in self._paths:
                raise ConfigError(
                    f"codec 'spresso': no checkpoint for time_pool={time_pool}; checkpoints given for "
                    f"time_pool {sorted(self._paths)} (option 'checkpoints': {{t: path}})"
                )
            model = load_stage1(self._paths[time_pool], self.device)
        else:
            torch.manual_seed(self.random_init_seed)
            config = load_config(self.random_init_config, {"latent_encoder.time_pool": time_pool})
            model = build_spresso(config).to(self.device).eval()
        self._models[time_pool] = model
        return model

    def operating_points(self) -> list[OperatingPoint]:
        available = sorted(self._paths) or list(TIME_POOLS)
        return [self.point(time_pool=t, seed=0) for t in available]

    def identity(self) -> dict[str, Any]:
        """Name, version, weights label, the full sha256 of every checkpoint (memoised per file) and the sampler
        steps (they change the decoded audio)."""
        digests = {str(t): file_digest(path) for t, path in sorted(self._paths.items())}
        return {**super().identity(), "weights_sha256": digests, "sampler_steps": self.sampler_steps}

    def weights_status(self) -> str:
        if not self._paths:
            return f"random-init (spresso {self.random_init_config} config, seed {self.random_init_seed})"
        return "; ".join(label for _, label in sorted(self._labels.items()))

    # -- rates (computed from the model geometry) ------------------------------------------------------------
    def frame_rate_hz(self, point: OperatingPoint) -> float:
        return self.model(point["time_pool"]).z_frame_rate_hz

    def compression_ratio(self, point: OperatingPoint) -> float:
        """Input samples per latent value for a long input: sample rate / (frame rate x z dims)."""
        model = self.model(point["time_pool"])
        return model.config.audio_ae.sample_rate_hz / (model.z_frame_rate_hz * model.z_dim)

    def num_parameters(self, point: OperatingPoint | None = None) -> int:
        """Parameters of the one model that runs ``point`` (default: the point last encoded or decoded, else the
        first operating point). Never a sum over the models loaded so far: each point runs one model."""
        if point is not None:
            time_pool = point["time_pool"]
        else:
            time_pool = self._last_time_pool or self.operating_points()[0]["time_pool"]
        return sum(p.numel() for p in self.model(time_pool).parameters())

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        return math.nan  # non-causal: the whole clip is encoded at once

    # -- the work ------------------------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor, point: OperatingPoint) -> list[Bitstream]:
        """``audio`` [B, 1, T] at 48 kHz -> one Bitstream per item with z [Dz, Fz] as latents."""
        model = self.model(point["time_pool"])
        self._last_time_pool = point["time_pool"]
        with torch.no_grad():
            z = model.encode(audio[:, 0].to(self.device)).float().cpu().numpy()
        return [
            LatentBitstream(sample_rate_hz=self.info.sample_rate_hz, num_samples=audio.shape[-1], channels=1,
                      latents=z[i], latent_frame_rate_hz=model.z_frame_rate_hz)
            for i in range(audio.shape[0])
        ]

    def decode(self, bitstreams: Sequence[Bitstream], point: OperatingPoint) -> torch.Tensor:
        """Latents -> audio [B, 1, T]; every item's noise comes from the point's ``seed``; null text."""
        model = self.model(point["time_pool"])
        self._last_time_pool = point["time_pool"]
        lengths = {b.num_samples for b in bitstreams}
        assert len(lengths) == 1, f"a batch must share one length, got {sorted(lengths)}"
        z = torch.stack([torch.as_tensor(b.latents) for b in bitstreams]).to(self.device)
        audio = model.decode(z, lengths.pop(), seed=point["seed"], steps=self.sampler_steps)
        return audio[:, None].cpu()
