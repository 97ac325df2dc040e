"""Music2Latent (Pasini et al. 2024), a continuous consistency-autoencoder baseline, via the ``music2latent`` package.

Shapes: B batch, C channels (1), T samples, D latent dims (64), F latent frames.

A continuous codec: no bitrate. Its Bitstream holds the latents [D, F] it produced; the rate columns are the
latent frame rate (44100 / 4096 = 10.77 Hz) and the compression ratio (input samples per latent value:
4096 / 64 = 64 for long inputs). The decoder is a consistency model that starts from noise: ``seed`` (an
option, part of :meth:`identity` and so of every cache key) makes decoding deterministic.
Operating point: ``denoising_steps`` (the package's default is 1).

The package's own ``EncoderDecoder`` downloads its checkpoint on construction; this adapter calls the same
inference functions (``encode_audio_inference`` / ``decode_latent_inference``) on a ``UNet`` it builds and loads
itself: weights ``music2latent.pt`` from huggingface.co/SonyCSLParis/music2latent, in
``<weights dir>/music2latent/``. ``random_init=True`` builds the real architecture at random initialisation.
The encoder crops the input to its frame grid; decode pads or trims back to the input length (recorded in the
Bitstream: ``num_samples``). No delay shift is needed (frames are centred STFT frames).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from codecbench.bench.core import weights
from codecbench.bench.core.audio import fit_length
from codecbench.bench.core.errors import ConfigError, MissingDependencyError
from codecbench.codecs.base import Bitstream, Codec, CodecInfo, LatentBitstream, OperatingPoint, ParamSpec

WEIGHTS_URL = "https://huggingface.co/SonyCSLParis/music2latent/resolve/main/music2latent.pt"
CHECKPOINT = "music2latent.pt"
HOP = 512
DOWNSCALING = 8  # 2 ** freq_downsample_list.count(0) with the package's [1, 0, 0, 0]
LATENT_DIM = 64


def _m2l():
    try:
        from music2latent import inference, models
    except ImportError as exc:
        raise MissingDependencyError("Music2Latent", "music2latent", 'pip install "music2latent>=0.1.8"') from exc
    return inference, models


@contextlib.contextmanager
def _quiet_autocast():
    """The package enters ``torch.autocast('cuda')`` even on CPU; silence only that warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*CUDA is not available.*", category=UserWarning)
        yield


class _Holder:
    """What the package's inference functions expect: an object with the network as ``.gen``."""

    def __init__(self, gen: torch.nn.Module):
        self.gen = gen


