"""The codec contract: :class:`Codec`, :class:`CodecInfo`, :class:`OperatingPoint`, :class:`Bitstream`.

Shapes: B batch, C channels, T samples, F frames, D latent dims.

A codec works at its native rate: ``encode(audio [B, C, T], point) -> list[Bitstream]`` (one per item) and
``decode(list[Bitstream], point) -> audio [B, C, T]``. :meth:`Codec.roundtrip` wraps both with the resampling to
and from the evaluation rate and the channel policy, and records what it did.

Bitrates are computed by the :class:`Bitstream` from what the codec produced, never typed in:

- code streams: nominal bits = sum over streams of frames x log2(alphabet size), plus declared side information;
- opaque payloads (classic codecs): nominal bits = 8 x payload bytes (the packets actually produced), with the
  container's extra bytes reported apart;
- continuous latents: no bitrate; compression ratio = input samples / latent values, and the latent frame rate;
- precomputed outputs (no codes exist here): rates declared by whoever made the files (``declared_rates``),
  reported with ``rate_source == "declared"``, never passed off as measured.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from codecbench.bench.core.errors import ConfigError

# --------------------------------------------------------------------------------------------------------------
# Operating points
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One operating-point parameter a codec accepts: a numeric range or a set of choices, and a unit suffix."""

    name: str
    kind: type = float  # int, float, str or bool
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    help: str = ""

    def check(self, codec: str, value: Any) -> Any:
        where = f"codec '{codec}' parameter '{self.name}'"
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: expected a number, got {value!r}")
            if self.kind is int and float(value) != int(value):
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
            value = self.kind(value)
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise ConfigError(f"{where}: {value} is out of range [{self.low}, {self.high}]")
        elif self.kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
        else:
            value = str(value)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: {value!r} is not one of {list(self.choices)}")
        return value


@dataclass(frozen=True)
class OperatingPoint:
    """A codec's named parameters, e.g. ``{"bitrate_kbps": 12}``; hashable and ordered for stable cache keys."""

    codec: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, codec: str, params: Mapping[str, Any]) -> OperatingPoint:
        return cls(codec, tuple(sorted(params.items())))

    def __getitem__(self, key: str) -> Any:
        return dict(self.params)[key]

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def label(self) -> str:
        """Short human label, e.g. ``bitrate_kbps=12``; ``default`` for a point without parameters."""
        return ",".join(f"{k}={v}" for k, v in self.params) or "default"

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)


# --------------------------------------------------------------------------------------------------------------
# Bitstreams
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeStream:
    """One stream of integer codes with its alphabet: ``codes`` int array [F], values in [0, alphabet_size)."""

    codes: np.ndarray
    alphabet_size: int
    frame_rate_hz: float
    name: str = ""

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        assert codes.ndim == 1, f"a code stream is 1-D [F], got shape {codes.shape}"
        assert np.issubdtype(codes.dtype, np.integer), f"codes must be integers, got {codes.dtype}"
        assert self.alphabet_size >= 2, self.alphabet_size
        if codes.size:
            assert 0 <= codes.min() and codes.max() < self.alphabet_size, "code outside its alphabet"

    @property
    def num_frames(self) -> int:
        return int(np.asarray(self.codes).shape[0])

    @property
    def nominal_bits(self) -> float:
        return self.num_frames * math.log2(self.alphabet_size)


