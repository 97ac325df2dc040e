"""What one item was encoded into: small concrete :class:`Bitstream` classes, each computing its own rates.

Rates are computed from what the codec produced, never typed in:

- :class:`CodeBitstream` (integer code streams): nominal bits = sum over streams of frames x log2(alphabet size),
  plus declared side information;
- :class:`PayloadBitstream` (opaque serialized bytes, classic codecs): nominal bits = 8 x payload bytes (the
  packets actually produced), with the container's extra bytes reported apart;
- :class:`LatentBitstream` (continuous latents): no bitrate; compression ratio = input samples / latent values, and
  the latent frame rate;
- :class:`NoBitstream` (anchors, outputs made elsewhere): no bitstream exists; its rate columns are the ones given
  to it (``rates``), with ``rate_source`` saying where they come from (``"declared"`` for precomputed folders,
  never passed off as measured).

Every class gives the same rate columns (:meth:`Bitstream.rate_columns`), NaN where a column does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from codecbench.codecs.errors import BitstreamError

RATE_KEYS = ("bitrate_kbps", "frame_rate_hz", "compression_ratio")
"""Rate columns a :class:`NoBitstream` may carry."""

RATE_SOURCES = ("declared", "measured")


@dataclass(frozen=True)
class CodeStream:
    """One stream of integer codes with its alphabet: ``codes`` int array [F], values in [0, alphabet_size)."""

    codes: np.ndarray
    alphabet_size: int
    frame_rate_hz: float
    name: str = ""

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        where = f"code stream {self.name!r}" if self.name else "code stream"
        if codes.ndim != 1:
            raise BitstreamError(f"{where}: codes must be 1-D [F], got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise BitstreamError(f"{where}: codes must be integers, got dtype {codes.dtype}")
        if self.alphabet_size < 2:
            raise BitstreamError(f"{where}: alphabet_size must be >= 2, got {self.alphabet_size}")
        if codes.size and not (0 <= codes.min() and codes.max() < self.alphabet_size):
            raise BitstreamError(f"{where}: codes in [{codes.min()}, {codes.max()}] fall outside the alphabet "
                                 f"[0, {self.alphabet_size})")

    @property
    def num_frames(self) -> int:
        return int(np.asarray(self.codes).shape[0])

    @property
    def nominal_bits(self) -> float:
        return self.num_frames * math.log2(self.alphabet_size)


@dataclass(frozen=True)
class Bitstream:
    """Base of the bitstream classes (not built directly): the signal encoded and the rate columns.

    Args:
        sample_rate_hz: the codec's native rate of the encoded signal.
        num_samples: input length in samples at that rate (decode trims to it).
        channels: input channels at the codec.
        container_bytes: bytes of the real container/file actually written (header and framing included), if one
            was; ``serialized_kbps`` counts them.
        decode_state: anything else the decoder needs; must be derivable from the counted fields (documented per
            codec), never extra information.
    """

    sample_rate_hz: int
    num_samples: int
    channels: int = 1
    container_bytes: int | None = field(default=None, kw_only=True)
    decode_state: Mapping[str, Any] = field(default_factory=dict, kw_only=True)

    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if type(self) is Bitstream:
            raise BitstreamError("Bitstream is the base class; build a CodeBitstream, PayloadBitstream, "
                                 "LatentBitstream or NoBitstream")
        if self.num_samples < 0 or self.sample_rate_hz <= 0:
            raise BitstreamError(f"{type(self).__name__}: needs sample_rate_hz > 0 and num_samples >= 0, got "
                                 f"{self.sample_rate_hz} and {self.num_samples}")

    # -- what kind ------------------------------------------------------------------------------------------
    @property
    def rate_source(self) -> str:
        """"measured" (computed from codes, payload or latents) or "declared" (precomputed outputs)."""
        return "measured"

    @property
    def is_continuous(self) -> bool:
        return False

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate_hz

    # -- sizes ----------------------------------------------------------------------------------------------
    @property
    def nominal_bits(self) -> float:
        """Bits by the codec's definition (see the module docstring); NaN where the representation has none."""
        return math.nan

    @property
    def bitrate_kbps(self) -> float:
        return self.nominal_bits / self.duration_s / 1000.0

    @property
    def container_overhead_kbps(self) -> float:
        """Rate of the container's bytes beyond the payload (serialized bytes only); NaN elsewhere."""
        return math.nan

    @property
    def serialized_kbps(self) -> float:
        """Rate of the real container/file written for this item (header and framing included); NaN if none."""
        if self.container_bytes is None:
            return math.nan
        return 8.0 * self.container_bytes / self.duration_s / 1000.0

    @property
    def entropy_coded_kbps(self) -> float:
        return math.nan

    # -- frame rates and compression ------------------------------------------------------------------------
    @property
    def frame_rate_hz(self) -> float:
        return math.nan

    @property
    def compression_ratio(self) -> float:
        return math.nan

    def rate_columns(self) -> dict[str, float | str]:
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