class Music2Latent(Codec):
    info = CodecInfo(
        name="music2latent", kind="continuous", sample_rate_hz=44100, channels=1,
        description="Music2Latent consistency autoencoder: 64-dim continuous latents at 10.77 Hz",
        source="https://github.com/SonyCSLParis/music2latent (weights: huggingface.co/SonyCSLParis/music2latent)",
        paper="Pasini et al., Music2Latent: Consistency Autoencoders for Latent Audio Compression, ISMIR 2024",
        needs_weights=True, is_continuous=True, dependencies=("music2latent",),
    )
    params = (ParamSpec("denoising_steps", int, low=1, high=100, help="consistency decoding steps"),)
    default_points = ({"denoising_steps": 1},)

    def __init__(self, device: str = "cpu", random_init: bool = False, seed: int = 0, weights_dir: str | None = None,
                 weights_sha256: str | None = None, **options: Any):
        super().__init__(device=device, **options)
        if not isinstance(seed, int):
            raise ConfigError(f"codec 'music2latent' option seed must be an integer, got {seed!r}")
        if random_init and weights_sha256:
            raise ConfigError("codec 'music2latent': option weights_sha256 pins a weights file; random_init: true "
                              "loads none")
        self.weights_sha256 = str(weights_sha256).lower() if weights_sha256 else None  # checked before the load
        self.random_init, self.seed, self.weights_dir = bool(random_init), seed, weights_dir
        self._net: Any = None
        path = weights.weights_dir(self.weights_dir) / "music2latent" / CHECKPOINT
        if self.weights_sha256 and path.is_file():  # a pinned file present now is checked now, not at first use
            weights.verify(path, self.weights_sha256, "Music2Latent")

    # -- model ---------------------------------------------------------------------------------------------
    def _build_random(self) -> torch.nn.Module:
        _, models = _m2l()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return models.UNet().eval()

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            if self.random_init:
                net = self._build_random()
            else:
                path = weights.fetch("Music2Latent", CHECKPOINT, WEIGHTS_URL, subdir="music2latent",
                                     override=self.weights_dir)
                weights.verify(path, self.weights_sha256, "Music2Latent")
                _, models = _m2l()
                net = models.UNet()
                state = torch.load(path, map_location="cpu", weights_only=False)
                net.load_state_dict(state["gen_state_dict"], strict=False)  # as the package's own loader does
                net.eval()
            self._net = net.to(self.device)
        return self._net

    def weights_status(self) -> str:
        if self.random_init:
            return f"random-init (seed={self.seed}, published architecture)"
        path = weights.weights_dir(self.weights_dir) / "music2latent" / CHECKPOINT
        return weights.pretrained_status(path) if path.is_file() else f"missing: {CHECKPOINT}"

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "decode_seed": self.seed}

    def num_parameters(self) -> int:
        net = self._net if self._net is not None else self._build_random()
        return int(sum(p.numel() for p in net.parameters()))

    # -- rates (catalogue) -------------------------------------------------------------------------------------
    def frame_rate_hz(self, point: OperatingPoint) -> float:
        return self.info.sample_rate_hz / (HOP * DOWNSCALING)

    def compression_ratio(self, point: OperatingPoint | None = None) -> float:
        """Input samples per latent value for long inputs: hop x downscaling / latent dims."""
        return HOP * DOWNSCALING / LATENT_DIM

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        """Non-causal; one latent frame spans hop x downscaling samples (the least look-ahead it needs)."""
        return 1000.0 * HOP * DOWNSCALING / self.info.sample_rate_hz

    @staticmethod
    def min_samples() -> int:
        """Shortest input that yields one latent frame (the encoder's crop rule)."""
        return 3 * HOP + HOP * DOWNSCALING

    # -- the work ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, point: OperatingPoint) -> list[Bitstream]:
        """audio [B, 1, T] at 44.1 kHz -> one Bitstream per item holding latents [D, F]."""
        batch, channels, num_samples = audio.shape
        assert channels == 1, channels
        if num_samples < self.min_samples():
            raise ConfigError(f"codec 'music2latent' needs at least {self.min_samples()} samples "
                              f"({self.min_samples() / self.info.sample_rate_hz:.3f} s) per item, got {num_samples}")
        inference, _ = _m2l()
        with _quiet_autocast():
            # the package treats the first axis as channels; mono items of one batch go through together
            latents = inference.encode_audio_inference(
                audio[:, 0].to(self.device), _Holder(self.net), num_samples, batch, device=self.device)
        latents = latents.float().cpu().numpy()  # [B, D, F]
        rate = self.frame_rate_hz(point)
        return [LatentBitstream(sample_rate_hz=self.info.sample_rate_hz, num_samples=num_samples, channels=1,
                          latents=np.ascontiguousarray(item), latent_frame_rate_hz=rate) for item in latents]

    @torch.inference_mode()
    def decode(self, bitstreams: Sequence[Bitstream], point: OperatingPoint) -> torch.Tensor:
        """Latents of each item -> audio [B, 1, T] at 44.1 kHz, padded or trimmed to T; seeded noise."""
        num_samples = bitstreams[0].num_samples
        assert all(b.num_samples == num_samples for b in bitstreams), "a decode batch must share one length"
        inference, _ = _m2l()
        latents = torch.from_numpy(np.stack([np.asarray(b.latents, dtype=np.float32) for b in bitstreams]))
        max_len = max(num_samples, HOP * DOWNSCALING * latents.shape[-1]) + HOP * DOWNSCALING
        with _quiet_autocast(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            wave = inference.decode_latent_inference(
                latents.to(self.device), _Holder(self.net), max_len, len(bitstreams),
                diffusion_steps=int(point["denoising_steps"]), device=self.device)
        wave = torch.as_tensor(wave).float().cpu().reshape(len(bitstreams), 1, -1)
        return fit_length(wave, num_samples)


def latent_frames(num_samples: int) -> int:
    """Latent frames the encoder yields for ``num_samples`` input samples (the package's crop rule)."""
    return max(0, ((num_samples - 3 * HOP) // HOP) // DOWNSCALING)

