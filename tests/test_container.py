"""Tests of codecs/container.py: bit packing and the container read back bit-exactly, with hand-computed sizes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from codecbench.codecs import container
from codecbench.codecs.base import CodeBitstream, CodeStream, LatentBitstream, PayloadBitstream


def _bitstream(rng: np.random.Generator, alphabets=(1024, 1024), frames=75, rate_hz=75.0) -> CodeBitstream:
    streams = tuple(
        CodeStream(codes=rng.integers(0, k, frames), alphabet_size=k, frame_rate_hz=rate_hz, name=f"q{i}")
        for i, k in enumerate(alphabets)
    )
    return CodeBitstream(sample_rate_hz=24000, num_samples=24000, streams=streams)


@pytest.mark.parametrize("alphabet", [2, 3, 256, 1000, 1024, 8192, 32768])
def test_pack_unpack_round_trip(rng, alphabet):
    codes = rng.integers(0, alphabet, 301)
    codes[:2] = [0, alphabet - 1]
    bits = container.bits_per_code(alphabet)
    packed = container.pack_codes(codes, bits)
    assert packed.shape == (301 * bits,)
    np.testing.assert_array_equal(container.unpack_codes(packed, bits, 301), codes)


def test_pack_codes_msb_first_hand_case():
    np.testing.assert_array_equal(container.pack_codes(np.array([5, 2]), 3), [1, 0, 1, 0, 1, 0])


def test_bits_per_code():
    assert [container.bits_per_code(k) for k in (2, 3, 4, 1000, 1024, 1025, 32768)] == [1, 2, 2, 10, 10, 11, 15]


def test_serialize_round_trip_is_bit_exact_with_side_info(rng):
    bitstream = _bitstream(rng, alphabets=(1024, 256, 1000))
    side = struct.pack(">ff", 0.25, 1.5)
    data = container.serialize(bitstream, side)
    back = container.deserialize(data)
    assert back.side_info == side
    assert back.bitstream.container_bytes == len(data)
    assert (back.bitstream.sample_rate_hz, back.bitstream.num_samples, back.bitstream.channels) == (24000, 24000, 1)
    for a, b in zip(bitstream.streams, back.bitstream.streams):
        assert (a.name, a.alphabet_size, a.frame_rate_hz) == (b.name, b.alphabet_size, b.frame_rate_hz)
        np.testing.assert_array_equal(a.codes, b.codes)
    assert back.bitstream.bitrate_kbps == bitstream.bitrate_kbps


def test_container_size_hand_computed(rng):
    # header 20 bytes; per stream 1 + len("q0") + 16 = 19 bytes; payload 2 x 75 x 10 bits = 1500 bits -> 188 bytes
    bitstream = _bitstream(rng)
    assert len(container.serialize(bitstream)) == 20 + 2 * 19 + 188
    with_size = container.with_container(bitstream)
    assert with_size.container_bytes == 246
    assert with_size.serialized_kbps == pytest.approx(246 * 8 / 1000.0)


def test_latents_round_trip(rng):
    latents = rng.standard_normal((64, 11)).astype(np.float32)
    bitstream = LatentBitstream(sample_rate_hz=44100, num_samples=44100, latents=latents, latent_frame_rate_hz=10.7666015625)
    back = container.deserialize(container.serialize(bitstream)).bitstream
    np.testing.assert_array_equal(back.latents, latents)
    assert back.latent_frame_rate_hz == 10.7666015625
    assert back.container_bytes == 20 + 16 + 4 * 64 * 11


def test_streams_codes_round_trip(rng):
    codes = rng.integers(0, 1024, (3, 20))
    streams = container.streams_from_codes(codes, 1024, 75.0, "q")
    assert [s.name for s in streams] == ["q0", "q1", "q2"]
    np.testing.assert_array_equal(container.codes_from_streams(streams), codes)


def test_bad_inputs_raise_clear_errors(rng):
    data = container.serialize(_bitstream(rng))
    with pytest.raises(container.ContainerError, match="not a codecbench container"):
        container.deserialize(b"XXXX" + data[4:])
    with pytest.raises(container.ContainerError, match="format version 9 is unknown"):
        container.deserialize(data[:4] + bytes([9]) + data[5:])
    with pytest.raises(container.ContainerError, match="payload is"):
        container.deserialize(data[:-3])
    with pytest.raises(container.ContainerError, match="truncated"):
        container.deserialize(data[:10])
    with pytest.raises(container.ContainerError, match="opaque payloads"):
        container.serialize(PayloadBitstream(sample_rate_hz=48000, num_samples=10, payload=b"abc"))
