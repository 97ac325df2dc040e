"""Training clips for S-PRESSO: random fixed-length crops of 48 kHz mono audio, reproducible per step.

A :class:`ClipSource` is a folder of audio files (any rate/channels: resampled to 48 kHz, mean-downmixed) or a list
of in-memory arrays. Optional text embeddings sit beside a file as ``<stem>.text.npy`` [L, E] (e.g. CLAP text
embeddings computed elsewhere); files without one train with the null text.

Batches depend only on (seed, step), so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

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
                 texts: list[np.ndarray | None]):
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
            texts.append(np.load(side).astype(np.float32) if side.is_file() else None)
        return cls(items, None, sample_rate_hz, texts)

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], sample_rate_hz: int = 48000) -> ClipSource:
        """In-memory mono clips [T] at ``sample_rate_hz``."""
        arrays = [np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays]
        items = [(f"array{i}", len(a), sample_rate_hz) for i, a in enumerate(arrays)]
        return cls(items, arrays, sample_rate_hz, [None] * len(arrays))

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, index: int, start_s: float, length: int) -> np.ndarray:
        name, frames, rate = self.items[index]
        if self.arrays is not None:
            clip = self.arrays[index]
            start = int(start_s * rate)
            return clip[start : start + length]
        if rate == self.sample_rate_hz:
            data, _ = sf.read(name, start=int(start_s * rate), frames=length, dtype="float32", always_2d=True)
            return data.mean(axis=1)
        data, rate = audio_ops.read(name)
        mono = torch.from_numpy(data.mean(axis=0))
        out = audio_ops.resample(mono, rate, self.sample_rate_hz).numpy()
        start = int(start_s * self.sample_rate_hz)
        return out[start : start + length]

    def batch(self, batch_size: int, segment_samples: int, seed: int, step: int) -> Batch:
        """A batch of random crops (zero-padded when a clip is shorter), determined by (seed, step)."""
        rng = np.random.default_rng([seed, step])
        audio = np.zeros((batch_size, segment_samples), dtype=np.float32)
        text_shape = next((t.shape for t in self.texts if t is not None), None)
        text = np.zeros((batch_size, *text_shape), dtype=np.float32) if text_shape else None
        has_text = np.zeros(batch_size, dtype=bool)
        for b in range(batch_size):
            index = int(rng.integers(len(self.items)))
            _, frames, rate = self.items[index]
            duration_s = frames / rate
            span_s = max(0.0, duration_s - segment_samples / self.sample_rate_hz)
            start_s = float(rng.uniform(0.0, span_s)) if span_s > 0 else 0.0
            crop = self._read(index, start_s, segment_samples)
            audio[b, : len(crop)] = crop
            if text is not None and self.texts[index] is not None:
                text[b], has_text[b] = self.texts[index], True
        return Batch(
            torch.from_numpy(audio), torch.from_numpy(text) if text is not None else None, torch.from_numpy(has_text)
        )


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