@dataclass(frozen=True)
class Bitstream:
    """What one item was encoded into, with the rates computed from it.

    Exactly one representation is filled: ``streams`` (integer codes), ``payload`` (opaque encoded bytes, e.g.
    Opus packets), ``latents`` (continuous, float array [D, F]; for anchors, the processed waveform [C, T]) or
    ``declared_rates`` (precomputed outputs: no codes exist, only the rates their maker declared, a mapping with
    keys among ``bitrate_kbps``, ``frame_rate_hz``, ``compression_ratio``; may be empty when none was declared).

    Args:
        sample_rate_hz: the codec's native rate of the encoded signal.
        num_samples: input length in samples at that rate (decode trims to it).
        channels: input channels at the codec.
        side_info_bits: bits the codec sends besides its code streams, by the codec's own definition
            (e.g. EnCodec 48 kHz per-segment scales); counted in the nominal rate.
        container_bytes: bytes of the real container/file actually written (payload + framing), if one was.
        entropy_coded_bits: size after an entropy coder, where one was run.
        decode_state: anything else the decoder needs; must be derivable from the counted fields (documented
            per codec), never extra information.
    """

    sample_rate_hz: int
    num_samples: int
    channels: int = 1
    streams: tuple[CodeStream, ...] = ()
    payload: bytes | None = None
    latents: np.ndarray | None = None
    latent_frame_rate_hz: float | None = None
    side_info_bits: float = 0.0
    container_bytes: int | None = None
    entropy_coded_bits: float | None = None
    decode_state: Mapping[str, Any] = field(default_factory=dict)
    declared_rates: Mapping[str, float] | None = None
    payload_frame_rate_hz: float | None = None  # packets per second of an opaque payload (the codec's framing)

    DECLARABLE_RATES: ClassVar[tuple[str, ...]] = ("bitrate_kbps", "frame_rate_hz", "compression_ratio")

    def __post_init__(self) -> None:
        filled = [bool(self.streams), self.payload is not None, self.latents is not None]
        filled.append(self.declared_rates is not None)
        assert sum(filled) == 1, "a Bitstream holds exactly one of streams, payload, latents or declared_rates"
        if self.declared_rates is not None:
            unknown = set(self.declared_rates) - set(self.DECLARABLE_RATES)
            assert not unknown, f"declared_rates keys must be among {self.DECLARABLE_RATES}, got {sorted(unknown)}"

    @property
    def rate_source(self) -> str:
        """"measured" (computed from codes, payload or latents) or "declared" (precomputed outputs)."""
        return "declared" if self.declared_rates is not None else "measured"

    def _declared(self, key: str) -> float:
        assert self.declared_rates is not None
        value = self.declared_rates.get(key)
        return math.nan if value is None else float(value)

    # -- what kind ------------------------------------------------------------------------------------------
    @property
    def is_continuous(self) -> bool:
        if self.declared_rates is not None:
            return "bitrate_kbps" not in self.declared_rates and "compression_ratio" in self.declared_rates
        return self.latents is not None

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate_hz

    # -- sizes ----------------------------------------------------------------------------------------------
    @property
    def nominal_bits(self) -> float:
        """Bits by the codec's definition (see module docstring); NaN for continuous representations."""
        if self.streams:
            return float(sum(s.nominal_bits for s in self.streams) + self.side_info_bits)
        if self.payload is not None:
            return 8.0 * len(self.payload) + self.side_info_bits
        if self.declared_rates is not None:
            return self._declared("bitrate_kbps") * 1000.0 * self.duration_s
        return math.nan

    @property
    def bitrate_kbps(self) -> float:
        return self.nominal_bits / self.duration_s / 1000.0

    @property
    def container_overhead_kbps(self) -> float:
        """Rate of the container's bytes beyond the payload (classic codecs); NaN where no container was written."""
        if self.container_bytes is None or self.payload is None:
            return math.nan
        return 8.0 * (self.container_bytes - len(self.payload)) / self.duration_s / 1000.0

    @property
    def serialized_kbps(self) -> float:
        """Rate of the real container/file written for this item (header and framing included); NaN if none."""
        if self.container_bytes is None:
            return math.nan
        return 8.0 * self.container_bytes / self.duration_s / 1000.0

    @property
    def entropy_coded_kbps(self) -> float:
        if self.entropy_coded_bits is None:
            return math.nan
        return self.entropy_coded_bits / self.duration_s / 1000.0

    # -- frame rates and compression ------------------------------------------------------------------------
    @property
    def frame_rate_hz(self) -> float:
        """Frame rate of the representation: the code streams' (the highest, if they differ) or the latents'."""
        if self.streams:
            return max(s.frame_rate_hz for s in self.streams)
        if self.latents is not None and self.latent_frame_rate_hz is not None:
            return float(self.latent_frame_rate_hz)
        if self.payload is not None and self.payload_frame_rate_hz is not None:
            return float(self.payload_frame_rate_hz)
        if self.declared_rates is not None:
            return self._declared("frame_rate_hz")
        return math.nan

    @property
    def compression_ratio(self) -> float:
        """Input samples (all channels) per latent value; continuous representations only."""
        if self.declared_rates is not None:
            return self._declared("compression_ratio")
        if self.latents is None:
            return math.nan
        return self.num_samples * self.channels / float(np.asarray(self.latents).size)

    def rate_columns(self) -> dict[str, float]:
        """The rate columns of the results table, computed from this bitstream."""
        return {
            "bitrate_kbps": self.bitrate_kbps,
            "serialized_kbps": self.serialized_kbps,
            "container_overhead_kbps": self.container_overhead_kbps,
            "entropy_coded_kbps": self.entropy_coded_kbps,
            "frame_rate_hz": self.frame_rate_hz,
            "compression_ratio": self.compression_ratio,
            "rate_source": self.rate_source,
        }


# --------------------------------------------------------------------------------------------------------------
# Codecs
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodecInfo:
    """Catalogue metadata of a codec (read-only, one per class).

    ``sample_rate_hz`` None means the codec works at whatever evaluation rate it is given (anchors).
    ``kind``: "classic", "neural", "continuous", "anchor" or "precomputed".
    """

    name: str
    kind: str
    sample_rate_hz: int | None
    channels: int
    description: str
    version: str = "1"
    source: str = ""
    paper: str = ""
    needs_weights: bool = False
    is_anchor: bool = False
    is_continuous: bool = False
    dependencies: tuple[str, ...] = ()


@dataclass
class Roundtrip:
    """Output of :meth:`Codec.roundtrip`: decoded audio [B, C, T] at the evaluation rate and what was done."""

    decoded: torch.Tensor
    bitstreams: list[Bitstream]
    processing: dict[str, Any]


