"""Metrics on pretrained-model embeddings: CLAP similarity (item), FAD / KAD with CLAP, PANN, EnCodec, VGGish (set).

Each needs a weights file (:mod:`~codecbench.bench.metrics.model_embedders`); :meth:`availability` names the file
and its official source when it is absent offline, so the runner lists the metric as unavailable.
``random_init=True`` runs the real architecture at seeded random initialisation (tests only; labelled so in
``extras["embedder"]["weights"]``).

CLAP similarity = cosine between the mean of the (unit-norm) window embeddings of the reference and of the
degraded item (fixed 10 s windows at 48 kHz, eval mode, seeded): 1 for identical input, symmetric.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics.base import EmbeddingSimilarityMetric, MetricInfo, MetricValue
from codecbench.bench.metrics.distribution import (
    FAD_CITATION,
    FAD_INF_CITATION,
    KAD_CITATION,
    FadInfinity,
    FrechetAudioDistance,
    KernelAudioDistance,
)
from codecbench.bench.metrics.embeddings import EmbeddingCache
from codecbench.bench.metrics.model_embedders import ClapEmbedder, EncodecEmbedder, ModelEmbedder, PannEmbedder
from codecbench.bench.metrics.vggish import VggishEmbedder

CLAP_CITATION = "Wu et al., 'Large-scale Contrastive Language-Audio Pretraining', ICASSP 2023 (LAION-CLAP)"
CLAP_CHECKPOINT = ClapEmbedder.weights_file.filename


class _ModelOptions:
    """Options shared by model metrics: ``random_init``, ``weights_dir`` (None: CODECBENCH_WEIGHTS / default)."""

    embedder_class: type[ModelEmbedder]
    random_init: bool
    weights_dir: str | None
    seed: int
    device: str

    def make_embedder(self) -> ModelEmbedder:
        return self.embedder_class(
            random_init=self.random_init, seed=self.seed, weights_dir=self.weights_dir, device=self.device
        )

    def availability(self) -> str | None:
        return self.make_embedder().availability()


class ClapSimilarity(_ModelOptions, EmbeddingSimilarityMetric):
    """Cosine similarity of LAION-CLAP audio embeddings of reference and degraded (higher is better, max 1)."""

    embedder_class = ClapEmbedder
    info = MetricInfo(
        name="clap_similarity", unit="", higher_is_better=True, needs_reference=True, level="item",
        sample_rate_hz=48_000, version="1", citation=f"{CLAP_CITATION}; checkpoint {CLAP_CHECKPOINT}",
        description=f"cosine of mean-pooled LAION-CLAP ({CLAP_CHECKPOINT}) embeddings of fixed 10 s windows",
        needs_weights=True, dependencies=("laion-clap",),
    )

    def __init__(self, *, random_init: bool = False, weights_dir: str | None = None, seed: int = 0,
                 batch_size: int = 8, cache_dir: str | None = None, device: str = "cpu"):
        super().__init__(random_init=random_init, weights_dir=weights_dir, seed=seed, cache_dir=cache_dir,
                         device=device)
        self.random_init, self.weights_dir, self.seed = bool(random_init), weights_dir, int(seed)
        self.batch_size = int(batch_size)
        self._embeddings: EmbeddingCache | None = None

    @property
    def embeddings(self) -> EmbeddingCache:
        if self._embeddings is None:
            self._embeddings = EmbeddingCache(self.make_embedder(), self.cache, self.batch_size)
        return self._embeddings

    @staticmethod
    def _pooled(windows: np.ndarray) -> np.ndarray:
        mean = windows.astype(np.float64).mean(axis=0)
        norm = np.linalg.norm(mean)
        if norm == 0:
            raise MetricFailure("clap_similarity: zero embedding")
        return mean / norm

    def compare(self, reference_embedding: np.ndarray, degraded_embedding: np.ndarray) -> MetricValue:
        cosine = float(self._pooled(reference_embedding) @ self._pooled(degraded_embedding))
        return MetricValue(min(cosine, 1.0), {
            "working_rate_hz": 48_000, "windows_reference": int(reference_embedding.shape[0]),
            "windows_degraded": int(degraded_embedding.shape[0]), "embedder": self.embeddings.embedder.identity(),
        })


class _ModelSetMetric(_ModelOptions):
    def __init__(self, *, random_init: bool = False, weights_dir: str | None = None, seed: int = 0,
                 bootstrap_resamples: int = 200, batch_size: int = 8, cache_dir: str | None = None,
                 device: str = "cpu", **kwargs: Any):  # kwargs: the statistic's own options (FAD-inf steps, ...)
        super().__init__(bootstrap_resamples=bootstrap_resamples, seed=seed, batch_size=batch_size,
                         cache_dir=cache_dir, device=device, **kwargs)
        self.options.update(random_init=random_init, weights_dir=weights_dir)
        self.random_init, self.weights_dir = bool(random_init), weights_dir

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        ident["options"].pop("weights_dir", None)  # where the file lies does not change values; its digest does
        return ident


def _set_info(name: str, embedder: type[ModelEmbedder], citation: str, what: str) -> MetricInfo:
    return MetricInfo(
        name=name, unit="", higher_is_better=False, needs_reference=True, level="set",
        sample_rate_hz=embedder.sample_rate_hz, version="1",
        citation=f"{citation}; embeddings {embedder.name} ({embedder.weights_file.filename})",
        description=f"{what} on {embedder.name} embeddings ({embedder.dims}-d)", needs_weights=True,
        dependencies=(embedder.package[1],),
    )


class FadClap(_ModelSetMetric, FrechetAudioDistance):
    embedder_class = ClapEmbedder
    info = _set_info("fad_clap", ClapEmbedder, FAD_CITATION, "FAD (default for sound effects: 48 kHz, full band)")


class KadClap(_ModelSetMetric, KernelAudioDistance):
    embedder_class = ClapEmbedder
    info = _set_info("kad_clap", ClapEmbedder, KAD_CITATION, "KAD")


class FadEncodec(_ModelSetMetric, FrechetAudioDistance):
    embedder_class = EncodecEmbedder
    info = _set_info("fad_encodec", EncodecEmbedder, FAD_CITATION, "FAD")


class FadPann(_ModelSetMetric, FrechetAudioDistance):
    embedder_class = PannEmbedder
    info = _set_info("fad_pann", PannEmbedder, FAD_CITATION, "FAD")


class FadInfClap(_ModelSetMetric, FadInfinity):
    embedder_class = ClapEmbedder
    info = _set_info("fad_inf_clap", ClapEmbedder, FAD_INF_CITATION, "FAD-inf")


class FadInfEncodec(_ModelSetMetric, FadInfinity):
    embedder_class = EncodecEmbedder
    info = _set_info("fad_inf_encodec", EncodecEmbedder, FAD_INF_CITATION, "FAD-inf")


class FadInfPann(_ModelSetMetric, FadInfinity):
    embedder_class = PannEmbedder
    info = _set_info("fad_inf_pann", PannEmbedder, FAD_INF_CITATION, "FAD-inf")


class _VggishOptions:
    """Adds the ``postprocess`` option (PCA + 8-bit quantisation as the released AudioSet embeddings; off by default,
    as fadtk and frechet-audio-distance)."""

    def __init__(self, *, postprocess: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.postprocess = bool(postprocess)
        self.options["postprocess"] = self.postprocess

    def make_embedder(self) -> ModelEmbedder:
        return VggishEmbedder(
            postprocess=self.postprocess, random_init=self.random_init, seed=self.seed, weights_dir=self.weights_dir,
            device=self.device,
        )


class FadVggish(_VggishOptions, _ModelSetMetric, FrechetAudioDistance):
    embedder_class = VggishEmbedder
    info = _set_info("fad_vggish", VggishEmbedder, FAD_CITATION, "FAD (Kilgour et al.'s original embedding; 0.96 s examples)")


class FadInfVggish(_VggishOptions, _ModelSetMetric, FadInfinity):
    embedder_class = VggishEmbedder
    info = _set_info("fad_inf_vggish", VggishEmbedder, FAD_INF_CITATION, "FAD-inf")


class KadVggish(_VggishOptions, _ModelSetMetric, KernelAudioDistance):
    embedder_class = VggishEmbedder
    info = _set_info("kad_vggish", VggishEmbedder, KAD_CITATION, "KAD")
