"""The plugin contract: System vs Codec, the concrete bitstream classes, and the named error for a plugin that
returns the wrong thing (through a real run); the docs' minimal codec and system run from docs/codecs.md."""

from __future__ import annotations

import math
import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from codecbench.bench import api
from codecbench.codecs import registry
from codecbench.codecs.base import (
    Bitstream,
    CodeBitstream,
    Codec,
    CodecInfo,
    CodeStream,
    LatentBitstream,
    NoBitstream,
    PayloadBitstream,
    Roundtrip,
    System,
    run_system,
)
from codecbench.codecs.errors import BitstreamError, ProtocolError
from test_runner import tone_folder
from toy_codecs import UniformQuantiser

DOCS = Path(__file__).resolve().parents[1] / "docs" / "codecs.md"
SR = 16_000


# -- the bitstream classes -------------------------------------------------------------------------------------


def test_code_bitstream_rates_from_the_codes():
    streams = (CodeStream(np.arange(50) % 1024, 1024, 50.0, "q0"), CodeStream(np.zeros(100, np.int64), 16, 100.0, "q1"))
    b = CodeBitstream(SR, SR, streams=streams, side_info_bits=32.0, container_bytes=200)
    columns = b.rate_columns()
    assert columns["bitrate_kbps"] == pytest.approx((50 * 10 + 100 * 4 + 32) / 1000)
    assert columns["frame_rate_hz"] == 100.0 and columns["serialized_kbps"] == pytest.approx(1.6)
    assert math.isnan(columns["container_overhead_kbps"]) and math.isnan(columns["compression_ratio"])
    assert math.isnan(columns["entropy_coded_kbps"]) and columns["rate_source"] == "measured"
    assert CodeBitstream(SR, SR, streams=streams, entropy_coded_bits=500.0).entropy_coded_kbps == pytest.approx(0.5)
    assert not b.is_continuous
    with pytest.raises(BitstreamError, match="non-empty tuple"):
        CodeBitstream(SR, SR, streams=())
    with pytest.raises(BitstreamError, match="outside the alphabet"):
        CodeStream(np.array([0, 16]), 16, 50.0, "q0")


def test_payload_bitstream_rates_from_the_bytes():
    b = PayloadBitstream(48_000, 48_000, payload=b"\x01" * 1500, payload_frame_rate_hz=50.0, container_bytes=1600)
    columns = b.rate_columns()
    assert columns["bitrate_kbps"] == pytest.approx(12.0) and columns["serialized_kbps"] == pytest.approx(12.8)
    assert columns["container_overhead_kbps"] == pytest.approx(0.8) and columns["frame_rate_hz"] == 50.0
    assert math.isnan(columns["compression_ratio"]) and columns["rate_source"] == "measured"
    with pytest.raises(BitstreamError, match="payload must be bytes"):
        PayloadBitstream(48_000, 10, payload="text")


def test_latent_bitstream_has_a_compression_ratio_and_no_bitrate():
    b = LatentBitstream(44_100, 44_100, latents=np.zeros((64, 11), np.float32), latent_frame_rate_hz=10.77)
    columns = b.rate_columns()
    assert math.isnan(columns["bitrate_kbps"]) and columns["frame_rate_hz"] == 10.77
    assert columns["compression_ratio"] == pytest.approx(44_100 / (64 * 11)) and b.is_continuous
    with pytest.raises(BitstreamError, match="numpy array"):
        LatentBitstream(44_100, 10, latents=[1.0, 2.0])


def test_no_bitstream_carries_the_rates_it_is_given():
    declared = NoBitstream(SR, 2 * SR, rates={"bitrate_kbps": 1.5})
    assert declared.rate_source == "declared" and declared.bitrate_kbps == pytest.approx(1.5)
    assert math.isnan(declared.frame_rate_hz) and math.isnan(declared.serialized_kbps) and not declared.is_continuous
    waveform = NoBitstream(SR, SR, 2, rates={"frame_rate_hz": SR, "compression_ratio": 1.0}, source="measured")
    assert waveform.rate_columns()["rate_source"] == "measured" and waveform.is_continuous
    assert math.isnan(NoBitstream(SR, SR).bitrate_kbps)  # nothing declared: NaN, never 0


def test_the_base_class_is_not_a_bitstream():
    with pytest.raises(BitstreamError, match="base class"):
        Bitstream(SR, SR)


# -- systems and codecs ----------------------------------------------------------------------------------------


def test_codec_is_a_system_and_anchors_and_folders_are_not_codecs():
    assert issubclass(Codec, System)
    for name in ("reference", "lowpass_3k5", "lowpass_7k", "precomputed"):
        cls = registry.get(name)
        assert issubclass(cls, System) and not issubclass(cls, Codec), name
        assert "encode" not in dir(cls) and "decode" not in dir(cls), name  # no overrides that raise
    for name in ("opus", "mp3", "aac", "encodec_24khz", "dac_16khz"):
        assert issubclass(registry.get(name), Codec), name


class WrongBitstreamCodec(UniformQuantiser):
    """encode returns dicts instead of bitstreams."""

    info = CodecInfo("toy_wrong_bitstream", "classic", 16_000, 1, "returns dicts from encode (tests)")

    def encode(self, audio, point):
        return [{"codes": [1, 2, 3]} for _ in range(audio.shape[0])]


