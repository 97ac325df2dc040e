"""Tests of the precomputed-outputs reader and codec (codecs/precomputed.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from codecbench.bench.core.errors import AudioInputError, ConfigError
from codecbench.codecs import precomputed, registry
from codecbench.codecs.base import NoBitstream, PayloadBitstream
from codecbench.codecs.errors import BitstreamError
from codecbench.codecs.precomputed import PrecomputedFolders, header_rate_hint, read_folder_spec, read_pairs

SR = 48000


def _signal(rng: np.random.Generator, seconds: float = 0.5, rate: int = SR) -> np.ndarray:
    """A seeded test signal [T]: two tones plus a little noise, peak below 0.5."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1250 * t) + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def _write(path: Path, x: np.ndarray, rate: int, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.T if x.ndim == 2 else x, rate, subtype=subtype)
    return path


@pytest.fixture
def folders(tmp_path: Path, rng: np.random.Generator) -> dict[str, object]:
    """ref/ (48 kHz PCM_16) with items a, b; ``signals``: the samples as stored (read back)."""
    signals = {name: _signal(rng) for name in ("a", "b")}
    for name, x in signals.items():
        _write(tmp_path / "ref" / f"{name}.wav", x, SR, "PCM_16")
    stored = {name: sf.read(str(tmp_path / "ref" / f"{name}.wav"), dtype="float32")[0] for name in signals}
    return {"root": tmp_path, "ref": tmp_path / "ref", "signals": stored}


# ---------------------------------------------------------------------------------------------------------------
# folder description
# ---------------------------------------------------------------------------------------------------------------


def test_folder_spec_reads_declared_rates(tmp_path: Path) -> None:
    (tmp_path / "codecbench.yaml").write_text("codec: S-PRESSO\nbitrate_kbps: 1.32\nsample_rate_hz: 48000\n")
    spec = read_folder_spec(tmp_path)
    assert (spec.codec, spec.bitrate_kbps, spec.sample_rate_hz) == ("S-PRESSO", 1.32, 48000)
    assert spec.declared_rates() == {"bitrate_kbps": 1.32}
    assert "declared in" in spec.rate_source and "not measured" in spec.rate_source