class Codec(ABC):
    """Base class of every codec. Subclasses set ``info`` and ``params``, and implement encode/decode.

    ``params`` declares the operating-point parameters (validated with a message naming the key);
    ``default_points`` are the points listed by ``codecbench codecs`` and used when a config gives no grid.
    Constructor keyword arguments are the codec's options from the config (weights path, device, ...).
    """

    info: ClassVar[CodecInfo]
    params: ClassVar[tuple[ParamSpec, ...]] = ()
    default_points: ClassVar[tuple[Mapping[str, Any], ...]] = ({},)

    def __init__(self, device: str = "cpu", **options: Any):
        if options:
            raise ConfigError(f"codec '{self.info.name}' has no options {sorted(options)}")
        self.device = device

    # -- operating points ------------------------------------------------------------------------------------
    @classmethod
    def point(cls, **params: Any) -> OperatingPoint:
        """Validate ``params`` against :attr:`params` and build an :class:`OperatingPoint` (no instance needed,
        so a config is validated without loading any weights)."""
        self = cls
        specs = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(specs))
        if unknown:
            raise ConfigError(
                f"codec '{self.info.name}' has no parameter {unknown[0]!r}; its parameters: {sorted(specs) or 'none'}"
            )
        missing = sorted(set(specs) - set(params))
        if missing:
            raise ConfigError(f"codec '{self.info.name}' needs parameter {missing[0]!r}")
        checked = {name: specs[name].check(self.info.name, value) for name, value in params.items()}
        return OperatingPoint.make(self.info.name, checked)

    @classmethod
    def operating_points(cls) -> list[OperatingPoint]:
        return [cls.point(**p) for p in cls.default_points]

    def nominal_bitrate_kbps(self, point: OperatingPoint) -> float:
        """The nominal bitrate the codec's bitstream definition gives for ``point`` (catalogue); NaN if none."""
        return math.nan

    def frame_rate_hz(self, point: OperatingPoint) -> float:
        """Frame rate of the representation at ``point`` (catalogue); NaN if not framed."""
        return math.nan

    def compression_ratio(self, point: OperatingPoint) -> float:
        """Continuous codecs: input samples per latent value at ``point`` by definition (catalogue); NaN if none."""
        return math.nan

    def weights_status(self) -> str:
        """"not needed", "pretrained: <file>", "random-init" or "missing: <reason>"."""
        return "not needed"

    @property
    def is_random_init(self) -> bool:
        return self.weights_status().startswith("random-init")

    def identity(self) -> dict[str, Any]:
        """What identifies this codec's outputs in cache keys: name, version, weights digest."""
        return {"name": self.info.name, "version": self.info.version, "weights": self.weights_status()}

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        return math.nan

    def num_parameters(self) -> int:
        return 0

    # -- the work ------------------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, audio: torch.Tensor, point: OperatingPoint) -> list[Bitstream]:
        """Encode ``audio`` [B, C, T] at the native rate into one :class:`Bitstream` per item."""

    @abstractmethod
    def decode(self, bitstreams: Sequence[Bitstream], point: OperatingPoint) -> torch.Tensor:
        """Decode to audio [B, C, T] at the native rate, each item trimmed to its ``num_samples``, delay removed."""

    def roundtrip(
        self,
        audio: torch.Tensor,
        sample_rate_hz: int,
        point: OperatingPoint,
        item_ids: Sequence[str] | None = None,
    ) -> Roundtrip:
        """Encode and decode ``audio`` [B, C, T] given at ``sample_rate_hz`` (the evaluation rate).

        Resamples to the native rate and back, adapts channels, and returns the decoded audio with the same
        shape as the input plus a record of the processing (resampler, channel policy, encode/decode seconds).
        ``item_ids`` name the items (``<clip id>#<segment>``); codecs that look outputs up by name
        (precomputed outputs) use them, others ignore them.
        """
        import time

        from codecbench.bench.core import audio as audio_ops  # leaf helpers: resampling and channel policy

        batch, channels, num_samples = audio.shape
        native_hz = self.info.sample_rate_hz or sample_rate_hz
        x = audio_ops.resample(audio, sample_rate_hz, native_hz)
        x, channel_policy = audio_ops.match_channels(x, self.info.channels)
        started = time.perf_counter()
        with torch.inference_mode():
            bitstreams = self.encode(x, point)
            encoded = time.perf_counter()
            assert len(bitstreams) == batch, (len(bitstreams), batch)
            y = self.decode(bitstreams, point)
        decoded = time.perf_counter()
        assert y.shape[0] == batch and y.shape[-1] == x.shape[-1], (y.shape, x.shape)
        y, _ = audio_ops.match_channels(y, channels)
        y = audio_ops.resample(y, native_hz, sample_rate_hz)
        y = audio_ops.fit_length(y, num_samples)
        processing = {
            "native_sample_rate_hz": native_hz,
            "resampler": audio_ops.RESAMPLER if native_hz != sample_rate_hz else "none",
            "channel_policy": channel_policy,
            "encode_s": encoded - started,
            "decode_s": decoded - encoded,
        }
        return Roundtrip(decoded=y.float(), bitstreams=bitstreams, processing=processing)