class ShortDecodeCodec(UniformQuantiser):
    """decode drops the last sample."""

    info = CodecInfo("toy_short_decode", "classic", 16_000, 1, "decode one sample short (tests)")

    def decode(self, bitstreams, point):
        return super().decode(bitstreams, point)[..., :-1]


class TupleSystem(System):
    """A system whose roundtrip returns a bare tuple instead of a Roundtrip."""

    info = CodecInfo("toy_tuple_system", "anchor", None, 0, "returns a tuple (tests)")

    def roundtrip(self, audio, sample_rate_hz, point, item_ids=None):
        return audio, [], {}


def _register(*classes):
    for cls in classes:
        if cls.info.name not in registry.names():
            registry.register(cls.info.name, cls)


def test_wrong_returns_get_a_named_error_directly():
    audio = torch.zeros(2, 1, 1600)
    with pytest.raises(ProtocolError, match=r"codec plugin 'toy_wrong_bitstream' \(test_systems:WrongBitstreamCodec\)"
                       r"\.encode: returned dict at index 0; expected a list of 2 Bitstream"):
        run_system(WrongBitstreamCodec(), audio, SR, WrongBitstreamCodec.point(bits=4))
    with pytest.raises(ProtocolError, match=r"'toy_short_decode' .*\.decode: returned Tensor of shape \(2, 1, 1599\)"):
        run_system(ShortDecodeCodec(), audio, SR, ShortDecodeCodec.point(bits=4))
    with pytest.raises(ProtocolError, match=r"'toy_tuple_system' .*\.roundtrip: returned tuple of 3; expected a Roundtrip"):
        run_system(TupleSystem(), audio, SR, TupleSystem.point())
    with pytest.raises(ProtocolError, match=r"is not a codecbench System"):
        run_system(object(), audio, SR, TupleSystem.point())


def test_wrong_returns_fail_their_items_with_the_named_error_through_a_run(tmp_path):
    _register(WrongBitstreamCodec, TupleSystem)
    data = tone_folder(tmp_path / "data", 2)
    raw = {"name": "t", "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
           "dataset": {"path": str(data), "segment_s": 1.0}, "metrics": ["si_sdr"], "report": False,
           "codecs": [{"name": "toy_wrong_bitstream", "grid": {"bits": [4]}}, "toy_tuple_system",
                      {"name": "toy_quant", "grid": {"bits": [4]}}]}
    table = api.run(raw, progress=False).table
    items = table[table.level == "item"]
    wrong = items[items.codec == "toy_wrong_bitstream"]
    assert len(wrong) == 2 and set(wrong.status) == {"failed"} and set(wrong.stage) == {"codec"}
    assert wrong.error.str.startswith("ProtocolError: codec plugin 'toy_wrong_bitstream' "
                                      "(test_systems:WrongBitstreamCodec).encode: returned dict at index 0").all()
    tuple_rows = items[items.codec == "toy_tuple_system"]
    assert set(tuple_rows.status) == {"failed"} and tuple_rows.error.str.contains("expected a Roundtrip").all()
    good = items[items.codec == "toy_quant"]
    assert len(good) == 2 and set(good.status) == {"ok"}  # the run goes on


# -- the docs' examples ----------------------------------------------------------------------------------------


def _doc_module(heading: str) -> types.ModuleType:
    block = re.search(rf"### {re.escape(heading)}\n\n```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    module = types.ModuleType(f"doc_{heading.replace(' ', '_').replace('-', '_')}")
    exec(compile(block, f"{DOCS}:{heading}", "exec"), module.__dict__)
    return module


def test_the_documented_minimal_codec_and_system_run(tmp_path):
    codec_cls = _doc_module("A minimal third-party codec").MuQuantiser
    system_cls = _doc_module("A minimal third-party system").Attenuator
    assert issubclass(codec_cls, Codec) and issubclass(system_cls, System) and not issubclass(system_cls, Codec)
    result = run_system(system_cls(), torch.ones(1, 2, 100), 48_000, system_cls.point(gain_db=-6.0))
    assert isinstance(result, Roundtrip) and float(result.decoded[0, 0, 0]) == pytest.approx(10 ** (-6 / 20))
    _register(codec_cls, system_cls)
    data = tone_folder(tmp_path / "data", 2)
    raw = {"name": "t", "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
           "dataset": {"path": str(data), "segment_s": 1.0}, "metrics": ["si_sdr"], "report": False,
           "codecs": [{"name": "mu_quantiser", "grid": {"bits": [8]}}, "attenuator"]}
    table = api.run(raw, progress=False).table
    items = table[table.level == "item"]
    assert set(items.status) == {"ok"}, items.error.tolist()
    quant = items[items.codec == "mu_quantiser"]
    assert quant.bitrate_kbps.tolist() == [128.0, 128.0] and set(quant.rate_source) == {"measured"}
    gain = items[items.codec == "attenuator"]
    assert (gain[gain.metric == "si_sdr"].value > 90).all()  # a gain only: scale-invariant SDR of float32 rounding
    assert gain.bitrate_kbps.isna().all() and set(gain.frame_rate_hz) == {48_000.0}
