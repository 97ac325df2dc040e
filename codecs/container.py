"""A real bitstream container for code streams: binary header + bit-packed codes, read back bit-exactly.

Layout (format version 1, all integers big-endian):

    magic b"CBCS" | version u8 | sample_rate_hz u32 | num_samples u32 | channels u8 | n_streams u16
    | side_info_bytes u32
    per stream:  name_len u8 | name utf-8 | alphabet_size u32 | frame_rate_hz f64 | num_frames u32
    side information bytes (codec-defined, e.g. EnCodec 48 kHz segment scales as float32)
    payload: every stream's codes, ceil(log2 K) bits each, stream after stream, MSB first, one zero-padded tail

Continuous latents use the same header with n_streams = 0 and a latent block (``D u32 | F u32 |
latent_frame_rate_hz f64`` then float32 values) instead of the payload; their serialized size is then
32 bits per latent value plus the header.

``container_bytes`` of a :class:`~codecbench.codecs.bitstream.Bitstream` is ``len(serialize(...))``: the size of the
bytes actually written, header and padding included.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from dataclasses import dataclass

import numpy as np
from codecbench.bench.core.errors import CodecbenchError
from codecbench.codecs.base import Bitstream, CodeBitstream, CodeStream, LatentBitstream

MAGIC = b"CBCS"
FORMAT_VERSION = 1
_HEAD = struct.Struct(">4sBIIBHI")
_STREAM = struct.Struct(">IdI")
_LATENT = struct.Struct(">IId")


class ContainerError(CodecbenchError):
    """Bytes that are not a codecbench container (bad magic, unknown version, truncated)."""


@dataclass(frozen=True)
class Contents:
    """What :func:`deserialize` read: the bitstream (``container_bytes`` set) and the side-information bytes."""

    bitstream: Bitstream
    side_info: bytes


def bits_per_code(alphabet_size: int) -> int:
    """Bits the container spends per code of an alphabet of ``alphabet_size`` symbols: ceil(log2 K)."""
    return max(1, math.ceil(math.log2(alphabet_size)))


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes [N] (each < 2**bits) -> bits [N * bits] as uint8 0/1, most significant bit first."""
    codes = np.asarray(codes, dtype=np.int64)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return ((codes[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)


def unpack_codes(bit_array: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: bits [>= count * bits] -> codes [count] (int64)."""
    matrix = bit_array[: count * bits].reshape(count, bits).astype(np.int64)
    return matrix @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def serialize(bitstream: Bitstream, side_info: bytes = b"") -> bytes:
    """Write ``bitstream`` (code streams or latents) and the codec's ``side_info`` bytes into one container."""
    if not isinstance(bitstream, (CodeBitstream, LatentBitstream)):
        raise ContainerError(f"this container holds code streams or latents, not a {type(bitstream).__name__} "
                             "(opaque payloads of classic codecs are written by their own container)")
    streams = bitstream.streams if isinstance(bitstream, CodeBitstream) else ()
    head = _HEAD.pack(
        MAGIC, FORMAT_VERSION, bitstream.sample_rate_hz, bitstream.num_samples, bitstream.channels,
        len(streams), len(side_info),
    )
    parts = [head]
    for stream in streams:
        name = stream.name.encode("utf-8")
        if len(name) > 255:
            raise ContainerError(f"code stream name {stream.name!r} is longer than 255 bytes")
        parts += [bytes([len(name)]), name, _STREAM.pack(stream.alphabet_size, stream.frame_rate_hz, stream.num_frames)]
    parts.append(side_info)
    if isinstance(bitstream, CodeBitstream):
        bit_arrays = [pack_codes(s.codes, bits_per_code(s.alphabet_size)) for s in streams]
        parts.append(np.packbits(np.concatenate(bit_arrays)).tobytes())
    else:
        latents = np.asarray(bitstream.latents, dtype=np.float32)
        if latents.ndim != 2:
            raise ContainerError(f"latents must be [D, F], got shape {latents.shape}")
        rate = bitstream.latent_frame_rate_hz if bitstream.latent_frame_rate_hz is not None else math.nan
        parts += [_LATENT.pack(latents.shape[0], latents.shape[1], rate), latents.astype(">f4").tobytes()]
    return b"".join(parts)


def deserialize(data: bytes) -> Contents:
    """Read a container written by :func:`serialize`; the codes come back bit-exactly."""
    if len(data) < _HEAD.size:
        raise ContainerError(f"container truncated: {len(data)} bytes, the header alone is {_HEAD.size}")
    magic, version, rate_hz, num_samples, channels, n_streams, n_side = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise ContainerError(f"not a codecbench container: magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise ContainerError(f"container format version {version} is unknown; this codecbench reads {FORMAT_VERSION}")
    offset = _HEAD.size
    specs = []
    try:
        for _ in range(n_streams):
            name_len = data[offset]
            name = data[offset + 1 : offset + 1 + name_len].decode("utf-8")
            offset += 1 + name_len
            alphabet, frame_rate, frames = _STREAM.unpack_from(data, offset)
            offset += _STREAM.size
            specs.append((name, alphabet, frame_rate, frames))
        side_info = data[offset : offset + n_side]
        offset += n_side
        common = dict(sample_rate_hz=rate_hz, num_samples=num_samples, channels=channels, container_bytes=len(data))
        if specs:
            total_bits = sum(frames * bits_per_code(alphabet) for _, alphabet, _, frames in specs)
            payload = data[offset:]
            if len(payload) != (total_bits + 7) // 8:
                raise ContainerError(f"container payload is {len(payload)} bytes, the header needs {(total_bits + 7) // 8}")
            bit_array = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
            streams, start = [], 0
            for name, alphabet, frame_rate, frames in specs:
                bits = bits_per_code(alphabet)
                codes = unpack_codes(bit_array[start:], bits, frames)
                start += frames * bits
                streams.append(CodeStream(codes=codes, alphabet_size=alphabet, frame_rate_hz=frame_rate, name=name))
            bitstream = CodeBitstream(streams=tuple(streams), **common)
        else:
            dims, frames, latent_rate = _LATENT.unpack_from(data, offset)
            offset += _LATENT.size
            values = np.frombuffer(data, dtype=">f4", count=dims * frames, offset=offset).astype(np.float32)
            if offset + 4 * dims * frames != len(data):
                raise ContainerError("container latent block does not match its declared shape")
            rate = None if math.isnan(latent_rate) else latent_rate
            bitstream = LatentBitstream(latents=values.reshape(dims, frames), latent_frame_rate_hz=rate, **common)
    except (struct.error, IndexError, ValueError) as exc:
        if isinstance(exc, ContainerError):
            raise
        raise ContainerError(f"container truncated or corrupt ({exc})") from exc
    return Contents(bitstream=bitstream, side_info=bytes(side_info))


def with_container(bitstream: Bitstream, side_info: bytes = b"") -> Bitstream:
    """``bitstream`` with ``container_bytes`` set to the size of its real serialized container."""
    return dataclasses.replace(bitstream, container_bytes=len(serialize(bitstream, side_info)))


def streams_from_codes(codes: np.ndarray, alphabet_size: int, frame_rate_hz: float, prefix: str) -> tuple[CodeStream, ...]:
    """Codes [K, F] of K codebooks -> K code streams named ``<prefix><k>``."""
    codes = np.asarray(codes)
    assert codes.ndim == 2, f"codes must be [K, F], got {codes.shape}"
    return tuple(
        CodeStream(codes=codes[k].astype(np.int64), alphabet_size=alphabet_size, frame_rate_hz=frame_rate_hz,
                   name=f"{prefix}{k}")
        for k in range(codes.shape[0])
    )


def codes_from_streams(streams: tuple[CodeStream, ...]) -> np.ndarray:
    """K code streams of equal length -> codes [K, F] (int64)."""
    return np.stack([np.asarray(s.codes, dtype=np.int64) for s in streams])