def test_folder_spec_without_yaml_uses_folder_name(tmp_path: Path) -> None:
    spec = read_folder_spec(tmp_path)
    assert spec.codec == tmp_path.name and spec.declared_rates() == {} and spec.rate_source.startswith("none")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("codec: x\nbitrate_kbps: 1\nbitrate: 2\n", "unknown key 'bitrate'; valid keys"),
        ("bitrate_kbps: 1\n", "key 'codec'.*required"),
        ("codec: x\n", "declares no rate"),
        ("codec: x\nbitrate_kbps: -1\n", "'bitrate_kbps' must be a positive number"),
        ("codec: x\nframe_rate_hz: 25\nsample_rate_hz: 44100.5\n", "'sample_rate_hz' must be an integer"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_folder_spec_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "codecbench.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_folder_spec(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# pairing
# ---------------------------------------------------------------------------------------------------------------


def test_missing_and_extra_files_are_named(folders: dict) -> None:
    deg = folders["root"] / "deg"
    _write(deg / "a.wav", folders["signals"]["a"], SR)
    _write(deg / "c.flac", folders["signals"]["a"], SR, "PCM_16")
    with pytest.raises(AudioInputError, match=r"1 reference file\(s\) have no decoded file: b\.wav.*1 decoded file"
                       r"\(s\) have no reference .*: c\.flac"):
        read_pairs(folders["ref"], deg)


def test_doubled_stem_and_empty_folder(folders: dict) -> None:
    deg = folders["root"] / "deg"
    _write(deg / "a.wav", folders["signals"]["a"], SR)
    _write(deg / "a.flac", folders["signals"]["a"], SR, "PCM_16")
    with pytest.raises(AudioInputError, match="two files share a name stem.*a.flac and a.wav"):
        read_pairs(folders["ref"], deg)
    (folders["root"] / "empty").mkdir()
    with pytest.raises(AudioInputError, match="no audio files"):
        read_pairs(folders["ref"], folders["root"] / "empty")
    with pytest.raises(AudioInputError, match="folder does not exist"):
        read_pairs(folders["ref"], folders["root"] / "nowhere")


def test_pairs_by_stem_across_suffixes_exactly(folders: dict) -> None:
    deg = folders["root"] / "deg"
    for name, x in folders["signals"].items():
        _write(deg / f"{name}.flac", x, SR, "PCM_16")
    aligned = read_pairs(folders["ref"], deg)
    assert [item.item for item in aligned.items] == ["a", "b"]
    for item in aligned.items:
        np.testing.assert_array_equal(item.decoded, item.reference)
        record = item.decoded_record
        assert (record.trimmed_samples, record.padded_samples, record.resampler, record.sample_format) == (
            0, 0, "none", "PCM_16")


# ---------------------------------------------------------------------------------------------------------------
# alignment: resampling, trimming, padding, tolerance, header rate
# ---------------------------------------------------------------------------------------------------------------


def test_resamples_44k1_decoded_to_the_reference(folders: dict) -> None:
    deg = folders["root"] / "deg"
    for name, x in folders["signals"].items():
        _write(deg / f"{name}.wav", soxr.resample(x, SR, 44100, quality="VHQ").astype(np.float32), 44100)
    aligned = read_pairs(folders["ref"], deg)
    for item in aligned.items:
        record = item.decoded_record
        assert (record.header_sample_rate_hz, record.read_sample_rate_hz, record.file_samples) == (44100, 44100, 22050)
        assert record.resampled_samples == 24000 and record.trimmed_samples == record.padded_samples == 0
        assert record.resampler.startswith("soxr") and "resampled 44100->48000 Hz" in record.summary()
        # down and up again: only the noise above 22.05 kHz is lost (~38 dB below the tones); edges excluded
        middle = slice(1000, -1000)
        error = item.decoded[0, middle] - item.reference[0, middle]
        assert 10 * np.log10(np.sum(item.reference[0, middle] ** 2) / np.sum(error**2)) > 30


def test_trims_and_pads_within_tolerance_and_records_counts(folders: dict) -> None:
    deg = folders["root"] / "deg"
    a, b = folders["signals"]["a"], folders["signals"]["b"]
    _write(deg / "a.wav", a[:-480], SR)  # 1 % short
    _write(deg / "b.wav", np.concatenate([b, np.ones(240, np.float32) * 0.25]), SR)  # 0.5 % long
    items = {item.item: item for item in read_pairs(folders["ref"], deg).items}
    ra, rb = items["a"].decoded_record, items["b"].decoded_record
    assert (ra.padded_samples, ra.trimmed_samples) == (480, 0)
    assert (rb.padded_samples, rb.trimmed_samples) == (0, 240)
    assert ra.length_ratio == pytest.approx(23520 / 24000) and rb.length_ratio == pytest.approx(24240 / 24000)
    np.testing.assert_array_equal(items["a"].decoded[0, :-480], a[:-480])
    np.testing.assert_array_equal(items["a"].decoded[0, -480:], 0.0)
    np.testing.assert_array_equal(items["b"].decoded[0], b)
    assert "padded 480" in ra.summary() and "trimmed 240" in rb.summary()


def test_lengths_far_apart_stop_with_the_file_named(folders: dict) -> None:
    deg = folders["root"] / "deg"
    _write(deg / "a.wav", folders["signals"]["a"][:-4800], SR)  # 20 % short
    _write(deg / "b.wav", folders["signals"]["b"], SR)
    with pytest.raises(AudioInputError, match=r"deg/a\.wav: length 0\.400 s .* ratio 0\.8000, beyond the tolerance of 3%"):
        read_pairs(folders["ref"], deg)
    with pytest.raises(AudioInputError, match="ratio 0.8000") as info:
        read_pairs(folders["ref"], deg, length_tolerance=0.05)
    assert "header rate" not in str(info.value)  # 0.8 is no ratio of common rates (within 5 %)


def test_wrong_header_rate_is_flagged_and_override_reads_exactly(folders: dict) -> None:
    deg = folders["root"] / "deg"
    for name, x in folders["signals"].items():
        _write(deg / f"{name}.wav", x, 44100)  # 48 kHz samples under a 44.1 kHz header
    with pytest.raises(AudioInputError, match=r"ratio 1\.0884, .* matches 48000/44100 .* header rate \(44100 Hz\) "
                       r"looks wrong.*--deg-sample-rate-hz 48000\) \(and 1 more file"):
        read_pairs(folders["ref"], deg)
    aligned = read_pairs(folders["ref"], deg, decoded_sample_rate_hz=48000, override_source="test")
    for item in aligned.items:
        np.testing.assert_array_equal(item.decoded, item.reference)
        assert item.decoded_record.rate_override == "test" and item.decoded_record.resampler == "none"
        assert "read as 48000 Hz (header 44100 Hz, override from test)" in item.decoded_record.summary()
    # the folder's YAML may say the same
    (deg / "codecbench.yaml").write_text("codec: x\nframe_rate_hz: 25\nsample_rate_hz: 48000\n")
    aligned = read_pairs(folders["ref"], deg)
    assert aligned.items[0].decoded_record.rate_override.endswith("codecbench.yaml")


@pytest.mark.parametrize(
    ("ratio", "read_hz", "expected"),
    [(48000 / 44100, 44100, 48000), (44100 / 48000, 48000, 44100), (3.0, 16000, 48000), (1.0, 48000, None),
     (0.8, 48000, None), (0.9, 48000, 44100), (237959 / 240000 * 48000 / 44100, 44100, 48000), (math.nan, 48000, None)],
)
def test_header_rate_hint(ratio: float, read_hz: int, expected: int | None) -> None:
    assert header_rate_hint(ratio, read_hz, 0.03) == expected


def test_tolerance_limits() -> None:
    with pytest.raises(ConfigError, match=r"length tolerance 0\.08 is outside \[0, 0\.05\]"):
        precomputed.check_tolerance(0.08)
    assert precomputed.check_tolerance(0.0) == 0.0


def test_stereo_decoded_is_downmixed_to_a_mono_reference(folders: dict) -> None:
    deg = folders["root"] / "deg"
    for name, x in folders["signals"].items():
        _write(deg / f"{name}.wav", np.stack([x, 0.5 * x]), SR)
    item = read_pairs(folders["ref"], deg).items[0]
    assert item.decoded.shape == (1, 24000) and item.decoded_record.channel_policy == "downmix-mean-2to1"
    np.testing.assert_allclose(item.decoded[0], 0.75 * folders["signals"]["a"], atol=1e-7)


# ---------------------------------------------------------------------------------------------------------------
# declared-rate bitstreams
# ---------------------------------------------------------------------------------------------------------------


def test_declared_bitstream_rates() -> None:
    discrete = NoBitstream(sample_rate_hz=SR, num_samples=5 * SR, rates={"bitrate_kbps": 1.32})
    assert discrete.rate_source == "declared" and discrete.bitrate_kbps == pytest.approx(1.32)
    assert discrete.nominal_bits == pytest.approx(1320 * 5) and not discrete.is_continuous
    assert math.isnan(discrete.frame_rate_hz) and math.isnan(discrete.serialized_kbps)
    continuous = NoBitstream(sample_rate_hz=SR, num_samples=SR, rates={"frame_rate_hz": 21.5, "compression_ratio": 64})
    assert continuous.is_continuous and math.isnan(continuous.bitrate_kbps)
    assert continuous.rate_columns()["compression_ratio"] == 64 and continuous.frame_rate_hz == 21.5
    measured = PayloadBitstream(sample_rate_hz=SR, num_samples=SR, payload=b"\x00" * 10)
    assert measured.rate_source == "measured"
    with pytest.raises(BitstreamError, match="rates keys must be among"):
        NoBitstream(sample_rate_hz=SR, num_samples=SR, rates={"kbps": 1.0})
    with pytest.raises(BitstreamError, match="source must be one of"):
        NoBitstream(sample_rate_hz=SR, num_samples=SR, source="guessed")


# ---------------------------------------------------------------------------------------------------------------
# the codec
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def conditions(folders: dict) -> Path:
    """parent/ with two conditions: low (declared 1.5 kbps, 1 % short) and cont (declared frame rate, exact)."""
    parent = folders["root"] / "outputs"
    for name, x in folders["signals"].items():
        _write(parent / "low" / f"{name}.wav", x[:-240], SR)
        _write(parent / "cont" / f"{name}.flac", x, SR, "PCM_16")
    (parent / "low" / "codecbench.yaml").write_text("codec: ToyCodec\nbitrate_kbps: 1.5\n")
    (parent / "cont" / "codecbench.yaml").write_text("codec: ToyVAE\nframe_rate_hz: 25\ncompression_ratio: 64\n")
    return parent


def test_codec_is_registered_and_lists_conditions(conditions: Path) -> None:
    assert registry.get("precomputed") is PrecomputedFolders
    codec = registry.create("precomputed", folder=str(conditions))
    assert [p.label for p in codec.condition_points()] == ["condition=cont", "condition=low"]
    assert codec.nominal_bitrate_kbps(codec.point(condition="low")) == 1.5
    assert math.isnan(codec.nominal_bitrate_kbps(codec.point(condition="cont")))
    assert codec.frame_rate_hz(codec.point(condition="cont")) == 25
    only = PrecomputedFolders(folder=str(conditions / "low"))  # a single condition folder
    assert [p.label for p in only.condition_points()] == ["condition=low"]
    with pytest.raises(ConfigError, match=r"conditions: 'nope' is not a folder of decoded files .*\['cont', 'low'\]"):
        PrecomputedFolders(folder=str(conditions), conditions=["nope"])
    with pytest.raises(ConfigError, match=r"condition: 'other' is not one of \['cont', 'low'\]"):
        codec.roundtrip(torch.zeros(1, 1, 10), SR, codec.point(condition="other"), item_ids=["a#0"])
    with pytest.raises(ConfigError, match="needs the option folder"):
        PrecomputedFolders().roundtrip(torch.zeros(1, 1, 10), SR, PrecomputedFolders.point(condition="x"), ["a#0"])


def test_codec_roundtrip_reads_aligns_and_declares(folders: dict, conditions: Path) -> None:
    codec = PrecomputedFolders(folder=str(conditions))
    signals = folders["signals"]
    audio = torch.from_numpy(np.stack([signals["b"], signals["a"]]))[:, None]
    result = codec.roundtrip(audio, SR, codec.point(condition="low"), item_ids=["b#0", "a#0"])
    assert result.decoded.shape == (2, 1, 24000) and result.decoded.dtype == torch.float32
    np.testing.assert_array_equal(result.decoded[0, 0, :-240].numpy(), signals["b"][:-240])
    np.testing.assert_array_equal(result.decoded[1, 0, -240:].numpy(), 0.0)
    assert [item["padded_samples"] for item in result.processing["items"]] == [240, 240]
    assert result.processing["declared_codec"] == "ToyCodec"
    assert "not measured" in result.processing["rate_source"] and math.isnan(result.processing["encode_s"])
    assert all(b.rate_source == "declared" and b.bitrate_kbps == pytest.approx(1.5) for b in result.bitstreams)
    cont = codec.roundtrip(audio, SR, codec.point(condition="cont"), item_ids=["b#0", "a#0"])
    np.testing.assert_array_equal(cont.decoded[:, 0].numpy(), np.stack([signals["b"], signals["a"]]))
    assert cont.bitstreams[0].is_continuous and cont.bitstreams[0].compression_ratio == 64


def test_codec_segments_map_to_consecutive_spans(folders: dict, tmp_path: Path) -> None:
    long = np.concatenate([folders["signals"]["a"], folders["signals"]["b"][:-600]])  # 2 segments, last 2.5 % short
    _write(tmp_path / "seg" / "clip.wav", long, SR)
    codec = PrecomputedFolders(folder=str(tmp_path / "seg"), segmented=True)
    point = codec.point(condition="seg")
    result = codec.roundtrip(torch.zeros(2, 1, 24000), SR, point, item_ids=["clip#0", "clip#1"])
    np.testing.assert_array_equal(result.decoded[0, 0].numpy(), folders["signals"]["a"])
    np.testing.assert_array_equal(result.decoded[1, 0, :-600].numpy(), folders["signals"]["b"][:-600])
    assert [r["start_samples"] for r in result.processing["items"]] == [0, 24000]
    assert [r["padded_samples"] for r in result.processing["items"]] == [0, 600]
    with pytest.raises(AudioInputError, match="segment from sample 48000"):
        codec.roundtrip(torch.zeros(1, 1, 24000), SR, point, item_ids=["clip#2"])
    whole = PrecomputedFolders(folder=str(tmp_path / "seg"))
    with pytest.raises(ConfigError, match="is segment 1 of its clip.*segmented: true"):
        whole.roundtrip(torch.zeros(1, 1, 24000), SR, point, item_ids=["clip#1"])
    with pytest.raises(AudioInputError, match="ratio 1.9750"):  # whole-file mode: the file is twice the item
        whole.roundtrip(torch.zeros(1, 1, 24000), SR, point, item_ids=["clip#0"])


def test_codec_errors_name_the_problem(conditions: Path) -> None:
    codec = PrecomputedFolders(folder=str(conditions))
    point = codec.point(condition="low")
    with pytest.raises(AudioInputError, match="no decoded file named 'ab'.*closest: "):
        codec.roundtrip(torch.zeros(1, 1, 24000), SR, point, item_ids=["ab#0"])
    with pytest.raises(ConfigError, match="needs one item id per item"):
        codec.roundtrip(torch.zeros(2, 1, 24000), SR, point)
    with pytest.raises(ConfigError, match="integer index"):
        codec.roundtrip(torch.zeros(1, 1, 24000), SR, point, item_ids=["a#x"])


def test_precomputed_folders_are_a_system_not_a_codec(conditions: Path) -> None:
    """No encode/decode overrides that raise: the folders are a System, each item's record a NoBitstream."""
    from codecbench.codecs.base import Codec, System

    assert issubclass(PrecomputedFolders, System) and not issubclass(PrecomputedFolders, Codec)
    assert not hasattr(PrecomputedFolders, "encode") and not hasattr(PrecomputedFolders, "decode")
    codec = PrecomputedFolders(folder=str(conditions))
    result = codec.roundtrip(torch.zeros(1, 1, 24000), SR, codec.point(condition="low"), item_ids=["a#0"])
    assert type(result.bitstreams[0]) is NoBitstream and result.bitstreams[0].rate_source == "declared"


def test_identity_follows_the_files(conditions: Path) -> None:
    before = PrecomputedFolders(folder=str(conditions)).identity()
    _write(conditions / "low" / "a.wav", np.zeros(24000, np.float32), SR)
    after = PrecomputedFolders(folder=str(conditions)).identity()
    assert before["files"] != after["files"] and before["name"] == "precomputed"


# ---------------------------------------------------------------------------------------------------------------
# real decoded folders
# ---------------------------------------------------------------------------------------------------------------


def test_spresso_demo_folders(shared_data: Path) -> None:
    demo = shared_data / "spresso-demo"
    if not demo.is_dir():
        pytest.skip("spresso-demo absent")
    audio_ae = read_pairs(demo / "src", demo / "audioAE")
    assert [(r.decoded_record.padded_samples, r.decoded_record.sample_format) for r in audio_ae.items] == [
        (2041, "FLOAT")] * 3
    with pytest.raises(AudioInputError, match="stableaudio/.*matches 48000/44100.*header rate \\(44100 Hz\\)"):
        read_pairs(demo / "src", demo / "stableaudio")
    fixed = read_pairs(demo / "src", demo / "stableaudio", decoded_sample_rate_hz=48000)
    assert {(r.decoded_record.read_sample_rate_hz, r.decoded_record.padded_samples) for r in fixed.items} == {
        (48000, 2041)}
    # read at 48 kHz, the decoded typewriter lines up with the reference: correlation far above the 44.1 kHz reading
    item = fixed.items[1]
    corr = np.corrcoef(item.reference[0], item.decoded[0])[0, 1]
    assert corr > 0.9
