"""Datasets: a folder of audio files or a CSV manifest -> validated items in the evaluation format.

Each clip is loaded, validated, converted (downmix policy, then resampling with :data:`bench.core.audio.RESAMPLER`)
and cut into fixed-length segments. A clip at most ``pad_tolerance`` (5 % by default) shorter than a segment is
zero-padded and that is recorded; longer clips give up to ``max_segments_per_clip`` full segments.

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
class Item:
    """One evaluation item: a segment of a clip in the evaluation format ([C, T] float32)."""

    item_id: str
    clip_path: str
    segment: int
    audio: np.ndarray = field(repr=False)
    sample_rate_hz: int
    clip_hash: str
    processing: dict[str, Any]

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
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in audio_ops.AUDIO_SUFFIXES and p.is_file())
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
    processing = {
        "source_sample_rate_hz": rate_hz,
        "source_channels": channels,
        "channel_policy": channel_policy,
        "resampler": audio_ops.RESAMPLER if rate_hz != spec.sample_rate_hz else "none",
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
            raise AudioInputError(
                path,
                f"too short: {have / spec.sample_rate_hz:.2f} s, segments are {spec.segment_s:.2f} s "
                f"(clips at most {spec.pad_tolerance:.0%} shorter are zero-padded)",
            )
        padded = np.pad(clip, ((0, 0), (0, seg - have)))
        return [(padded, {"padded_s": (seg - have) / spec.sample_rate_hz})]
    count = min(have // seg, spec.max_segments_per_clip)
    return [(clip[:, i * seg : (i + 1) * seg], {"padded_s": 0.0}) for i in range(count)]


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
                )
            )
    return items, failures
