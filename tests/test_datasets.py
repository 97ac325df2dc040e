"""Datasets: loading, validation errors naming file and problem, evaluation format, segmenting, padding."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf
from codecbench.bench.core.errors import AudioInputError, ConfigError
from codecbench.bench.datasets import (
    INPUT_COLUMNS,
    DatasetSpec,
    list_clips,
    load_clip,
    prepare_items,
    segment,
    skipped_files,
)


def tone(seconds: float, rate: int = 48_000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.tile(0.5 * np.sin(2 * np.pi * 440 * t), (channels, 1)).astype(np.float32)


def write(path, audio, rate=48_000, subtype="FLOAT"):
    sf.write(str(path), audio.T, rate, subtype=subtype)
    return path


@pytest.fixture
def bad_folder(tmp_path):
    """One good clip and one of each kind of bad input."""
    write(tmp_path / "good.wav", tone(5.0))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    (tmp_path / "empty.wav").write_bytes(b"")
    write(tmp_path / "silent.wav", np.zeros((1, 48_000 * 5), np.float32))
    nan = tone(5.0)
    nan[0, 1000:1010] = np.nan
    write(tmp_path / "nan.wav", nan)
    write(tmp_path / "short.wav", tone(2.0))
    write(tmp_path / "surround.wav", tone(5.0, channels=6))
    return tmp_path


EXPECTED = {
    "corrupt": r"corrupt.wav: unreadable or corrupt audio",
    "empty": r"empty.wav: empty file \(0 bytes\)",
    "silent": r"silent.wav: all-silent: peak .* dBFS \(below -90 dBFS\)",
    "nan": r"nan.wav: contains 10 NaN/Inf samples",
    "short": r"short.wav: too short: 2.00 s, segments are 5.00 s",
    "surround": r"surround.wav: unsupported channel layout: 6 channels \(supported: mono, stereo\)",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_file_gets_its_named_error(bad_folder, name):
    spec = DatasetSpec(path=str(bad_folder))
    with pytest.raises(AudioInputError, match=EXPECTED[name]):
        clip, _ = load_clip(bad_folder / f"{name}.wav", spec)
        segment(clip, bad_folder / f"{name}.wav", spec)


def test_prepare_items_keeps_good_clips_and_reports_each_failure(bad_folder):
    items, failures = prepare_items(DatasetSpec(path=str(bad_folder)))
    assert [i.item_id for i in items] == ["good#0"]
    reasons = {f.item_id.split("#")[0]: f.error for f in failures}
    assert sorted(reasons) == sorted(EXPECTED)
    for name, pattern in EXPECTED.items():
        assert re.search(pattern, reasons[name]), (name, reasons[name])


def test_evaluation_format_resample_downmix_and_padding(tmp_path):
    stereo = tone(4.8, rate=44_100, channels=2)  # 4 % short: padded
    write(tmp_path / "a.flac", stereo, rate=44_100, subtype="PCM_24")
    items, failures = prepare_items(DatasetSpec(path=str(tmp_path)))
    assert not failures
    (item,) = items
    assert item.audio.shape == (1, 240_000) and item.audio.dtype == np.float32
    assert item.processing["source_sample_rate_hz"] == 44_100
    assert item.processing["channel_policy"] == "downmix-mean-2to1"
    assert item.processing["resampler"].startswith("soxr")
    assert item.processing["padded_s"] == pytest.approx(0.2, abs=1e-3)
    assert np.all(item.audio[0, -9000:] == 0)


def test_long_clip_gives_segments_and_records_what_was_dropped(tmp_path):
    write(tmp_path / "long.wav", tone(12.5))
    items, _ = prepare_items(DatasetSpec(path=str(tmp_path), max_segments_per_clip=5))
    assert [i.item_id for i in items] == ["long#0", "long#1"]
    assert items[0].processing["dropped_s"] == pytest.approx(2.5)
    whole, _ = prepare_items(DatasetSpec(path=str(tmp_path), segment_s=None))
    assert whole[0].audio.shape[-1] == 600_000


def test_csv_manifest_and_missing_column(tmp_path):
    write(tmp_path / "x.wav", tone(5.0))
    (tmp_path / "m.csv").write_text("path,id\nx.wav,my-clip\n")
    assert list_clips(DatasetSpec(path=str(tmp_path / "m.csv")))[0][0] == "my-clip"
    (tmp_path / "bad.csv").write_text("file\nx.wav\n")
    with pytest.raises(ConfigError, match="needs a 'path' column"):
        list_clips(DatasetSpec(path=str(tmp_path / "bad.csv")))


def test_content_hash_identifies_content_not_name(tmp_path):
    write(tmp_path / "a.wav", tone(5.0))
    write(tmp_path / "b.wav", tone(5.0))
    items, _ = prepare_items(DatasetSpec(path=str(tmp_path)))
    assert items[0].clip_hash == items[1].clip_hash


def test_input_record_columns_for_a_resampled_padded_stereo_clip(tmp_path):
    write(tmp_path / "a.flac", tone(4.9, rate=44_100, channels=2), rate=44_100, subtype="PCM_24")
    (item,), _ = prepare_items(DatasetSpec(path=str(tmp_path)))
    columns = item.input_record.columns()
    assert set(columns) == set(INPUT_COLUMNS)
    assert columns["input_sample_rate_hz"] == 44_100 and columns["input_resampler"].startswith("soxr")
    assert columns["input_channels"] == 2 and columns["input_downmix"] == "downmix-mean-2to1"
    assert columns["input_padded_s"] == pytest.approx(0.1, abs=1e-3) and columns["input_dropped_s"] == 0.0
    assert not columns["input_truncation_suspected"] and columns["input_header_frames"] == -1  # FLAC: no check
    assert "zero-padded by 0.100 s" in columns["input_note"]


def test_dropped_seconds_are_counted_once_per_clip(tmp_path):
    write(tmp_path / "long.wav", tone(8.0))
    (item,), _ = prepare_items(DatasetSpec(path=str(tmp_path)))
    assert item.input_record.dropped_s == pytest.approx(3.0) and "3.000 s after the last segment" in item.input_record.note
    write(tmp_path / "long.wav", tone(12.5))
    items, _ = prepare_items(DatasetSpec(path=str(tmp_path), max_segments_per_clip=5))
    assert [i.input_record.dropped_s for i in items] == [0.0, pytest.approx(2.5)]


def test_hidden_files_are_skipped_with_a_note(tmp_path):
    write(tmp_path / "a.wav", tone(5.0))
    write(tmp_path / "._a.wav", tone(5.0))
    (tmp_path / ".hidden").mkdir()
    write(tmp_path / ".hidden" / "b.wav", tone(5.0))
    items, failures = prepare_items(DatasetSpec(path=str(tmp_path)))
    assert [i.item_id for i in items] == ["a#0"] and not failures
    notes = skipped_files(DatasetSpec(path=str(tmp_path)))
    assert notes == [f"{tmp_path / '._a.wav'}: skipped (hidden file)", f"{tmp_path / '.hidden' / 'b.wav'}: skipped (hidden file)"]


def _truncate(path, fraction: float) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(int(size * fraction))


def test_truncated_wav_is_reported(tmp_path):
    write(tmp_path / "cut.wav", tone(5.1), subtype="PCM_16")
    _truncate(tmp_path / "cut.wav", 0.97)  # 4.95 s left: still within the padding tolerance, so it is used
    (item,), failures = prepare_items(DatasetSpec(path=str(tmp_path)))
    record = item.input_record
    assert not failures and record.truncation_suspected
    assert record.header_frames == int(5.1 * 48_000) and record.read_frames < record.header_frames
    assert record.note.startswith(f"truncated file: header promises {int(5.1 * 48_000)} frames")
    write(tmp_path / "cut.wav", tone(5.0), subtype="PCM_16")
    _truncate(tmp_path / "cut.wav", 0.5)
    _, (failure,) = prepare_items(DatasetSpec(path=str(tmp_path)))
    assert "too short" in failure.error and "the file looks truncated: its header promises 5.00 s" in failure.error


def test_an_intact_wav_is_not_suspected(tmp_path):
    write(tmp_path / "ok.wav", tone(5.0), subtype="PCM_16")
    (item,), _ = prepare_items(DatasetSpec(path=str(tmp_path)))
    assert not item.input_record.truncation_suspected and item.input_record.header_frames == 240_000