@dataclass(frozen=True)
class CodeBitstream(Bitstream):
    """Integer code streams (neural codecs).

    Args:
        streams: the code streams (at least one).
        side_info_bits: bits the codec sends besides its code streams, by the codec's own definition (e.g. EnCodec
            48 kHz per-segment scales); counted in the nominal rate.
        entropy_coded_bits: size after an entropy coder, where one was run.
    """

    streams: tuple[CodeStream, ...] = field(kw_only=True)
    side_info_bits: float = field(default=0.0, kw_only=True)
    entropy_coded_bits: float | None = field(default=None, kw_only=True)

    kind: ClassVar[str] = "codes"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.streams, tuple) or not self.streams:
            raise BitstreamError(f"CodeBitstream: streams must be a non-empty tuple of CodeStream, got "
                                 f"{type(self.streams).__name__} of {len(self.streams) if self.streams else 0}")
        bad = [type(s).__name__ for s in self.streams if not isinstance(s, CodeStream)]
        if bad:
            raise BitstreamError(f"CodeBitstream: streams must be CodeStream instances, got {bad[0]}")

    @property
    def nominal_bits(self) -> float:
        return float(sum(s.nominal_bits for s in self.streams) + self.side_info_bits)

    @property
    def entropy_coded_kbps(self) -> float:
        if self.entropy_coded_bits is None:
            return math.nan
        return self.entropy_coded_bits / self.duration_s / 1000.0

    @property
    def frame_rate_hz(self) -> float:
        """The code streams' frame rate (the highest, if they differ)."""
        return max(s.frame_rate_hz for s in self.streams)


@dataclass(frozen=True)
class PayloadBitstream(Bitstream):
    """Opaque serialized bytes (classic codecs): ``payload`` is exactly the packets the encoder produced.

    Args:
        payload: the packets, concatenated; the nominal rate is 8 bits per byte of it.
        payload_frame_rate_hz: packets per second (the codec's framing), if known.
    """

    payload: bytes = field(kw_only=True)
    payload_frame_rate_hz: float | None = field(default=None, kw_only=True)

    kind: ClassVar[str] = "payload"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.payload, (bytes, bytearray)):
            raise BitstreamError(f"PayloadBitstream: payload must be bytes, got {type(self.payload).__name__}")

    @property
    def nominal_bits(self) -> float:
        return 8.0 * len(self.payload)

    @property
    def container_overhead_kbps(self) -> float:
        if self.container_bytes is None:
            return math.nan
        return 8.0 * (self.container_bytes - len(self.payload)) / self.duration_s / 1000.0

    @property
    def frame_rate_hz(self) -> float:
        return math.nan if self.payload_frame_rate_hz is None else float(self.payload_frame_rate_hz)


@dataclass(frozen=True)
class LatentBitstream(Bitstream):
    """Continuous latents (no bitrate): ``latents`` float array [D, F] at ``latent_frame_rate_hz``."""

    latents: np.ndarray = field(kw_only=True)
    latent_frame_rate_hz: float | None = field(default=None, kw_only=True)

    kind: ClassVar[str] = "latents"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.latents, np.ndarray) or self.latents.size == 0:
            raise BitstreamError(f"LatentBitstream: latents must be a non-empty numpy array, got "
                                 f"{type(self.latents).__name__}")

    @property
    def is_continuous(self) -> bool:
        return True

    @property
    def frame_rate_hz(self) -> float:
        return math.nan if self.latent_frame_rate_hz is None else float(self.latent_frame_rate_hz)

    @property
    def compression_ratio(self) -> float:
        """Input samples (all channels) per latent value."""
        return self.num_samples * self.channels / float(self.latents.size)


@dataclass(frozen=True)
class NoBitstream(Bitstream):
    """No bitstream exists (anchors, decoded outputs made elsewhere): the rate columns are those given in ``rates``.

    Args:
        rates: values of some of :data:`RATE_KEYS`; the others are NaN. May be empty.
        source: ``"declared"`` (by whoever made the files: precomputed folders) or ``"measured"`` (read from the
            output itself: an anchor's waveform has the evaluation rate as its frame rate and one value per sample).
    """

    rates: Mapping[str, float] = field(default_factory=dict, kw_only=True)
    source: str = field(default="declared", kw_only=True)

    kind: ClassVar[str] = "none"
    DECLARABLE_RATES: ClassVar[tuple[str, ...]] = RATE_KEYS

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.rates) - set(RATE_KEYS))
        if unknown:
            raise BitstreamError(f"NoBitstream: rates keys must be among {list(RATE_KEYS)}, got {unknown}")
        if self.source not in RATE_SOURCES:
            raise BitstreamError(f"NoBitstream: source must be one of {list(RATE_SOURCES)}, got {self.source!r}")

    def _rate(self, key: str) -> float:
        value = self.rates.get(key)
        return math.nan if value is None else float(value)

    @property
    def rate_source(self) -> str:
        return self.source

    @property
    def is_continuous(self) -> bool:
        return "bitrate_kbps" not in self.rates and "compression_ratio" in self.rates

    @property
    def nominal_bits(self) -> float:
        return self._rate("bitrate_kbps") * 1000.0 * self.duration_s

    @property
    def frame_rate_hz(self) -> float:
        return self._rate("frame_rate_hz")

    @property
    def compression_ratio(self) -> float:
        return self._rate("compression_ratio")


BITSTREAM_CLASSES = (CodeBitstream, PayloadBitstream, LatentBitstream, NoBitstream)

__all__ = ["BITSTREAM_CLASSES", "Bitstream", "CodeBitstream", "CodeStream", "LatentBitstream", "NoBitstream",
           "PayloadBitstream", "RATE_KEYS"]
