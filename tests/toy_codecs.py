"""Small real codecs for testing the runner: a uniform scalar quantiser (code streams with a known bitrate) and
variants that fail or sleep. Each call appends a line to $TOY_CODEC_LOG when set, so tests count codec calls
across processes."""

from __future__ import annotations

import os
import time

import torch
from codecbench.codecs.base import CodeBitstream, Codec, CodecInfo, CodeStream, ParamSpec


def _log(event: str) -> None:
    path = os.environ.get("TOY_CODEC_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(event + "\n")


class UniformQuantiser(Codec):
    """B-bit uniform quantiser at 16 kHz: one code stream of 16 000 frames/s with alphabet 2**bits."""

    info = CodecInfo("toy_quant", "classic", 16_000, 1, "uniform scalar quantiser (tests)")
    params = (ParamSpec("bits", int, 2, 16),)
    default_points = ({"bits": 4}, {"bits": 8})

    def __init__(self, device: str = "cpu", sleep_s: float = 0.0):
        super().__init__(device)
        self.sleep_s = sleep_s

    def nominal_bitrate_kbps(self, point) -> float:
        return 16.0 * point["bits"]

    def encode(self, audio, point):
        _log("encode")
        time.sleep(self.sleep_s)
        levels = 2 ** point["bits"]
        codes = torch.clamp(((audio + 1) / 2 * (levels - 1)).round(), 0, levels - 1).long()
        return [
            CodeBitstream(16_000, audio.shape[-1], streams=(CodeStream(codes[i, 0].numpy(), levels, 16_000.0),))
            for i in range(audio.shape[0])
        ]

    def decode(self, bitstreams, point):
        levels = 2 ** point["bits"]
        return torch.stack(
            [torch.from_numpy(b.streams[0].codes).float()[None] / (levels - 1) * 2 - 1 for b in bitstreams]
        )


class BrokenCodec(UniformQuantiser):
    """Fails on every encode (a codec that crashes mid-run)."""

    info = CodecInfo("toy_broken", "classic", 16_000, 1, "always fails (tests)")

    def encode(self, audio, point):
        raise RuntimeError("toy codec exploded")


class UnbuildableCodec(UniformQuantiser):
    """Cannot be built (a missing model file, a broken install): its constructor raises."""

    info = CodecInfo("toy_unbuildable", "classic", 16_000, 1, "constructor always fails (tests)")

    def __init__(self, device: str = "cpu", **options):
        raise RuntimeError("toy codec cannot be built")


class PointBlindCodec(UniformQuantiser):
    """Ignores its operating point: always 8 bits, whatever ``bits`` says (like a random-init model)."""

    info = CodecInfo("toy_blind", "classic", 16_000, 1, "ignores its operating point (tests)")

    def encode(self, audio, point):
        return super().encode(audio, {"bits": 8})

    def decode(self, bitstreams, point):
        return super().decode(bitstreams, {"bits": 8})


def register_all() -> None:
    from codecbench.codecs import registry

    for cls in (UniformQuantiser, BrokenCodec, UnbuildableCodec, PointBlindCodec):
        if cls.info.name not in registry.names():
            registry.register(cls.info.name, cls)
