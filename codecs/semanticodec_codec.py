"""SemantiCodec (Liu et al. 2024) through its official package ``semanticodec`` (GitHub only).

Shapes: B batch, C channels (1), T samples, F frames.

The package (github.com/haoheliu/SemantiCodec-inference) is not on PyPI and is not installed in codecbench's
default environment. Install it with ``pip install git+https://github.com/haoheliu/SemantiCodec-inference.git``;
without it, building the model raises :class:`MissingDependencyError` with that line. Everything that does not
need the model (operating points, rate arithmetic, bitstream packing) works without it.

Operating point: ``token_rate`` (25, 50, 100 tokens per second) and ``semantic_vocab_size`` (4096, 8192, 16384,
32768), the package's own constructor arguments. ``SemantiCodec.encode`` returns tokens [1, F, 2]: column 0 the
semantic token (alphabet ``semantic_vocab_size``), column 1 the acoustic token (codebook of 8192), with
F = token_rate / 2 frames per second. Nominal rate = token_rate / 2 x (log2 vocab + 13) bits/s: 1.40 kbps at
(100, 32768) and 0.3125 kbps at (25, 4096), as published (README table: 0.31 .. 1.40 kbps).

The package works on file paths at 16 kHz (``encode(filepath)``, ``decode(tokens)``); the adapter writes each
item to a temporary float WAV at 16 kHz (the codec's native rate, so its loader does not resample again) and
calls exactly that API. Checkpoints: ``<weights dir>/semanticodec/semanticodec_tokenrate_<r>/`` holding
``encoder.ckpt``, ``decoder.ckpt`` and ``codebook_idx/...`` (hub repo haoheliu/SemantiCodec), passed as the
package's ``checkpoint_path``; online, the package downloads them itself into ``<weights dir>/semanticodec``.
Decoding runs ``ddim_sample_step`` DDIM steps (package default 50) with a seeded generator state.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from codecbench.bench.core import audio as audio_io
from codecbench.bench.core import weights
from codecbench.bench.core.errors import ConfigError, MissingDependencyError, WeightsNotFoundError
from codecbench.codecs import container
from codecbench.codecs.base import Bitstream, CodeBitstream, Codec, CodecInfo, OperatingPoint, ParamSpec

INSTALL = "pip install git+https://github.com/haoheliu/SemantiCodec-inference.git"
HUB_SOURCE = "https://huggingface.co/haoheliu/SemantiCodec"
TOKEN_RATES = (25, 50, 100)
VOCAB_SIZES = (4096, 8192, 16384, 32768)
ACOUSTIC_CODEBOOK_SIZE = 8192  # AudioMAEConditionQuantResEncoder(codebook_size=8192) in the package
SEGMENT_S = 10.24  # the package pads and processes audio in windows of 10.24 s


def is_available() -> bool:
    """Whether the official ``semanticodec`` package can be imported here."""
    import importlib.util

    return importlib.util.find_spec("semanticodec") is not None


def _semanticodec():
    try:
        import semanticodec
    except ImportError as exc:
        raise MissingDependencyError("SemantiCodec", "semanticodec", INSTALL) from exc
    return semanticodec


def frame_rate_hz(token_rate: int) -> float:
    """Frames per second of each of the two token streams (semantic, acoustic)."""
    return token_rate / 2.0


def nominal_bitrate_kbps(token_rate: int, semantic_vocab_size: int) -> float:
    """token_rate / 2 x (log2 semantic vocab + log2 8192) / 1000."""
    return frame_rate_hz(token_rate) * (math.log2(semantic_vocab_size) + math.log2(ACOUSTIC_CODEBOOK_SIZE)) / 1000.0


def tokens_to_streams(tokens: np.ndarray, token_rate: int, semantic_vocab_size: int) -> tuple:
    """Tokens [F, 2] as the package returns them (per item) -> (semantic, acoustic) code streams."""
    tokens = np.asarray(tokens)
    assert tokens.ndim == 2 and tokens.shape[1] == 2, f"SemantiCodec tokens are [F, 2], got {tokens.shape}"
    rate = frame_rate_hz(token_rate)
    return container.streams_from_codes(tokens[:, :1].T, semantic_vocab_size, rate, "semantic") + \
        container.streams_from_codes(tokens[:, 1:].T, ACOUSTIC_CODEBOOK_SIZE, rate, "acoustic")


def streams_to_tokens(bitstream: Bitstream) -> np.ndarray:
    """Inverse of :func:`tokens_to_streams`: the two streams -> tokens [F, 2] (int64)."""
    return container.codes_from_streams(bitstream.streams).T.copy()


class SemantiCodec(Codec):
    info = CodecInfo(
        name="semanticodec", kind="neural", sample_rate_hz=16000, channels=1,
        description="SemantiCodec: AudioMAE semantic tokens + acoustic tokens, latent-diffusion decoder (0.31-1.40 kbps)",
        source=f"https://github.com/haoheliu/SemantiCodec-inference (weights: {HUB_SOURCE})",
        paper="Liu et al., SemantiCodec: An Ultra Low Bitrate Semantic Audio Codec for General Sound, 2024",
        needs_weights=True, dependencies=("semanticodec",),
    )
    params = (
        ParamSpec("token_rate", int, choices=TOKEN_RATES, help="tokens per second (both streams together)"),
        ParamSpec("semantic_vocab_size", int, choices=VOCAB_SIZES, help="semantic codebook size"),
    )
    default_points = tuple({"token_rate": r, "semantic_vocab_size": v} for r in (100, 50, 25) for v in (32768, 4096))

    def __init__(self, device: str = "cpu", seed: int = 0, ddim_sample_step: int = 50, cfg_scale: float = 2.0,
                 weights_dir: str | None = None, **options: Any):
        super().__init__(device=device, **options)
        if ddim_sample_step < 1:
            raise ConfigError(f"codec 'semanticodec' option ddim_sample_step must be >= 1, got {ddim_sample_step}")
        self.seed, self.ddim_sample_step, self.cfg_scale = int(seed), int(ddim_sample_step), float(cfg_scale)
        self.weights_dir = weights_dir
        self._models: dict[tuple[int, int], Any] = {}

    # -- model ---------------------------------------------------------------------------------------------
    def checkpoint_dir(self, token_rate: int) -> Path:
        return weights.weights_dir(self.weights_dir) / "semanticodec" / f"semanticodec_tokenrate_{token_rate}"

    def model(self, point: OperatingPoint) -> Any:
        """The package's ``SemantiCodec`` model for ``point`` (built on first use; one per point)."""
        key = (int(point["token_rate"]), int(point["semantic_vocab_size"]))
        if key not in self._models:
            package = _semanticodec()
            ckpt = self.checkpoint_dir(key[0])
            kwargs: dict[str, Any] = {"ddim_sample_step": self.ddim_sample_step, "cfg_scale": self.cfg_scale}
            if (ckpt / "encoder.ckpt").is_file():
                kwargs["checkpoint_path"] = str(ckpt)
            elif weights.is_offline():
                raise WeightsNotFoundError(f"SemantiCodec token rate {key[0]}", "encoder.ckpt", HUB_SOURCE, ckpt / "encoder.ckpt")
            else:  # the package downloads from the hub itself, into the weights directory
                kwargs["cache_path"] = str(ckpt.parent)
            self._models[key] = package.SemantiCodec(token_rate=key[0], semantic_vocab_size=key[1], **kwargs)
        return self._models[key]

    def weights_status(self) -> str:
        have = [r for r in TOKEN_RATES if (self.checkpoint_dir(r) / "encoder.ckpt").is_file()]
        if not is_available():
            return f"missing: package 'semanticodec' ({INSTALL})"
        if not have:
            return "missing: semanticodec_tokenrate_*/encoder.ckpt"
        # every checkpoint folder's content (sha256 over its files, memoised per file) is in the identity
        digests = ", ".join(f"{r}: sha256:{weights.folder_digest(self.checkpoint_dir(r))}" for r in have)
        return f"pretrained: token rates {have} ({digests})"

    def num_parameters(self) -> int:
        if not self._models:
            return 0  # unknown until a model is loaded (no random-init route: the package always loads checkpoints)
        model = next(iter(self._models.values()))
        return int(sum(p.numel() for p in model.parameters()))

    # -- rates (catalogue) -------------------------------------------------------------------------------------
    def frame_rate_hz(self, point: OperatingPoint) -> float:
        return frame_rate_hz(int(point["token_rate"]))

    def nominal_bitrate_kbps(self, point: OperatingPoint) -> float:
        return nominal_bitrate_kbps(int(point["token_rate"]), int(point["semantic_vocab_size"]))

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        """Non-causal, whole 10.24 s windows."""
        return 1000.0 * SEGMENT_S

    # -- the work ------------------------------------------------------------------------------------------
    def bitstream(self, tokens: np.ndarray, num_samples: int, point: OperatingPoint) -> Bitstream:
        """Tokens [F, 2] of one item -> its Bitstream (two code streams, real container size)."""
        streams = tokens_to_streams(tokens, int(point["token_rate"]), int(point["semantic_vocab_size"]))
        bitstream = CodeBitstream(sample_rate_hz=self.info.sample_rate_hz, num_samples=num_samples, streams=streams)
        return container.with_container(bitstream)

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, point: OperatingPoint) -> list[Bitstream]:
        """audio [B, 1, T] at 16 kHz -> one Bitstream per item (the package encodes one file at a time)."""
        model = self.model(point)
        out = []
        with tempfile.TemporaryDirectory(prefix="codecbench-semanticodec-") as tmp:
            for i, item in enumerate(audio.cpu().numpy()):
                path = Path(tmp) / f"item{i}.wav"
                audio_io.write(path, item, self.info.sample_rate_hz)
                tokens = model.encode(str(path))  # [1, F, 2]
                out.append(self.bitstream(tokens[0].cpu().numpy(), audio.shape[-1], point))
        return out

    @torch.inference_mode()
    def decode(self, bitstreams: Sequence[Bitstream], point: OperatingPoint) -> torch.Tensor:
        """Bitstreams -> audio [B, 1, T] at 16 kHz, each padded or trimmed to its input length."""
        model = self.model(point)
        outputs = []
        for bitstream in bitstreams:
            tokens = torch.from_numpy(streams_to_tokens(bitstream))[None].to(model.device)
            with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
                torch.manual_seed(self.seed)  # seeds the CUDA generators too
                wave = torch.as_tensor(model.decode(tokens)).reshape(1, 1, -1).float().cpu()
            outputs.append(audio_io.fit_length(wave, bitstream.num_samples))
        return torch.cat(outputs, dim=0)
