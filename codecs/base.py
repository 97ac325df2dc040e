"""The plugin contract: :class:`System`, :class:`Codec`, :class:`CodecInfo`, :class:`OperatingPoint`.

Shapes: B batch, C channels, T samples, F frames, D latent dims.

A :class:`System` turns reference items into decoded items: ``roundtrip(audio [B, C, T], sample_rate_hz, point,
item_ids) -> Roundtrip`` (decoded audio [B, C, T] at the evaluation rate, one :class:`Bitstream` per item, and a
record of what was done). The runner calls it through :func:`run_system`, which checks what came back and raises
:class:`~codecbench.codecs.errors.ProtocolError`, naming the plugin, when it is not what the contract says.

A :class:`Codec` is a system with an encoder and a decoder at its native rate: ``encode(audio [B, C, T], point) ->
list[Bitstream]`` (one per item) and ``decode(list[Bitstream], point) -> audio [B, C, T]``; its
:meth:`Codec.roundtrip` wraps both with the resampling to and from the evaluation rate and the channel policy.
Systems that are not codecs (the BS.1534 anchors, folders of outputs made elsewhere) implement ``roundtrip``
themselves and return :class:`~codecbench.codecs.bitstream.NoBitstream` records.

The bitstream classes and how each computes its rates: :mod:`codecbench.codecs.bitstream`.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.bitstream import (  # noqa: F401  (re-exported: the contract's names in one place)
    BITSTREAM_CLASSES,
    Bitstream,
    CodeBitstream,
    CodeStream,
    LatentBitstream,
    NoBitstream,
    PayloadBitstream,
)
from codecbench.codecs.errors import ProtocolError, describe

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
# Systems and codecs
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodecInfo:
    """Catalogue metadata of a system or codec (read-only, one per class).

    ``sample_rate_hz`` None means the system works at whatever evaluation rate it is given (anchors).
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
    """Output of :meth:`System.roundtrip`: decoded audio [B, C, T] at the evaluation rate, one bitstream (or
    :class:`NoBitstream` rate record) per item, and what was done (``processing``)."""

    decoded: torch.Tensor
    bitstreams: list[Bitstream]
    processing: dict[str, Any]


class System(ABC):
    """Something that turns reference items into decoded items: the unit of a results table's ``codec`` column.

    Subclasses set ``info`` and ``params`` and implement :meth:`roundtrip`. ``params`` declares the
    operating-point parameters (validated with a message naming the key); ``default_points`` are the points listed
    by ``codecbench codecs`` and used when a config gives no grid. Constructor keyword arguments are the system's
    options from the config (weights path, folder, ...); ``device`` is set by the runner.
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
        specs = {p.name: p for p in cls.params}
        unknown = sorted(set(params) - set(specs))
        if unknown:
            raise ConfigError(
                f"codec '{cls.info.name}' has no parameter {unknown[0]!r}; its parameters: {sorted(specs) or 'none'}"
            )
        missing = sorted(set(specs) - set(params))
        if missing:
            raise ConfigError(f"codec '{cls.info.name}' needs parameter {missing[0]!r}")
        checked = {name: specs[name].check(cls.info.name, value) for name, value in params.items()}
        return OperatingPoint.make(cls.info.name, checked)

    @classmethod
    def operating_points(cls) -> list[OperatingPoint]:
        return [cls.point(**p) for p in cls.default_points]

    # -- catalogue ------------------------------------------------------------------------------------------
    def nominal_bitrate_kbps(self, point: OperatingPoint) -> float:
        """The nominal bitrate the bitstream definition gives for ``point`` (catalogue); NaN if none."""
        return math.nan

    def frame_rate_hz(self, point: OperatingPoint) -> float:
        """Frame rate of the representation at ``point`` (catalogue); NaN if not framed."""
        return math.nan

    def compression_ratio(self, point: OperatingPoint) -> float:
        """Continuous codecs: input samples per latent value at ``point`` by definition (catalogue); NaN if none."""
        return math.nan

    def weights_status(self) -> str:
        """"not needed", "pretrained: <file> sha256:<digest>", "random-init seed N" or "missing: <reason>"."""
        return "not needed"

    @property
    def is_random_init(self) -> bool:
        return self.weights_status().startswith("random-init")

    def identity(self) -> dict[str, Any]:
        """What identifies this system's outputs in cache keys: name, version, weights (with their sha256)."""
        return {"name": self.info.name, "version": self.info.version, "weights": self.weights_status()}

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        return math.nan

    def num_parameters(self) -> int:
        return 0

    # -- the work ------------------------------------------------------------------------------------------
    @abstractmethod
    def roundtrip(
        self,
        audio: torch.Tensor,
        sample_rate_hz: int,
        point: OperatingPoint,
        item_ids: Sequence[str] | None = None,
    ) -> Roundtrip:
        """Turn ``audio`` [B, C, T] at the evaluation rate ``sample_rate_hz`` into decoded audio of the same shape
        and rate, with one :class:`Bitstream` per item. ``item_ids`` name the items (``<clip id>#<segment>``);
        systems that look outputs up by name (precomputed folders) use them, others ignore them."""


