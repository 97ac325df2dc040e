"""Classic codecs without weights: Opus (libopus), MP3 (LAME) and AAC-LC through PyAV's bundled FFmpeg.

All run at 48 kHz mono (``info.sample_rate_hz`` = 48000, ``info.channels`` = 1). :meth:`Codec.roundtrip`
resamples from the evaluation rate to 48 kHz and back (soxr VHQ, recorded in the roundtrip's ``processing``), and
downmixes a multichannel input by the channel mean, the decoded mono being duplicated back to the input's channel
count (recorded as ``downmix-mean-2to1``).

Encode (per item): the real encoder turns the signal into packets; ``PayloadBitstream.payload`` is the concatenation of
exactly the packets it produced, so the nominal bitrate ``8 x payload bytes / duration`` is measured from the
bytes. The packets are muxed into a real container written in memory (Ogg for Opus, an ``.mp3`` file with its
Xing/LAME frame and ID3v2 tag for MP3, written with ``fflags=+bitexact``): its size is ``container_bytes``, so the
container overhead is reported apart. The container file is kept in ``decode_state["container"]`` (its size is
what ``serialized_kbps`` counts) and decoding reads it back through FFmpeg's demuxer and decoder.

Delay (measured with PyAV 18.1 / its FFmpeg; checked by ``tests/test_classic.py`` on every run):

- Opus: libopus announces 312 samples of look-ahead (6.5 ms) as the Ogg pre-skip; FFmpeg's Opus decoder drops
  them and the Ogg end granule trims the end, so the decoded length equals the input's. One residue remains:
  packets coded in SILK narrowband mode (what libopus chooses at 6-8 kbps mono) come out 6 samples (0.125 ms =
  one sample at SILK's 8 kHz internal rate) late through FFmpeg's decoder. The adapter reads the mode from each
  packet's TOC byte and advances the output by :data:`OPUS_SILK_NB_RESIDUAL_DELAY_SAMPLES` when most packets
  are SILK narrowband (the last 6 samples are then zero-padded).
- MP3: LAME delays the signal by 576 samples (encoder) + 529 (decoder) = 1105 samples; FFmpeg's MP3 muxer writes
  them (and the end padding) into the LAME tag and its demuxer trims exactly that on decode. Nothing remains.
- AAC: FFmpeg's encoder primes 1024 samples, written as the MP4 edit list and dropped by the demuxer on decode.

The decoder checks the decoded length against the input's and raises :class:`CodecbenchError` when it shows that
the delay was not trimmed (e.g. another FFmpeg build), rather than returning misaligned audio.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from codecbench.bench.core.errors import CodecbenchError, ConfigError, MissingDependencyError
from codecbench.codecs.base import Bitstream, Codec, CodecInfo, OperatingPoint, ParamSpec, PayloadBitstream

SAMPLE_RATE_HZ = 48000

OPUS_FRAME_SAMPLES = 960  # 20 ms frames at 48 kHz
OPUS_LOOKAHEAD_SAMPLES = 312  # libopus look-ahead, application "audio" (Ogg pre-skip)
OPUS_SILK_NB_RESIDUAL_DELAY_SAMPLES = 6
OPUS_VBR_MODES = ("off", "constrained", "on")

MP3_FRAME_SAMPLES = 1152  # MPEG-1 Layer III
MP3_ENCODER_DELAY_SAMPLES = 576  # LAME
MP3_DECODER_DELAY_SAMPLES = 529  # the MP3 synthesis filterbank (528 + 1)
MP3_BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)  # MPEG-1 Layer III at 48 kHz

AAC_FRAME_SAMPLES = 1024  # AAC-LC
AAC_PRIMING_SAMPLES = 1024  # FFmpeg's AAC encoder delay (MDCT overlap), written as the MP4 edit list

_FFMPEG_SOURCE = "FFmpeg bundled with PyAV (https://pyav.basswood-io.com)"


def _import_av() -> Any:
    try:
        import av
    except ImportError as error:  # pragma: no cover - av is a core dependency
        raise MissingDependencyError("the classic codecs (opus, mp3)", "av", "pip install av") from error
    return av


def opus_packet_mode(packet: bytes) -> str:
    """Mode and audio bandwidth of an Opus packet from its TOC byte (RFC 6716, 3.1), e.g. ``"SILK-NB"``."""
    config = packet[0] >> 3
    if config < 12:
        return "SILK-" + ("NB", "MB", "WB")[config // 4]
    if config < 16:
        return "HYBRID-" + ("SWB", "FB")[(config - 12) // 2]
    return "CELT-" + ("NB", "WB", "SWB", "FB")[(config - 16) // 4]


class _FFmpegCodec(Codec):
    """A codec run by an FFmpeg encoder and decoder at 48 kHz mono; subclasses name the encoder and container."""

    encoder_name: ClassVar[str]
    container_format: ClassVar[str]
    input_sample_format: ClassVar[str]  # the encoder's float sample format ("flt" packed or "fltp" planar)
    frame_samples: ClassVar[int]
    delay_samples: ClassVar[int]  # the total delay FFmpeg's demuxer/decoder removes

    def _encoder_options(self, point: OperatingPoint) -> dict[str, str]:
        return {}

    def _residual_delay_samples(self, packets: Sequence[bytes]) -> int:
        """Delay left in FFmpeg's decoded output, to be removed here (0 unless measured otherwise)."""
        return 0

    # -- catalogue ----------------------------------------------------------------------------------------------
    def nominal_bitrate_kbps(self, point: OperatingPoint) -> float:
        """The target bitrate of ``point`` (the measured one is the Bitstream's ``bitrate_kbps``)."""
        return float(point["bitrate_kbps"])

    def frame_rate_hz(self, point: OperatingPoint) -> float:
        return SAMPLE_RATE_HZ / self.frame_samples

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        """One frame plus the codec's delay (look-ahead / filterbank), as a streaming encoder-decoder pair has."""
        return 1000.0 * (self.frame_samples + self.delay_samples) / SAMPLE_RATE_HZ

    # -- the work -------------------------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor, point: OperatingPoint) -> list[Bitstream]:
        """Encode ``audio`` [B, 1, T] at 48 kHz: one Bitstream per item (payload = packets, container size)."""
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise CodecbenchError(
                f"codec '{self.info.name}' encodes mono audio [B, 1, T] at {SAMPLE_RATE_HZ} Hz, got shape "
                f"{tuple(audio.shape)} (Codec.roundtrip downmixes and resamples)"
            )
        samples = audio.detach().cpu().numpy().astype(np.float32)
        return [self._encode_item(np.ascontiguousarray(item), point) for item in samples]

    def _encode_item(self, item: np.ndarray, point: OperatingPoint) -> Bitstream:
        """``item`` [1, T] float32 at 48 kHz -> Bitstream."""
        av = _import_av()
        buffer = io.BytesIO()
        container = av.open(buffer, mode="w", format=self.container_format, options={"fflags": "+bitexact"})
        stream = container.add_stream(self.encoder_name, rate=SAMPLE_RATE_HZ, layout="mono")
        stream.bit_rate = int(round(1000 * float(point["bitrate_kbps"])))
        stream.codec_context.options = {"flags": "+bitexact", **self._encoder_options(point)}  # no version strings
        frame = av.AudioFrame.from_ndarray(item, format=self.input_sample_format, layout="mono")
        frame.sample_rate = SAMPLE_RATE_HZ
        frame.pts = 0
        packets: list[bytes] = []
        for packet in [*stream.encode(frame), *stream.encode(None)]:  # PyAV cuts the signal into encoder frames
            packets.append(bytes(packet))
            container.mux(packet)
        container.close()
        data = buffer.getvalue()
        return PayloadBitstream(
            sample_rate_hz=SAMPLE_RATE_HZ,
            num_samples=item.shape[-1],
            channels=1,
            payload=b"".join(packets),
            payload_frame_rate_hz=self.frame_rate_hz(point),
            container_bytes=len(data),
            decode_state={"container": data, "container_format": self.container_format},
        )

    def decode(self, bitstreams: Sequence[Bitstream], point: OperatingPoint) -> torch.Tensor:
        """Decode each item's container through FFmpeg: audio [B, 1, T] at 48 kHz, delay removed."""
        return torch.from_numpy(np.stack([self._decode_item(b) for b in bitstreams]))

    def _decode_item(self, bitstream: Bitstream) -> np.ndarray:
        """Bitstream -> audio [1, num_samples] float32, sample-aligned with the encoder's input."""
        av = _import_av()
        container = av.open(io.BytesIO(bitstream.decode_state["container"]), mode="r")
        try:
            stream = container.streams.audio[0]
            packets: list[bytes] = []
            chunks: list[np.ndarray] = []
            for packet in container.demux(stream):
                if packet.size:
                    packets.append(bytes(packet))
                for frame in packet.decode():
                    if frame.sample_rate != SAMPLE_RATE_HZ or len(frame.layout.channels) != 1:
                        raise CodecbenchError(
                            f"codec '{self.info.name}': FFmpeg decoded {frame.sample_rate} Hz with "
                            f"{len(frame.layout.channels)} channels, expected {SAMPLE_RATE_HZ} Hz mono"
                        )
                    chunks.append(frame.to_ndarray().reshape(-1))
        finally:
            container.close()
        decoded = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        num_samples = bitstream.num_samples
        if not 0 <= decoded.size - num_samples < self.delay_samples:
            raise CodecbenchError(
                f"codec '{self.info.name}': FFmpeg decoded {decoded.size} samples for a {num_samples}-sample input; "
                f"expected the {self.delay_samples}-sample codec delay to be trimmed by the demuxer/decoder "
                f"(PyAV {av.__version__}), so the output would be misaligned"
            )
        decoded = decoded[self._residual_delay_samples(packets) :][:num_samples]
        out = np.zeros((1, num_samples), dtype=np.float32)
        out[0, : decoded.size] = decoded
        return out


