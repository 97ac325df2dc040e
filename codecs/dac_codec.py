"""Descript Audio Codec (Kumar et al. 2023) through the official ``descript-audio-codec`` package: 16, 24, 44 kHz.

Shapes: B batch, C channels (1), T samples, K codebooks, F frames.

Operating point: ``n_codebooks`` from 1 to the model's maximum (16 kHz: 12, 24 kHz: 32, 44 kHz: 9). DAC's
``encode(..., n_quantizers=n)`` may return more codebooks than asked (all of them outside eval mode): the adapter
keeps the first ``n`` itself, counts bits from what it keeps, and decodes from exactly those codes
(``quantizer.from_codes``). Each kept codebook is a code stream of 1024 symbols at sample_rate / hop
(16 kHz: 50 Hz, 24 kHz: 75 Hz, 44.1 kHz: 86.13 Hz), so 44 kHz with 2 codebooks is 86.13 x 2 x 10 = 1.72 kbps.

Long inputs are processed in chunks of ``chunk_s`` seconds with ``context`` frames of real signal on both sides
(at least the model's one-sided receptive field, ``model.delay``), for the encoder and the decoder alike, so the
result equals whole-signal processing. DAC is non-causal with "same" padding: its output is time-aligned with
the input and needs no delay shift; its algorithmic latency is the look-ahead ``model.delay`` in ms.

Weights (official releases, github.com/descriptinc/descript-audio-codec/releases): ``weights_44khz_8kbps_0.0.1.pth``,
``weights_24khz_8kbps_0.0.4.pth``, ``weights_16khz_8kbps_0.0.5.pth`` in ``<weights dir>/dac/``. ``random_init=True``
builds the published architecture at random initialisation; ``config="tiny"`` (with ``random_init``, or with a
``weights_file`` of that architecture) builds a small one (encoder_dim 16, decoder_dim 96, 4 codebooks of 256) for
fast tests. ``weights_file`` loads a local file written by ``dac.DAC.save`` instead of the release file (its
architecture must be the one ``config`` names). The sha256 of the loaded file is in the weights column and the
codec's identity (cache keys); ``weights_sha256`` pins it: a file with another digest stops with one line naming it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from codecbench.bench.core import weights
from codecbench.bench.core.audio import fit_length
from codecbench.bench.core.errors import ConfigError, MissingDependencyError
from codecbench.codecs import container
from codecbench.codecs.base import Bitstream, CodeBitstream, Codec, CodecInfo, OperatingPoint, ParamSpec

RELEASES_URL = "https://github.com/descriptinc/descript-audio-codec/releases/download/"
TINY = {"encoder_dim": 16, "decoder_dim": 96, "n_codebooks": 4, "codebook_size": 256}
CONFIGS = ("default", "tiny")


def _dac():
    try:
        import dac
    except ImportError as exc:
        raise MissingDependencyError("DAC", "descript-audio-codec", 'pip install "descript-audio-codec==1.0.0"') from exc
    return dac


class _Dac(Codec):
    """Shared adapter for the three DAC models; subclasses set the architecture and the release file."""

    _arch: ClassVar[dict[str, Any]]
    _release: ClassVar[tuple[str, str]]  # (tag, file name in the release)
    _checkpoint: ClassVar[str]

    def __init__(
        self,
        device: str = "cpu",
        random_init: bool = False,
        seed: int = 0,
        config: str = "default",
        weights_dir: str | None = None,
        max_batch_size: int = 16,
        chunk_s: float = 30.0,
        weights_file: str | None = None,
        weights_sha256: str | None = None,
        **options: Any,
    ):
        super().__init__(device=device, **options)  # unknown options: ConfigError naming them
        name = self.info.name
        if config not in CONFIGS:
            raise ConfigError(f"codec '{name}' option config: {config!r} is not one of {list(CONFIGS)}")
        if config != "default" and not random_init and not weights_file:
            raise ConfigError(f"codec '{name}' option config={config!r} has no published weights; use random_init: true "
                              "or give a weights_file of that architecture")
        if random_init and (weights_file or weights_sha256):
            raise ConfigError(f"codec '{name}': options weights_file / weights_sha256 load weights; random_init: true "
                              "builds none")
        self.weights_file = Path(weights_file).expanduser().resolve() if weights_file else None
        if self.weights_file is not None and not self.weights_file.is_file():
            raise ConfigError(f"codec '{name}' option weights_file: {self.weights_file} is not a file")
        self.weights_sha256 = str(weights_sha256).lower() if weights_sha256 else None
        if max_batch_size < 1:
            raise ConfigError(f"codec '{name}' option max_batch_size must be >= 1, got {max_batch_size}")
        if chunk_s <= 0:
            raise ConfigError(f"codec '{name}' option chunk_s must be > 0 seconds, got {chunk_s}")
        self.random_init, self.seed, self.config = bool(random_init), int(seed), config
        self.weights_dir, self.max_batch_size, self.chunk_s = weights_dir, int(max_batch_size), float(chunk_s)
        self._model: Any = None
        if self.weights_sha256 and self._local_path().is_file():  # a pinned file present now is checked now
            weights.verify(self._local_path(), self.weights_sha256, f"DAC ({name})")

    # -- model ---------------------------------------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        """Constructor arguments of ``dac.DAC`` for this codec and config."""
        return {**self._arch, **(TINY if self.config == "tiny" else {})}

    def _build_random(self) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return _dac().DAC(**self.architecture()).eval()

    @property
    def model(self) -> torch.nn.Module:
        """The DAC model (built on first use)."""
        if self._model is None:
            if self.random_init:
                model = self._build_random()
            else:
                model = self._load(self._weights_path())
            self._model = model.to(self.device)
        return self._model

    def _weights_path(self) -> Path:
        """The file to load: ``weights_file``, else the release file in the weights directory (fetched if allowed),
        checked against ``weights_sha256`` when pinned."""
        what = f"DAC ({self.info.name})"
        if self.weights_file is not None:
            path = self.weights_file
        else:  # the release file, fetched if absent and allowed
            tag, file = self._release
            path = weights.fetch(what, self._checkpoint, f"{RELEASES_URL}{tag}/{file}", subdir="dac",
                                 override=self.weights_dir)
        weights.verify(path, self.weights_sha256, what)
        return path

    def _load(self, path: Path) -> torch.nn.Module:
        model = _dac().DAC.load(str(path)).eval()
        want = self.architecture()
        have = {"hop_length": int(model.hop_length), "codebook_size": int(model.codebook_size),
                "n_codebooks": int(model.n_codebooks), "sample_rate_hz": int(model.sample_rate)}
        expected = {"hop_length": self.hop_length, "codebook_size": self.codebook_size,
                    "n_codebooks": int(want["n_codebooks"]), "sample_rate_hz": int(self.info.sample_rate_hz)}
        if have != expected:
            wrong = sorted(k for k in have if have[k] != expected[k])
            raise ConfigError(f"{path}: a DAC with {', '.join(f'{k}={have[k]}' for k in wrong)}; codec "
                              f"'{self.info.name}' config {self.config!r} needs "
                              f"{', '.join(f'{k}={expected[k]}' for k in wrong)}")
        return model

    def weights_status(self) -> str:
        if self.random_init:
            what = "published architecture" if self.config == "default" else "tiny config " + str(TINY)
            return weights.random_init_status(self.seed, what)
        path = self._local_path()
        return weights.pretrained_status(path) if path.is_file() else f"missing: {path.name}"

    def _local_path(self) -> Path:
        """Where the weights file is or would be: ``weights_file``, else the release file in the weights directory."""
        if self.weights_file is not None:
            return self.weights_file
        return weights.weights_dir(self.weights_dir) / "dac" / self._checkpoint

    def num_parameters(self) -> int:
        model = self._model if self._model is not None else self._build_random()
        return int(sum(p.numel() for p in model.parameters()))

    # -- rates (catalogue) -------------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        return int(np.prod(self.architecture()["encoder_rates"]))

    @property
    def codebook_size(self) -> int:
        return int(self.architecture().get("codebook_size", 1024))

    def frame_rate_hz(self, point: OperatingPoint) -> float:
        return self.info.sample_rate_hz / self.hop_length

    def nominal_bitrate_kbps(self, point: OperatingPoint) -> float:
        return self.frame_rate_hz(point) * point["n_codebooks"] * math.log2(self.codebook_size) / 1000.0

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        """Look-ahead of the non-causal model: its one-sided receptive field ``model.delay``, in ms."""
        model = self._model if self._model is not None else self._build_random()
        return 1000.0 * model.delay / self.info.sample_rate_hz

    # -- chunking --------------------------------------------------------------------------------------------
    def _context_frames(self) -> int:
        return math.ceil(self.model.delay / self.hop_length) + 1

    def _chunk_frames(self) -> int:
        return max(1, int(self.chunk_s * self.info.sample_rate_hz) // self.hop_length)

    def _encode_codes(self, audio: torch.Tensor, n: int) -> torch.Tensor:
        """audio [B, 1, T] -> codes [B, n, F], F = ceil(T / hop), in chunks with context on both sides."""
        model, hop = self.model, self.hop_length
        frames = math.ceil(audio.shape[-1] / hop)
        x = torch.nn.functional.pad(audio, (0, frames * hop - audio.shape[-1]))
        step, ctx = self._chunk_frames(), self._context_frames()
        pieces = []
        for f0 in range(0, frames, step):
            f1 = min(frames, f0 + step)
            a0, a1 = max(0, f0 - ctx), min(frames, f1 + ctx)
            _, codes, *_ = model.encode(x[..., a0 * hop : a1 * hop], n_quantizers=n)
            pieces.append(codes[:, :n, f0 - a0 : f0 - a0 + (f1 - f0)])
        return torch.cat(pieces, dim=-1)

    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n, F] -> audio [B, 1, F * hop], in chunks with context on both sides."""
        model, hop = self.model, self.hop_length
        frames = codes.shape[-1]
        step, ctx = self._chunk_frames(), self._context_frames()
        pieces = []
        for f0 in range(0, frames, step):
            f1 = min(frames, f0 + step)
            a0, a1 = max(0, f0 - ctx), min(frames, f1 + ctx)
            z, _, _ = model.quantizer.from_codes(codes[..., a0:a1])
            # odd decoder strides (16/24 kHz models) return a few samples fewer than frames x hop: zero-pad the tail
            y = fit_length(model.decode(z), (a1 - a0) * hop)
            pieces.append(y[..., (f0 - a0) * hop : (f1 - a0) * hop])
        return torch.cat(pieces, dim=-1)

    # -- the work ------------------------------------------------------------------------------------------
    def _check_point(self, point: OperatingPoint) -> int:
        n = int(point["n_codebooks"])
        have = self.architecture()["n_codebooks"]
        if n > have:
            raise ConfigError(f"codec '{self.info.name}' parameter 'n_codebooks': {n} is more than this model's "
                              f"{have} codebooks (config {self.config!r}); choose 1..{have}")
        return n

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, point: OperatingPoint) -> list[Bitstream]:
        """audio [B, 1, T] at the native rate -> one Bitstream per item with ``n_codebooks`` code streams."""
        n = self._check_point(point)
        batch, channels, num_samples = audio.shape
        assert channels == 1, channels
        out: list[Bitstream] = []
        for start in range(0, batch, self.max_batch_size):
            codes = self._encode_codes(audio[start : start + self.max_batch_size].to(self.device), n).cpu().numpy()
            assert codes.shape[1] == n, (codes.shape, n)
            for item in codes:
                streams = container.streams_from_codes(item, self.codebook_size, self.frame_rate_hz(point), "q")
                bitstream = CodeBitstream(sample_rate_hz=self.info.sample_rate_hz, num_samples=num_samples, streams=streams)
                out.append(container.with_container(bitstream))
        return out

    @torch.inference_mode()
    def decode(self, bitstreams: Sequence[Bitstream], point: OperatingPoint) -> torch.Tensor:
        """One Bitstream per item (same length) -> audio [B, 1, T] at the native rate, trimmed to T."""
        num_samples = bitstreams[0].num_samples
        assert all(b.num_samples == num_samples for b in bitstreams), "a decode batch must share one length"
        outputs = []
        for start in range(0, len(bitstreams), self.max_batch_size):
            chunk = bitstreams[start : start + self.max_batch_size]
            codes = torch.from_numpy(np.stack([container.codes_from_streams(b.streams) for b in chunk]))
            outputs.append(self._decode_codes(codes.to(self.device))[..., :num_samples].cpu())
        return torch.cat(outputs, dim=0)


