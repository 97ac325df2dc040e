"""EnCodec (Défossez et al. 2022) through the official ``encodec`` package: 24 kHz mono and 48 kHz stereo.

Shapes: B batch, C channels, T samples, K codebooks, F frames, S segments.

Operating point: ``bandwidth_kbps`` (24 kHz: 1.5, 3, 6, 12, 24; 48 kHz: 3, 6, 12, 24). The codes of each item
become K code streams ``q0 .. q{K-1}`` of 1024 symbols at the model's frame rate (75 Hz at 24 kHz, 150 Hz at
48 kHz), so 6 kbps at 24 kHz is 75 Hz x 8 x 10 bits. The 48 kHz model normalises each 1 s segment (stride
0.99 s) and sends one float32 scale per segment: 32 bits each, counted as side information (the official
``encodec.compress`` format writes exactly these 4 bytes per segment), in the nominal rate and the container.

Weights: ``encodec_24khz-d7cc33bc.th`` / ``encodec_48khz-7e698e3e.th`` from dl.fbaipublicfiles.com/encodec/v0/,
in ``<weights dir>/encodec/`` (downloaded there unless offline). ``random_init=True`` builds the real architecture
at random initialisation; EnCodec's k-means codebooks are all zero at init (every code identical, output
independent of the input), so random init fills them with codewords sampled from the encoder's outputs (and residuals) on seeded
noise, as k-means initialisation starts, and marks them initialised. A weights file is checked before it is loaded
against the sha256 prefix its name carries (torch.hub's convention, which ``encodec``'s own downloader checks), or
against the option ``weights_sha256`` when given; its full sha256 is in the weights column and the cache keys.

Delay: the 24 kHz model is causal and its decoder output is time-aligned with the input; the 48 kHz model is
non-causal with "same" padding. Neither needs a shift; decode trims the padded tail to the input length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from codecbench.bench.core import weights
from codecbench.bench.core.errors import ConfigError, MissingDependencyError
from codecbench.codecs import container
from codecbench.codecs.base import Bitstream, CodeBitstream, Codec, CodecInfo, OperatingPoint, ParamSpec

WEIGHTS_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"
CODEBOOK_BITS = 10  # 1024 codewords per codebook in both published models
SCALE_BITS = 32  # float32 per normalised segment, as encodec.compress writes it


def _encodec():
    try:
        import encodec
    except ImportError as exc:
        raise MissingDependencyError("EnCodec", "encodec", 'pip install "encodec==0.1.1"') from exc
    return encodec


def fill_codebooks_(model: torch.nn.Module, generator: torch.Generator, seconds: float = 1.0) -> None:
    """Initialise every all-zero k-means codebook as k-means initialisation would start: with codewords sampled
    from the vectors it quantizes (encoder outputs, then residuals, for seeded noise input), and mark it initialised.
    """
    noise = torch.randn(1, model.channels, int(seconds * model.sample_rate), generator=generator) * 0.1
    residual = model.encoder(noise).transpose(1, 2).reshape(-1, model.quantizer.dimension)  # [F, D]
    for layer in model.quantizer.vq.layers:
        book = layer._codebook
        picks = torch.randint(0, residual.shape[0], (book.embed.shape[0],), generator=generator)
        jitter = 0.01 * residual.std() * torch.randn(book.embed.shape, generator=generator)
        book.embed.copy_(residual[picks] + jitter)
        book.embed_avg.copy_(book.embed)
        book.inited.fill_(1.0)
        residual = residual - book.dequantize(book.quantize(residual))


class _Encodec(Codec):
    """Shared adapter for both EnCodec models; subclasses set the model and its published bandwidths."""

    _factory: ClassVar[str]
    _checkpoint: ClassVar[str]
    _bandwidths_kbps: ClassVar[tuple[float, ...]]

    def __init__(
        self,
        device: str = "cpu",
        random_init: bool = False,
        seed: int = 0,
        weights_dir: str | None = None,
        max_batch_size: int = 16,
        weights_sha256: str | None = None,
        **options: Any,
    ):
        super().__init__(device=device, **options)  # unknown options: ConfigError naming them
        if max_batch_size < 1:
            raise ConfigError(f"codec '{self.info.name}' option max_batch_size must be >= 1, got {max_batch_size}")
        if random_init and weights_sha256:
            raise ConfigError(f"codec '{self.info.name}': option weights_sha256 pins a weights file; random_init: "
                              "true loads none")
        # the pin: the user's digest, else the sha256 prefix in the release file's name
        self.weights_sha256 = str(weights_sha256).lower() if weights_sha256 else weights.hub_hash_prefix(self._checkpoint)
        self.random_init, self.seed, self.weights_dir = bool(random_init), int(seed), weights_dir
        self.max_batch_size = int(max_batch_size)
        self._model: Any = None
        path = weights.weights_dir(self.weights_dir) / "encodec" / self._checkpoint
        if not self.random_init and path.is_file():  # a present file is checked against its pin now, not at first use
            weights.verify(path, self.weights_sha256, f"EnCodec ({self.info.name})")

    # -- model ---------------------------------------------------------------------------------------------
    def _build(self, pretrained_dir=None) -> torch.nn.Module:
        factory = getattr(_encodec().EncodecModel, self._factory)
        if pretrained_dir is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = factory(pretrained=False)
            with torch.no_grad():
                fill_codebooks_(model, torch.Generator().manual_seed(self.seed))
        else:
            model = factory(pretrained=True, repository=pretrained_dir)
        return model.eval()

    @property
    def model(self) -> torch.nn.Module:
        """The EnCodec model (built on first use)."""
        if self._model is None:
            if self.random_init:
                model = self._build()
            else:
                path = weights.fetch(f"EnCodec ({self.info.name})", self._checkpoint, WEIGHTS_URL + self._checkpoint,
                                     subdir="encodec", override=self.weights_dir)
                weights.verify(path, self.weights_sha256, f"EnCodec ({self.info.name})")
                model = self._build(path.parent)
            self._model = model.to(self.device)
        return self._model

    def weights_status(self) -> str:
        if self.random_init:
            return f"random-init (seed={self.seed}, published architecture, codebooks sampled from encoder outputs)"
        path = weights.weights_dir(self.weights_dir) / "encodec" / self._checkpoint
        return weights.pretrained_status(path) if path.is_file() else f"missing: {self._checkpoint}"

    def num_parameters(self) -> int:
        model = self._model if self._model is not None else self._build()
        return int(sum(p.numel() for p in model.parameters()))

    # -- rates (catalogue) -------------------------------------------------------------------------------------
    _hop: ClassVar[int] = 320
    _segment_s: ClassVar[float | None] = None

    def frame_rate_hz(self, point: OperatingPoint) -> float:
        return math.ceil(self.info.sample_rate_hz / self._hop)

    def num_codebooks(self, point: OperatingPoint) -> int:
        return int(1000 * point["bandwidth_kbps"] // (self.frame_rate_hz(point) * CODEBOOK_BITS))

    def nominal_bitrate_kbps(self, point: OperatingPoint) -> float:
        """Codes plus, for segmented models, one 32-bit scale per segment stride (0.99 s)."""
        codes = self.frame_rate_hz(point) * self.num_codebooks(point) * CODEBOOK_BITS
        side = SCALE_BITS / (0.99 * self._segment_s) if self._segment_s else 0.0
        return (codes + side) / 1000.0

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        if self._segment_s:
            return 1000.0 * self._segment_s
        return 1000.0 * self._hop / self.info.sample_rate_hz

    # -- segments --------------------------------------------------------------------------------------------
    def _segment_frames(self, num_samples: int) -> list[int]:
        """Frames per segment for an input of ``num_samples`` (one segment for unsegmented models)."""
        model = self.model
        seg, stride = model.segment_length, model.segment_stride
        if seg is None:
            return [math.ceil(num_samples / self._hop)]
        return [math.ceil(min(seg, num_samples - off) / self._hop) for off in range(0, num_samples, stride)]

    # -- the work ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, point: OperatingPoint) -> list[Bitstream]:
        """audio [B, C, T] at the native rate -> one Bitstream per item (K streams, + scales at 48 kHz)."""
        batch, channels, num_samples = audio.shape
        assert channels == self.info.channels, (channels, self.info.channels)
        model = self.model
        model.set_target_bandwidth(float(point["bandwidth_kbps"]))
        out: list[Bitstream] = []
        for start in range(0, batch, self.max_batch_size):
            frames = model.encode(audio[start : start + self.max_batch_size].to(self.device))
            codes = torch.cat([c for c, _ in frames], dim=-1).cpu().numpy()  # [b, K, sum F]
            scales = None
            if frames[0][1] is not None:
                scales = torch.cat([s.view(-1, 1) for _, s in frames], dim=1).cpu().numpy().astype(np.float32)  # [b, S]
            for i in range(codes.shape[0]):
                streams = container.streams_from_codes(codes[i], 2**CODEBOOK_BITS, float(model.frame_rate), "q")
                state, side = {}, b""
                if scales is not None:
                    state = {"segment_scales": scales[i]}
                    side = scales[i].astype(">f4").tobytes()
                bitstream = CodeBitstream(
                    sample_rate_hz=self.info.sample_rate_hz, num_samples=num_samples, channels=channels,
                    streams=streams, side_info_bits=float(8 * len(side)), decode_state=state,
                )
                out.append(container.with_container(bitstream, side))
        return out

    @torch.inference_mode()
    def decode(self, bitstreams: Sequence[Bitstream], point: OperatingPoint) -> torch.Tensor:
        """One Bitstream per item (same length) -> audio [B, C, T] at the native rate, trimmed to T."""
        num_samples = bitstreams[0].num_samples
        assert all(b.num_samples == num_samples for b in bitstreams), "a decode batch must share one length"
        per_segment = self._segment_frames(num_samples)
        bounds = np.cumsum([0, *per_segment])
        outputs = []
        for start in range(0, len(bitstreams), self.max_batch_size):
            chunk = bitstreams[start : start + self.max_batch_size]
            codes = torch.from_numpy(np.stack([container.codes_from_streams(b.streams) for b in chunk]))
            assert codes.shape[-1] == bounds[-1], (codes.shape, per_segment)
            frames = []
            for s in range(len(per_segment)):
                seg_codes = codes[..., bounds[s] : bounds[s + 1]].to(self.device)
                scale = None
                if "segment_scales" in chunk[0].decode_state:
                    scale = torch.tensor(np.stack([b.decode_state["segment_scales"][s] for b in chunk]),
                                         device=self.device).view(-1, 1)
                frames.append((seg_codes, scale))
            outputs.append(self.model.decode(frames)[..., :num_samples].cpu())
        return torch.cat(outputs, dim=0)


def _points(bandwidths: tuple[float, ...]) -> tuple[dict[str, float], ...]:
    return tuple({"bandwidth_kbps": b} for b in bandwidths)


class Encodec24kHz(_Encodec):
    info = CodecInfo(
        name="encodec_24khz", kind="neural", sample_rate_hz=24000, channels=1,
        description="EnCodec 24 kHz mono, causal, RVQ with 1024-word codebooks at 75 Hz",
        source="https://github.com/facebookresearch/encodec (weights: dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th)",
        paper="Défossez et al., High Fidelity Neural Audio Compression, 2022",
        needs_weights=True, dependencies=("encodec",),
    )
    _factory = "encodec_model_24khz"
    _checkpoint = "encodec_24khz-d7cc33bc.th"
    _bandwidths_kbps = (1.5, 3.0, 6.0, 12.0, 24.0)
    params = (ParamSpec("bandwidth_kbps", float, choices=_bandwidths_kbps, help="target bandwidth"),)
    default_points = _points(_bandwidths_kbps)


class Encodec48kHz(_Encodec):
    info = CodecInfo(
        name="encodec_48khz", kind="neural", sample_rate_hz=48000, channels=2,
        description="EnCodec 48 kHz stereo, non-causal, 1 s normalised segments, RVQ at 150 Hz",
        source="https://github.com/facebookresearch/encodec (weights: dl.fbaipublicfiles.com/encodec/v0/encodec_48khz-7e698e3e.th)",
        paper="Défossez et al., High Fidelity Neural Audio Compression, 2022",
        needs_weights=True, dependencies=("encodec",),
    )
    _factory = "encodec_model_48khz"
    _checkpoint = "encodec_48khz-7e698e3e.th"
    _bandwidths_kbps = (3.0, 6.0, 12.0, 24.0)
    _segment_s = 1.0
    params = (ParamSpec("bandwidth_kbps", float, choices=_bandwidths_kbps, help="target bandwidth"),)
    default_points = _points(_bandwidths_kbps)
