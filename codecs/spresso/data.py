"""Training clips for S-PRESSO: random fixed-length crops of 48 kHz mono audio, reproducible per step.

A :class:`ClipSource` is a folder of audio files (any rate/channels: resampled to 48 kHz, mean-downmixed) or a list
of in-memory arrays. Optional text embeddings sit beside a file as ``<stem>.text.npy`` [L, E] (e.g. CLAP text
embeddings computed elsewhere); files without one train with the null text.

Memory: a folder source holds only file names, lengths and rates; every crop is read from its file when its batch
is made (one seek for 48 kHz files, e.g. those written by :func:`prepare_data`), and text embeddings are read with
their crop. With DataLoader workers at most ``num_workers x 2`` batches are in flight.

Batches depend only on (seed, step), so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from codecbench.bench.core import audio as audio_ops
from codecbench.bench.core.errors import AudioInputError, ConfigError


@dataclass(frozen=True)
class Batch:
    """``audio`` [B, T]; ``text`` [B, L, E] or None; ``has_text`` [B] bool."""

    audio: torch.Tensor
    text: torch.Tensor | None
    has_text: torch.Tensor


class ClipSource:
    """Audio clips to crop from: ``from_folder`` (files read on demand) or ``from_arrays`` (in memory)."""

    def __init__(self, items: list[tuple[str, int, int]], arrays: list[np.ndarray] | None, sample_rate_hz: int,
                 texts: list[Path | None]):
        if not items:
            raise ConfigError("S-PRESSO training data: no audio clips found")
        self.items, self.arrays, self.sample_rate_hz, self.texts = items, arrays, sample_rate_hz, texts

    @classmethod
    def from_folder(cls, folder: str | Path, sample_rate_hz: int = 48000) -> ClipSource:
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"{folder}: training data folder does not exist")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in audio_ops.AUDIO_SUFFIXES)
        if not paths:
            raise ConfigError(f"{folder}: no audio files ({', '.join(audio_ops.AUDIO_SUFFIXES)}) in the training folder")
        items, texts = [], []
        for path in paths:
            try:
                info = sf.info(str(path))
            except Exception as exc:
                raise AudioInputError(path, f"unreadable audio ({exc})") from exc
            items.append((str(path), int(info.frames), int(info.samplerate)))
            side = path.with_name(path.stem + ".text.npy")
            texts.append(side if side.is_file() else None)  # read with its crops, never all at once
        return cls(items, None, sample_rate_hz, texts)

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], sample_rate_hz: int = 48000) -> ClipSource:
        """In-memory mono clips [T] at ``sample_rate_hz``."""
        arrays = [np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays]
        items = [(f"array{i}", len(a), sample_rate_hz) for i, a in enumerate(arrays)]
        return cls(items, arrays, sample_rate_hz, [None] * len(arrays))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def hours(self) -> float:
        return sum(frames / rate for _, frames, rate in self.items) / 3600

    def text_shape(self) -> tuple[int, ...] | None:
        """[L, E] of the text embeddings (from the first file's header), or None when no clip has one."""
        if not hasattr(self, "_text_shape"):
            first = next((t for t in self.texts if t is not None), None)
            self._text_shape = None if first is None else tuple(np.load(first, mmap_mode="r").shape)
        return self._text_shape

    def text(self, index: int, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """Clip ``index``'s text embedding [L, E] read from its file (None without one); ``shape`` must match."""
        side = self.texts[index]
        if side is None:
            return None
        value = np.load(side).astype(np.float32)
        if shape is not None and value.shape != shape:
            raise ConfigError(f"{side}: text embedding of shape {value.shape}, other clips have {shape}")
        return value

    def _read(self, index: int, start_s: float, length: int) -> np.ndarray:
        name, frames, rate = self.items[index]
        if self.arrays is not None:
            clip = self.arrays[index]
            start = int(start_s * rate)
            return clip[start : start + length]
        if rate == self.sample_rate_hz:
            data, _ = sf.read(name, start=int(start_s * rate), frames=length, dtype="float32", always_2d=True)
            return data.mean(axis=1)
        # another rate: read only the crop's span (+ a margin for the resampling filter) at the native rate,
        # starting on a sample whose 48 kHz position is an integer, so the crop equals whole-file resampling
        target = int(start_s * self.sample_rate_hz)
        period = rate // math.gcd(rate, self.sample_rate_hz)  # native samples per whole number of output samples
        margin = int(0.02 * rate) + 128
        begin = max(0, (int(target * rate / self.sample_rate_hz) - margin) // period * period)
        native = int(math.ceil(length * rate / self.sample_rate_hz)) + 2 * margin + period
        try:
            data, _ = sf.read(name, start=begin, frames=native, dtype="float32", always_2d=True)
            mono = torch.from_numpy(data.mean(axis=1))
        except Exception:  # noqa: BLE001 - formats soundfile cannot seek: decode the whole file (slow path)
            whole, _ = audio_ops.read(name)
            mono = torch.from_numpy(whole.mean(axis=0)[begin : begin + native])
        out = audio_ops.resample(mono, rate, self.sample_rate_hz).numpy()
        skip = target - begin * self.sample_rate_hz // rate
        return out[skip : skip + length]

    def batch(self, batch_size: int, segment_samples: int, seed: int, step: int, rows: slice | None = None) -> Batch:
        """A batch of random crops (zero-padded when a clip is shorter), determined by (seed, step).

        ``rows``: only these rows of that batch are read and returned (one rank's share; the random draws of
        the other rows are still made, so every rank sees its part of the same global batch)."""
        rng = np.random.default_rng([seed, step])
        wanted = range(batch_size)[rows] if rows is not None else range(batch_size)
        picks = []
        for _ in range(batch_size):
            index = int(rng.integers(len(self.items)))
            _, frames, rate = self.items[index]
            span_s = max(0.0, frames / rate - segment_samples / self.sample_rate_hz)
            picks.append((index, float(rng.uniform(0.0, span_s)) if span_s > 0 else 0.0))
        picks = [picks[b] for b in wanted]
        batch_size = len(picks)
        audio = np.zeros((batch_size, segment_samples), dtype=np.float32)
        text_shape = self.text_shape()
        text = np.zeros((batch_size, *text_shape), dtype=np.float32) if text_shape else None
        has_text = np.zeros(batch_size, dtype=bool)
        for b, (index, start_s) in enumerate(picks):
            crop = self._read(index, start_s, segment_samples)
            audio[b, : len(crop)] = crop
            if text is not None and self.texts[index] is not None:
                text[b], has_text[b] = self.text(index, text_shape), True
        return Batch(
            torch.from_numpy(audio), torch.from_numpy(text) if text is not None else None, torch.from_numpy(has_text)
        )


class BatchStream(torch.utils.data.IterableDataset):
    """The batches of steps ``start .. total - 1`` in order, read by DataLoader workers ahead of the loop.

    Worker w of n reads steps start + w, start + w + n, ...; the DataLoader hands them out round-robin, so the
    loop sees every step once, in order, as ``(step, Batch)``; the batches equal ``source.batch(...)``.
    """

    def __init__(self, source: ClipSource, batch_size: int, segment_samples: int, seed: int, start: int, total: int,
                 rows: slice | None = None):
        super().__init__()
        self.source, self.batch_size, self.segment, self.seed = source, batch_size, segment_samples, seed
        self.start, self.total, self.rows = start, total, rows

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        offset, stride = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in range(self.start + offset, self.total, stride):
            yield step, self.source.batch(self.batch_size, self.segment, self.seed, step, self.rows)


def stream_batches(source: ClipSource, batch_size: int, segment_samples: int, seed: int, start: int, total: int,
                   rows: slice | None = None, num_workers: int = 0):
    """Iterator of ``(step, Batch)``: in this process (``num_workers`` 0) or from worker processes."""
    stream = BatchStream(source, batch_size, segment_samples, seed, start, total, rows)
    if num_workers == 0:
        return iter(stream)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers, prefetch_factor=2,
                                         persistent_workers=False)
    return iter(loader)


def prepare_data(source: str | Path, out_dir: str | Path, sample_rate_hz: int = 48000,
                 progress: bool = False) -> dict:
    """Write every audio file under ``source`` as mono float32 WAV at ``sample_rate_hz`` under ``out_dir`` (same
    relative paths, ``.wav``), with its ``.text.npy`` side file, and ``manifest.json`` (name, frames, source
    rate). One file at a time: the corpus is never held in memory. Files already written are skipped (rerun to
    continue). Returns the manifest."""
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_dir():
        raise ConfigError(f"{source}: S-PRESSO data folder does not exist")
    paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in audio_ops.AUDIO_SUFFIXES)
    if not paths:
        raise ConfigError(f"{source}: no audio files ({', '.join(audio_ops.AUDIO_SUFFIXES)}) in the data folder")
    names = [p.relative_to(source).with_suffix(".wav") for p in paths]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{source}: two files would both be written as {dup} (same name, other suffix)")
    entries = []
    for path, name in zip(paths, names):
        target = out_dir / name
        if not target.is_file():
            try:
                data, rate = audio_ops.read(path)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is named the same way
                raise AudioInputError(path, f"unreadable audio ({exc})") from exc
            mono = audio_ops.resample(torch.from_numpy(data.mean(axis=0)), rate, sample_rate_hz).numpy()
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp.wav")
            sf.write(str(tmp), mono.astype(np.float32), sample_rate_hz, subtype="FLOAT")
            tmp.replace(target)
            side = path.with_name(path.stem + ".text.npy")
            if side.is_file():
                (target.with_name(target.stem + ".text.npy")).write_bytes(side.read_bytes())
            source_rate = rate
        else:
            source_rate = int(sf.info(str(path)).samplerate)
        entries.append({"name": str(name), "frames": int(sf.info(str(target)).frames), "source": str(path),
                        "source_rate_hz": source_rate})
        if progress:
            print(f"{len(entries)}/{len(paths)} {name}")
    manifest = {"sample_rate_hz": sample_rate_hz, "files": entries,
                "hours": sum(e["frames"] for e in entries) / sample_rate_hz / 3600}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def demo_like_clips(num_clips: int, duration_s: float, seed: int, sample_rate_hz: int = 48000) -> list[np.ndarray]:
    """Seeded synthetic sound effects [T]: decaying noise bursts, chirps and a ringing tone, peak 0.5."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate_hz))
    t = np.arange(n) / sample_rate_hz
    clips = []
    for _ in range(num_clips):
        x = np.zeros(n)
        for _ in range(int(rng.integers(2, 6))):  # clicks / bursts of filtered noise
            start = int(rng.integers(0, n))
            length = int(rng.integers(sample_rate_hz // 100, sample_rate_hz // 5))
            burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 5))
            burst = np.convolve(burst, np.ones(int(rng.integers(1, 8))), mode="same")
            x[start : start + length] += burst[: n - start]
        f0, f1 = rng.uniform(100, 2000), rng.uniform(100, 8000)
        x += 0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration_s))) * np.exp(-t * rng.uniform(0.2, 2))
        x += 0.2 * np.sin(2 * np.pi * rng.uniform(200, 4000) * t) * np.exp(-t * rng.uniform(1, 5))
        clips.append((0.5 * x / np.abs(x).max()).astype(np.float32))
    return clips