def _info(name: str, rate_khz: str, sample_rate_hz: int, frame_hz: str, checkpoint: str) -> CodecInfo:
    return CodecInfo(
        name=name, kind="neural", sample_rate_hz=sample_rate_hz, channels=1,
        description=f"Descript Audio Codec {rate_khz} kHz, RVQ with 1024-word codebooks at {frame_hz} Hz",
        source=f"https://github.com/descriptinc/descript-audio-codec (weights: releases, {checkpoint})",
        paper="Kumar et al., High-Fidelity Audio Compression with Improved RVQGAN, NeurIPS 2023",
        needs_weights=True, dependencies=("descript-audio-codec",),
    )


def _spec(max_codebooks: int) -> tuple[ParamSpec, ...]:
    return (ParamSpec("n_codebooks", int, low=1, high=max_codebooks, help="residual codebooks kept"),)


class Dac16kHz(_Dac):
    info = _info("dac_16khz", "16", 16000, "50", "weights_16khz.pth, tag 0.0.5")
    _arch = {"sample_rate": 16000, "encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2], "n_codebooks": 12}
    _release = ("0.0.5", "weights_16khz.pth")
    _checkpoint = "weights_16khz_8kbps_0.0.5.pth"
    params = _spec(12)
    default_points = tuple({"n_codebooks": n} for n in (1, 2, 4, 8, 12))


class Dac24kHz(_Dac):
    info = _info("dac_24khz", "24", 24000, "75", "weights_24khz.pth, tag 0.0.4")
    _arch = {"sample_rate": 24000, "encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2], "n_codebooks": 32}
    _release = ("0.0.4", "weights_24khz.pth")
    _checkpoint = "weights_24khz_8kbps_0.0.4.pth"
    params = _spec(32)
    default_points = tuple({"n_codebooks": n} for n in (1, 2, 4, 8, 16, 32))


class Dac44kHz(_Dac):
    info = _info("dac_44khz", "44.1", 44100, "86.13", "weights.pth, tag 0.0.1")
    _arch = {"sample_rate": 44100, "encoder_rates": [2, 4, 8, 8], "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9}
    _release = ("0.0.1", "weights.pth")
    _checkpoint = "weights_44khz_8kbps_0.0.1.pth"
    params = _spec(9)
    default_points = tuple({"n_codebooks": n} for n in (1, 2, 4, 6, 9))