class Opus(_FFmpegCodec):
    """Opus (RFC 6716) by libopus through FFmpeg: 20 ms frames, application "audio", Ogg container.

    Rate control (constructor option ``vbr``, from the config's codec options): ``"off"`` (default) is constant
    bitrate, every packet the same size, like the fixed-rate neural codecs it is compared with; ``"constrained"``
    and ``"on"`` are libopus's constrained and unconstrained VBR (the rate then depends on the signal; it is
    measured all the same).
    """

    info = CodecInfo(
        name="opus",
        kind="classic",
        sample_rate_hz=SAMPLE_RATE_HZ,
        channels=1,
        description="Opus (libopus) through PyAV/FFmpeg, 20 ms frames, Ogg container",
        version="1",
        source=_FFMPEG_SOURCE,
        paper="RFC 6716 (2012)",
        dependencies=("av",),
    )
    params = (ParamSpec("bitrate_kbps", int, low=6, high=256, help="target bitrate of libopus"),)
    default_points = tuple({"bitrate_kbps": kbps} for kbps in (6, 8, 12, 16, 24, 32, 48, 64))

    encoder_name = "libopus"
    container_format = "ogg"
    input_sample_format = "flt"
    frame_samples = OPUS_FRAME_SAMPLES
    delay_samples = OPUS_LOOKAHEAD_SAMPLES

    def __init__(self, device: str = "cpu", vbr: str = "off"):
        super().__init__(device=device)
        if vbr not in OPUS_VBR_MODES:
            raise ConfigError(f"codec 'opus' option 'vbr': {vbr!r} is not one of {list(OPUS_VBR_MODES)}")
        self.vbr = vbr

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "vbr": self.vbr}

    def _encoder_options(self, point: OperatingPoint) -> dict[str, str]:
        return {"application": "audio", "frame_duration": "20", "vbr": self.vbr}

    def _residual_delay_samples(self, packets: Sequence[bytes]) -> int:
        silk_nb = sum(opus_packet_mode(p) == "SILK-NB" for p in packets)
        return OPUS_SILK_NB_RESIDUAL_DELAY_SAMPLES if 2 * silk_nb > len(packets) else 0