class Codec(System):
    """A system with an encoder and a decoder at its native rate (``info.sample_rate_hz``, ``info.channels``).

    Subclasses implement :meth:`encode` and :meth:`decode`; :meth:`roundtrip` is inherited and checks what they
    return (:class:`ProtocolError` naming the codec otherwise).
    """

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
        """
        import time

        from codecbench.bench.core import audio as audio_ops  # leaf helpers: resampling and channel policy

        batch, channels, num_samples = audio.shape
        native_hz = self.info.sample_rate_hz or sample_rate_hz
        x = audio_ops.resample(audio, sample_rate_hz, native_hz)
        x, channel_policy = audio_ops.match_channels(x, self.info.channels)
        started = time.perf_counter()
        with torch.inference_mode():
            bitstreams = check_bitstreams(self, "encode", self.encode(x, point), batch)
            encoded = time.perf_counter()
            y = self.decode(bitstreams, point)
        decoded = time.perf_counter()
        if not isinstance(y, torch.Tensor) or y.ndim != 3 or y.shape[0] != batch or y.shape[-1] != x.shape[-1]:
            raise ProtocolError(self, "decode", f"returned {describe(y)}; expected a tensor [B, C, T] of shape "
                                f"[{batch}, C, {x.shape[-1]}] (the input's batch and length at the native rate)")
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


def check_bitstreams(plugin: System, method: str, bitstreams: Any, batch: int) -> list[Bitstream]:
    """``bitstreams`` as a list when it is a sequence of ``batch`` :class:`Bitstream` instances; else
    :class:`ProtocolError` naming ``plugin``, ``method`` and what came back."""
    expected = f"expected a list of {batch} Bitstream ({', '.join(c.__name__ for c in BITSTREAM_CLASSES)}), one per item"
    if not isinstance(bitstreams, (list, tuple)):
        raise ProtocolError(plugin, method, f"returned {describe(bitstreams)}; {expected}")
    if len(bitstreams) != batch:
        raise ProtocolError(plugin, method, f"returned {len(bitstreams)} bitstreams for {batch} items; {expected}")
    for index, bitstream in enumerate(bitstreams):
        if not isinstance(bitstream, Bitstream) or type(bitstream) is Bitstream:
            raise ProtocolError(plugin, method, f"returned {describe(bitstream)} at index {index}; {expected}")
    return list(bitstreams)


def run_system(
    system: System,
    audio: torch.Tensor,
    sample_rate_hz: int,
    point: OperatingPoint,
    item_ids: Sequence[str] | None = None,
) -> Roundtrip:
    """``system.roundtrip(...)`` with its result checked against the contract (what the runner calls).

    Raises :class:`ProtocolError` naming the plugin when it returns anything but a :class:`Roundtrip` whose
    ``decoded`` is a tensor of the input's shape and whose ``bitstreams`` hold one :class:`Bitstream` per item.
    """
    if not isinstance(system, System):
        raise ProtocolError(system, "roundtrip", f"{type(system).__name__} is not a codecbench System (subclass "
                            "codecbench.codecs.base.System, or Codec for an encoder/decoder pair)")
    result = system.roundtrip(audio, sample_rate_hz, point, item_ids=item_ids)
    if not isinstance(result, Roundtrip):
        raise ProtocolError(system, "roundtrip", f"returned {describe(result)}; expected a Roundtrip(decoded, "
                            "bitstreams, processing)")
    decoded = result.decoded
    if not isinstance(decoded, torch.Tensor) or tuple(decoded.shape) != tuple(audio.shape):
        raise ProtocolError(system, "roundtrip", f"decoded is {describe(decoded)}; expected a tensor of the "
                            f"input's shape {tuple(audio.shape)} [B, C, T] at the evaluation rate")
    result.bitstreams = check_bitstreams(system, "roundtrip", result.bitstreams, audio.shape[0])
    if not isinstance(result.processing, dict):
        raise ProtocolError(system, "roundtrip", f"processing is {describe(result.processing)}; expected a dict")
    return result
