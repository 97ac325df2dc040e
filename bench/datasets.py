"""Datasets: a folder of audio files or a CSV manifest -> validated items in the evaluation format.

Each clip is loaded, validated, converted (downmix policy, then resampling with :data:`bench.core.audio.RESAMPLER`)
and cut into fixed-length segments. A clip at most ``pad_tolerance`` (5 % by default) shorter than a segment is
zero-padded and that is recorded; longer clips give up to ``max_segments_per_clip`` full segments, and the seconds
beyond them are reported as dropped. Hidden files (a name or folder starting with ".") are skipped, each with a
note (:func:`skipped_files`). A WAV whose header promises more frames than the file holds is reported as
truncated.

What was done to each clip is one :class:`InputRecord` per item; :meth:`InputRecord.columns` gives its columns
(``input_*``, units in the names) for the results table and the unit records.

Bad input raises :class:`~codecbench.bench.core.errors.AudioInputError` naming the file and the problem; a run turns
each into a failed item and goes on (:func:`prepare_items` returns items and failures separately).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from codecbench.bench.core import audio as audio_ops
from codecbench.bench.core.errors import AudioInputError, ConfigError

SILENCE_PEAK = 10 ** (-90 / 20)  # all-silent: no sample above -90 dBFS


@dataclass(frozen=True)
class DatasetSpec:
    """Where the clips are and how they become evaluation items (config section ``dataset``)."""

    path: str
    sample_rate_hz: int = 48_000
    channels: int = 1
    segment_s: float | None = 5.0
    max_segments_per_clip: int = 1
    pad_tolerance: float = 0.05
    max_clips: int | None = None


@dataclass(frozen=True)
class InputRecord:
    """What was done to one input file to make an item (its own ``input_*`` columns in every result row).

    ``input_truncation_suspected``: the file's header promises more frames than it holds (WAV data chunk larger
    than the file; ``input_header_frames`` vs ``input_read_frames``), so the audio ends early.
    """

    sample_rate_hz: int  # the file's rate
    resampler: str  # "none" when the file was at the evaluation rate
    channels: int  # channels in the file
    downmix: str  # channel policy ("none", "mean-2to1", ...)
    padded_s: float = 0.0  # zeros appended to reach the segment length
    dropped_s: float = 0.0  # seconds of the clip beyond the last segment, not evaluated
    truncation_suspected: bool = False
    header_frames: int = -1  # frames the header declares (-1: the format does not declare them separately)
    read_frames: int = -1
    note: str = ""

    def columns(self) -> dict[str, Any]:
        """The record as result-table columns, e.g. ``{"input_sample_rate_hz": 44100, "input_padded_s": 0.1}``."""
        return {
            "input_sample_rate_hz": int(self.sample_rate_hz),
            "input_resampler": self.resampler,
            "input_channels": int(self.channels),
            "input_downmix": self.downmix,
            "input_padded_s": float(self.padded_s),
            "input_dropped_s": float(self.dropped_s),
            "input_truncation_suspected": bool(self.truncation_suspected),
            "input_header_frames": int(self.header_frames),
            "input_read_frames": int(self.read_frames),
            "input_note": self.note,
        }


INPUT_COLUMNS = tuple(InputRecord(0, "", 0, "").columns())


def declared_frames(path: Path) -> int | None:
    """Frames a WAV header declares (its data chunk size / block size); None for other formats or odd headers."""
    import struct

    if path.suffix.lower() != ".wav":
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block = None
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"fmt ":
                    fmt = handle.read(size)
                    block = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                    if size % 2:
                        handle.read(1)
                elif name == b"data":
                    return size // block if block else None
                else:
                    handle.seek(size + (size % 2), 1)
    except OSError:
        return None


def truncation_check(path: Path, read_frames: int) -> tuple[bool, int]:
    """(truncation suspected, header frames or -1) for a file of which ``read_frames`` frames were read."""
    header = declared_frames(path)
    if header is None:
        return False, -1
    return header > read_frames, int(header)


@dataclass(frozen=True)
class Item:
    """One evaluation item: a segment of a clip in the evaluation format ([C, T] float32)."""

    item_id: str
    clip_path: str
    segment: int
    audio: np.ndarray = field(repr=False)
    sample_rate_hz: int
    clip_hash: str
    processing: dict[str, Any]
    input_record: InputRecord | None = None

    @property
    def duration_s(self) -> float:
        return self.audio.shape[-1] / self.sample_rate_hz


@dataclass(frozen=True)
class ItemFailure:
    """A clip that could not become items, with the reason (the AudioInputError message)."""

    item_id: str
    clip_path: str
    error: str


def list_clips(spec: DatasetSpec) -> list[tuple[str, Path]]:
    """(clip id, path) pairs of a folder (sorted, recursive) or a CSV manifest (columns ``path`` [, ``id``])."""
    root = Path(spec.path).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in audio_ops.AUDIO_SUFFIXES and p.is_file()
                       and not _hidden(p, root))
        clips = [(str(p.relative_to(root).with_suffix("")), p) for p in files]
    elif root.is_file() and root.suffix.lower() == ".csv":
        with open(root, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and "path" not in rows[0]:
            raise ConfigError(f"dataset manifest {root}: needs a 'path' column (has {list(rows[0])})")
        clips = []
        for row in rows:
            path = Path(row["path"]).expanduser()
            path = path if path.is_absolute() else root.parent / path
            clips.append((row.get("id") or path.stem, path))
    else:
        raise ConfigError(f"dataset.path: {root} is neither a folder nor a .csv manifest")
    if not clips:
        raise ConfigError(f"dataset.path: no audio files ({', '.join(audio_ops.AUDIO_SUFFIXES)}) in {root}")
    ids = [clip_id for clip_id, _ in clips]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"dataset.path: clip id '{dup}' appears twice in {root}")
    return clips[: spec.max_clips] if spec.max_clips else clips


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def skipped_files(spec: DatasetSpec) -> list[str]:
    """Notes for the hidden audio files of a dataset folder, which are not items (e.g. macOS ``._x.wav``)."""
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        return []
    return [f"{p}: skipped (hidden file)" for p in sorted(root.rglob("*"))
            if p.suffix.lower() in audio_ops.AUDIO_SUFFIXES and p.is_file() and _hidden(p, root)]


def load_clip(path: Path, spec: DatasetSpec) -> tuple[np.ndarray, dict[str, Any]]:
    """Read, validate and convert one file to [C, T] at the evaluation rate; raises AudioInputError."""
    data, rate_hz = audio_ops.read(path)
    channels, num_samples = data.shape
    if num_samples == 0:
        raise AudioInputError(path, "empty: the file holds no samples")
    if channels not in (1, 2):
        raise AudioInputError(path, f"unsupported channel layout: {channels} channels (supported: mono, stereo)")
    if not np.all(np.isfinite(data)):
        bad = int(np.sum(~np.isfinite(data)))
        raise AudioInputError(path, f"contains {bad} NaN/Inf samples")
    peak = float(np.max(np.abs(data)))
    if peak < SILENCE_PEAK:
        raise AudioInputError(path, f"all-silent: peak {20 * np.log10(peak + 1e-30):.1f} dBFS (below -90 dBFS)")
    x, channel_policy = audio_ops.match_channels(torch.from_numpy(data)[None], spec.channels)
    x = audio_ops.resample(x, rate_hz, spec.sample_rate_hz)[0].numpy()
    truncated, header_frames = truncation_check(Path(path), num_samples)
    processing = {
        "source_sample_rate_hz": rate_hz,
        "source_channels": channels,
        "channel_policy": channel_policy,
        "resampler": audio_ops.RESAMPLER if rate_hz != spec.sample_rate_hz else "none",
        "read_frames": num_samples,
        "header_frames": header_frames,
        "truncation_suspected": truncated,
    }
    return np.ascontiguousarray(x, dtype=np.float32), processing


def segment(clip: np.ndarray, path: Path, spec: DatasetSpec) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Cut [C, T] into segments of ``segment_s`` (None: the whole clip); pad a slightly short clip."""
    if spec.segment_s is None:
        return [(clip, {"padded_s": 0.0})]
    seg = int(round(spec.segment_s * spec.sample_rate_hz))
    have = clip.shape[-1]
    if have < seg:
        if have < (1.0 - spec.pad_tolerance) * seg:
            header = declared_frames(Path(path))
            damaged = ""
            if header is not None:
                info_rate = _header_rate(path)
                if info_rate and header > int(round(have * info_rate / spec.sample_rate_hz)) + 1:
                    damaged = (f"; the file looks truncated: its header promises {header / info_rate:.2f} s "
                               f"({header} frames)")
            raise AudioInputError(
                path,
                f"too short: {have / spec.sample_rate_hz:.2f} s, segments are {spec.segment_s:.2f} s "
                f"(clips at most {spec.pad_tolerance:.0%} shorter are zero-padded){damaged}",
            )
        padded = np.pad(clip, ((0, 0), (0, seg - have)))
        return [(padded, {"padded_s": (seg - have) / spec.sample_rate_hz})]
    count = min(have // seg, spec.max_segments_per_clip)
    return [(clip[:, i * seg : (i + 1) * seg], {"padded_s": 0.0}) for i in range(count)]


def _header_rate(path: Path) -> int | None:
    """The header sample rate of ``path`` (soundfile), None when unreadable."""
    import soundfile

    try:
        return int(soundfile.info(str(path)).samplerate)
    except Exception:
        return None


def input_record(processing: dict[str, Any], segment_info: dict[str, Any], last: bool = True) -> InputRecord:
    """The :class:`InputRecord` of one item from :func:`load_clip`'s and :func:`segment`'s records; the clip's
    dropped seconds are counted on its ``last`` segment only (so they add up per clip)."""
    truncated = bool(processing.get("truncation_suspected", False))
    dropped_s = float(processing.get("dropped_s", 0.0)) if last else 0.0
    notes = []
    if truncated:
        notes.append(f"truncated file: header promises {processing['header_frames']} frames, "
                     f"{processing['read_frames']} read")
    if dropped_s > 0:
        notes.append(f"{dropped_s:.3f} s after the last segment not evaluated (max_segments_per_clip)")
    if segment_info.get("padded_s", 0.0) > 0:
        notes.append(f"zero-padded by {segment_info['padded_s']:.3f} s to the segment length")
    note = "; ".join(notes)
    return InputRecord(
        sample_rate_hz=int(processing["source_sample_rate_hz"]), resampler=str(processing["resampler"]),
        channels=int(processing["source_channels"]), downmix=str(processing["channel_policy"]),
        padded_s=float(segment_info.get("padded_s", 0.0)), dropped_s=dropped_s,
        truncation_suspected=truncated, header_frames=int(processing.get("header_frames", -1)),
        read_frames=int(processing.get("read_frames", -1)), note=note,
    )


def reader_input_record(record: Any) -> InputRecord:
    """The :class:`InputRecord` of a file read by the precomputed-output reader (its ``AlignmentRecord``)."""
    truncated, header_frames = truncation_check(Path(record.path), int(record.file_samples))
    rate = int(record.eval_sample_rate_hz)
    note = (f"truncated file: header promises {header_frames} frames, {record.file_samples} read" if truncated else "")
    return InputRecord(
        sample_rate_hz=int(record.read_sample_rate_hz), resampler=str(record.resampler),
        channels=int(record.file_channels), downmix=str(record.channel_policy),
        padded_s=record.padded_samples / rate, dropped_s=record.trimmed_samples / rate,
        truncation_suspected=truncated, header_frames=header_frames, read_frames=int(record.file_samples), note=note,
    )


def prepare_items(spec: DatasetSpec) -> tuple[list[Item], list[ItemFailure]]:
    """Every item of the dataset, and every clip that failed with its reason."""
    items: list[Item] = []
    failures: list[ItemFailure] = []
    for clip_id, path in list_clips(spec):
        try:
            clip, processing = load_clip(path, spec)
            pieces = segment(clip, path, spec)
            if spec.segment_s is not None and clip.shape[-1] > spec.segment_s * spec.sample_rate_hz * len(pieces):
                processing["dropped_s"] = clip.shape[-1] / spec.sample_rate_hz - spec.segment_s * len(pieces)
        except AudioInputError as error:
            failures.append(ItemFailure(f"{clip_id}#0", str(path), str(error)))
            continue
        for index, (piece, seg_info) in enumerate(pieces):
            items.append(
                Item(
                    item_id=f"{clip_id}#{index}",
                    clip_path=str(path),
                    segment=index,
                    audio=piece,
                    sample_rate_hz=spec.sample_rate_hz,
                    clip_hash=audio_ops.content_hash(piece, spec.sample_rate_hz),
                    processing={**processing, **seg_info},
                    input_record=input_record(processing, seg_info, last=index == len(pieces) - 1),
                )
            )
    return items, failures