class Mp3(_FFmpegCodec):
    """MP3 (MPEG-1 Layer III) by LAME through FFmpeg: constant bitrate, LAME's defaults otherwise (bit reservoir
    on, its bitrate-dependent low-pass), written as an .mp3 file with a Xing/LAME frame."""

    info = CodecInfo(
        name="mp3",
        kind="classic",
        sample_rate_hz=SAMPLE_RATE_HZ,
        channels=1,
        description="MP3 (LAME, CBR) through PyAV/FFmpeg, 1152-sample frames, .mp3 file",
        version="1",
        source=_FFMPEG_SOURCE,
        paper="ISO/IEC 11172-3 (1993)",
        dependencies=("av",),
    )
    params = (
        ParamSpec("bitrate_kbps", int, choices=MP3_BITRATES_KBPS, help="CBR bitrate (MPEG-1 Layer III at 48 kHz)"),
    )
    default_points = tuple({"bitrate_kbps": kbps} for kbps in (32, 48, 64, 96, 128))

    encoder_name = "libmp3lame"
    container_format = "mp3"
    input_sample_format = "fltp"
    frame_samples = MP3_FRAME_SAMPLES
    delay_samples = MP3_ENCODER_DELAY_SAMPLES + MP3_DECODER_DELAY_SAMPLES


class Aac(_FFmpegCodec):
    """AAC-LC by FFmpeg's native encoder (its default two-loop coder, average bitrate), in an .m4a (MP4) file.

    The encoder primes 1024 samples; FFmpeg's MP4 muxer writes them as an edit list, which its demuxer applies on
    decode (the end keeps up to one frame of padding, cut to the input length here)."""

    info = CodecInfo(
        name="aac",
        kind="classic",
        sample_rate_hz=SAMPLE_RATE_HZ,
        channels=1,
        description="AAC-LC (FFmpeg native encoder) through PyAV, 1024-sample frames, .m4a file",
        version="1",
        source=_FFMPEG_SOURCE,
        paper="ISO/IEC 14496-3 (MPEG-4 Audio)",
        dependencies=("av",),
    )
    params = (ParamSpec("bitrate_kbps", int, low=16, high=128, help="target bitrate of FFmpeg's AAC encoder"),)
    default_points = tuple({"bitrate_kbps": kbps} for kbps in (32, 48, 64, 96, 128))

    encoder_name = "aac"
    container_format = "ipod"  # FFmpeg's .m4a muxer
    input_sample_format = "fltp"
    frame_samples = AAC_FRAME_SAMPLES
    delay_samples = AAC_PRIMING_SAMPLES


__all__ = ["Aac", "Mp3", "Opus", "opus_packet_mode"]
