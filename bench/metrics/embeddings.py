"""Per-frame audio embeddings for distribution metrics (FAD, FAD-inf, KAD), cached by audio content.

An :class:`Embedder` turns mono audio at its own rate into frame embeddings ``[F, D]`` (F frames, D dims), as
fadtk does, so that N counts frames. :class:`EmbeddingCache` wraps an embedder with the two caches every embedding
metric uses:

- on disk (a :class:`~codecbench.bench.core.cache.Cache`, namespace ``embeddings``), keyed by sha256 over the input
  audio's content hash (:func:`~codecbench.bench.core.audio.content_hash`, at the rate it was given), the embedder's
  identity (name, version, weights digest, windowing) and the resampler;
- in memory for the process, under the same key, so the same audio (the references, shared by every operating
  point) is never embedded twice.

Uncached items are embedded in batches (``batch_size``). The weights-free :class:`LogMelEmbedder` lives here;
the model embedders (LAION-CLAP, VGGish, PANN, EnCodec) live in :mod:`~codecbench.bench.metrics.model_embedders`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from codecbench.bench.core import audio
from codecbench.bench.core.cache import Cache, make_key
from codecbench.bench.core.errors import MetricFailure

NAMESPACE = "embeddings"


class Embedder(ABC):
    """Maps mono audio [T] at ``sample_rate_hz`` to frame embeddings [F, D] (float32).

    Class attributes: ``name``, ``version`` (bump when outputs change), ``sample_rate_hz`` (working rate), ``dims``.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    sample_rate_hz: ClassVar[int]
    dims: ClassVar[int]

    def windowing(self) -> dict[str, Any]:
        """How audio is cut into frames/windows (part of every cache key)."""
        return {}

    def weights_status(self) -> str:
        """``not needed``, ``pretrained: <file> sha256:<digest>`` or ``random-init (...)``: part of the cache key."""
        return "not needed"

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sample_rate_hz": self.sample_rate_hz,
            "dims": self.dims,
            "windowing": self.windowing(),
            "weights": self.weights_status(),
        }

    def min_samples(self) -> int:
        """Shortest input (samples at the working rate) that yields at least one frame."""
        return 1

    @abstractmethod
    def embed_batch(self, batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Embed mono signals ``batch`` (each [T_i], float32, at ``sample_rate_hz``) -> list of [F_i, D]."""


class EmbeddingCache:
    """Embeds items once: on-disk cache (may be None) + in-process memo + batched model calls."""

    def __init__(self, embedder: Embedder, cache: Cache | None = None, batch_size: int = 8):
        self.embedder = embedder
        self.cache = cache
        self.batch_size = int(batch_size)
        self._memo: dict[str, np.ndarray] = {}
        self.computed = 0  # items embedded by the model in this process (for tests and the speed benchmark)

    def key(self, item: np.ndarray, sample_rate_hz: int) -> str:
        return make_key(
            audio=audio.content_hash(item, sample_rate_hz),
            embedder=self.embedder.identity(),
            resampler=audio.RESAMPLER,
            downmix="mean",
        )

    def _prepare(self, item: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        """[C, T] at ``sample_rate_hz`` -> mono [T'] at the embedder's rate (channel mean, soxr VHQ)."""
        x = np.asarray(item, dtype=np.float32)
        if x.ndim == 2:
            x = x.mean(axis=0)
        if x.ndim != 1:
            raise MetricFailure(f"{self.embedder.name}: expected [C, T] audio, got shape {np.shape(item)}")
        if not np.all(np.isfinite(x)):
            raise MetricFailure(f"{self.embedder.name}: audio contains NaN or Inf samples")
        y = audio.resample(torch.from_numpy(np.ascontiguousarray(x)), sample_rate_hz, self.embedder.sample_rate_hz)
        return y.numpy()

    def embed(self, items: Sequence[np.ndarray], sample_rate_hz: int) -> list[np.ndarray]:
        """Frame embeddings [F_i, D] of each item [C, T_i]; computes only what neither cache holds."""
        keys = [self.key(item, sample_rate_hz) for item in items]
        out: dict[str, np.ndarray] = {}
        todo: dict[str, np.ndarray] = {}
        for key, item in zip(keys, items):
            if key in out or key in todo:
                continue
            if key in self._memo:
                out[key] = self._memo[key]
                continue
            cached = self.cache.get_array(NAMESPACE, key) if self.cache is not None else None
            if cached is not None:
                out[key] = self._memo[key] = cached
                continue
            prepared = self._prepare(item, sample_rate_hz)
            if prepared.shape[0] < self.embedder.min_samples():
                raise MetricFailure(
                    f"{self.embedder.name}: item too short ({prepared.shape[0]} samples at "
                    f"{self.embedder.sample_rate_hz} Hz); needs at least {self.embedder.min_samples()}"
                )
            todo[key] = prepared
        pending = list(todo.items())
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            embedded = self.embedder.embed_batch([signal for _, signal in chunk])
            self.computed += len(chunk)
            for (key, _), emb in zip(chunk, embedded):
                emb = np.asarray(emb, dtype=np.float32)
                if emb.ndim != 2 or emb.shape[1] != self.embedder.dims:
                    raise MetricFailure(
                        f"{self.embedder.name}: embedding shape {emb.shape}, expected [F, {self.embedder.dims}]"
                    )
                if not np.all(np.isfinite(emb)):
                    raise MetricFailure(f"{self.embedder.name}: non-finite embedding values")
                if self.cache is not None:
                    self.cache.put_array(NAMESPACE, key, emb)
                out[key] = self._memo[key] = emb
        return [out[key] for key in keys]


class LogMelEmbedder(Embedder):
    """Weights-free frame embedding: log-mel power spectrum frames (dB), one vector per STFT frame.

    At 48 kHz: periodic Hann window 2048 samples (42.7 ms), hop 1024 (21.3 ms; 46.875 frames/s), no centring (only
    whole frames inside the audio), 64 Slaney mel bands 0-24 kHz, ``10 log10(max(mel power, 1e-10))``. D = 64.
    """

    name = "logmel64"
    version = "1"
    sample_rate_hz = 48_000
    dims = 64
    n_fft = 2048
    hop = 1024
    floor = 1e-10

    def windowing(self) -> dict[str, Any]:
        return {"n_fft": self.n_fft, "hop": self.hop, "window": "hann-periodic", "center": False, "n_mels": self.dims}

    def min_samples(self) -> int:
        return self.n_fft

    def embed_batch(self, batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        from codecbench.bench.metrics.mel_distance import mel_filters

        basis = mel_filters(self.sample_rate_hz, self.n_fft, self.dims)
        window = torch.hann_window(self.n_fft, periodic=True)
        out = []
        with torch.inference_mode():
            for signal in batch:
                x = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))
                spec = torch.stft(
                    x, n_fft=self.n_fft, hop_length=self.hop, window=window, center=False, return_complex=True
                )
                power = spec.real**2 + spec.imag**2  # [n_fft // 2 + 1, F]
                mel = basis @ power  # [D, F]
                out.append((10.0 * mel.clamp(min=self.floor).log10()).T.numpy())
        return out


EMBEDDERS: dict[str, str] = {
    "logmel64": "codecbench.bench.metrics.embeddings:LogMelEmbedder",
}
