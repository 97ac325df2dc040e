"""aiSFX sound-effect embeddings (Ma and Lerch, ISMIR 2022) with the paper's Essentia front end rebuilt in torch.

The trained CNN ("X-Sequential-CE", 512-d, CC BY 4.0) ships inside the ``aisfx`` wheel. Its metadata pins
``numpy==1.23.0`` and ``librosa==0.9.2``, so it is installed without dependencies (``pip install --no-deps
aisfx==0.1.2``; it needs only torch and tqdm, both present). The checkpoint holds numpy scalars; it is read with
``torch.load(weights_only=True)`` inside ``torch.serialization.safe_globals`` for exactly those numpy types (no
code runs at load), after its sha256 is checked against the digest below.

Front end (the package's ``spectrogram_essentia.compute_spectrogram`` with the paper's settings, rebuilt in torch;
checked against Essentia 2.1b6 in ``tests/test_metrics_aisfx.py``): 44.1 kHz mono; Essentia ``FrameCutter``
(2048-sample frames, hop 1024, the first frame centred on sample 0, zero-padded at both ends, ``ceil((T + 1024) /
1024)`` frames); symmetric Hann window (Essentia's, denominator 2047); magnitude spectrum, squared; 96 triangular
HTK-mel bands 0-22.05 kHz built as Essentia's ``MelBands`` (``warping`` weighting, ``unit_sum``); ``log10(1e4 x + 1)``;
divided by 9.457798957824707 (the paper's dataset maximum). The package's own librosa front end is not used: it
never transposes the spectrogram, so its embeddings differ (cosine 0.847 to this path).

Embeddings: blocks of 100 frames (2.32 s) with hop 50 (1.16 s); a last partial block is dropped unless it is the
only one (then zero-padded, as the package does). One 512-d vector per block: ``[F, 512]`` frames for FAD/KAD.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from codecbench.bench.core import weights
from codecbench.bench.core.errors import MetricFailure, MissingDependencyError
from codecbench.bench.metrics.base import EmbeddingSimilarityMetric, MetricInfo, MetricValue
from codecbench.bench.metrics.distribution import (
    FAD_CITATION,
    FAD_INF_CITATION,
    KAD_CITATION,
    EmbeddingSetMetric,
    FadInfinity,
    FrechetAudioDistance,
    KernelAudioDistance,
)
from codecbench.bench.metrics.embeddings import Embedder, EmbeddingCache

AISFX_CITATION = ("Ma and Lerch, 'Representation Learning for the Automatic Indexing of Sound Effects Libraries', "
                  "ISMIR 2022 (aisfx 0.1.2, X-Sequential-CE)")
AISFX_INSTALL = "pip install --no-deps aisfx==0.1.2"
CHECKPOINT_RELPATH = "models/checkpoint.pth"
CHECKPOINT_SHA256 = "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"
WEIGHTS_LICENSE = "CC BY 4.0 (aisfx wheel LICENSE)"

SAMPLE_RATE_HZ = 44_100
FRAME = 2048
HOP = 1024
N_MELS = 96
SPEC_MAX = 9.457798957824707  # aisfx preprocessing.spectrogram_normalize('original'): min 0, max this
BLOCK_FRAMES = 100
BLOCK_HOP_FRAMES = 50


# ---- front end (pure functions) -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def essentia_mel_filters(sample_rate_hz: int = SAMPLE_RATE_HZ, n_fft: int = FRAME, n_mels: int = N_MELS,
                         f_min_hz: float = 0.0, f_max_hz: float = 22_050.0) -> np.ndarray:
    """Essentia ``MelBands`` weights [n_mels, n_fft // 2 + 1] (htkMel, ``warping`` weighting, ``unit_sum``).

    Band edges equally spaced on the HTK mel scale; band i spans bins ``int(f_i / df + 0.5)`` to
    ``int(f_{i+2} / df + 0.5)`` inclusive (df the bin spacing), weights rise and fall linearly in mel, each band
    normalised to sum 1 (as Essentia's TriangularBands; checked against Essentia to 7e-7).
    """
    def hz2mel(f):
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    def mel2hz(m):
        return 700.0 * np.expm1(np.asarray(m, dtype=np.float64) / 1127.0)

    n_bins = n_fft // 2 + 1
    lo, hi = hz2mel(f_min_hz), hz2mel(f_max_hz)
    edges = mel2hz(lo + np.arange(n_mels + 2) * (hi - lo) / (n_mels + 1))
    edges_mel = hz2mel(edges)
    df = (sample_rate_hz / 2.0) / (n_bins - 1)
    out = np.zeros((n_mels, n_bins))
    for i in range(n_mels):
        j = np.arange(int(edges[i] / df + 0.5), min(int(edges[i + 2] / df + 0.5) + 1, n_bins))
        freq = j * df
        mel = hz2mel(freq)
        rise = (freq >= edges[i]) & (freq < edges[i + 1])
        fall = (freq >= edges[i + 1]) & (freq < edges[i + 2])
        out[i, j[rise]] = (mel[rise] - edges_mel[i]) / (edges_mel[i + 1] - edges_mel[i])
        out[i, j[fall]] = (edges_mel[i + 2] - mel[fall]) / (edges_mel[i + 2] - edges_mel[i + 1])
        total = out[i].sum()
        if total > 0:
            out[i] /= total
    return out.astype(np.float32)


def essentia_frames(signal: torch.Tensor, frame: int = FRAME, hop: int = HOP) -> torch.Tensor:
    """Essentia ``FrameCutter`` (startFromZero False): [T] -> [F, frame], F = ceil((T + frame/2) / hop), the first
    frame centred on sample 0; zeros outside the signal."""
    half = frame // 2
    n_frames = -(-(signal.shape[0] + half) // hop)
    total = (n_frames - 1) * hop + frame
    padded = torch.nn.functional.pad(signal, (half, max(0, total - half - signal.shape[0])))
    return padded.unfold(0, frame, hop)[:n_frames]


def aisfx_spectrogram(signal: torch.Tensor) -> torch.Tensor:
    """The paper's normalised log-mel spectrogram: mono [T] float32 at 44.1 kHz -> [F, 96]."""
    frames = essentia_frames(signal)
    n = torch.arange(FRAME, dtype=torch.float64)
    window = (0.5 - 0.5 * torch.cos(2.0 * torch.pi * n / (FRAME - 1))).to(signal.dtype)  # symmetric (Essentia)
    spectrum = torch.fft.rfft(frames * window, dim=-1).abs()  # [F, 1025]
    basis = torch.from_numpy(essentia_mel_filters()).to(signal.device, signal.dtype)  # [96, 1025]
    mel = (spectrum**2) @ basis.T  # [F, 96]
    return torch.log10(1e4 * mel + 1.0) / SPEC_MAX


def block_starts(n_frames: int, block: int = BLOCK_FRAMES, hop: int = BLOCK_HOP_FRAMES) -> list[int]:
    """First frame of each embedding block (aisfx ``preprocessing.blocking`` with ``drop_partial_block=True``)."""
    n_blocks = int(np.ceil((n_frames - block) / hop + 1))
    if (n_frames - block) % hop != 0:
        n_blocks -= 1
    return [i * hop for i in range(max(n_blocks, 1))]


def aisfx_blocks(spec: torch.Tensor) -> torch.Tensor:
    """[F, 96] -> [B, 100, 96] blocks (zero-padded at the end where a block runs past F)."""
    padded = torch.nn.functional.pad(spec, (0, 0, 0, BLOCK_FRAMES))
    return torch.stack([padded[s : s + BLOCK_FRAMES] for s in block_starts(spec.shape[0])])


# ---- checkpoint -----------------------------------------------------------------------------------------------------

def aisfx_package_dir() -> Path | None:
    spec = importlib.util.find_spec("aisfx")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def load_aisfx_model(path: Path, device: str = "cpu") -> torch.nn.Module:
    """The X-Sequential-CE CrossNet (all heads, strict load) from ``path``; sha256 checked; eval mode.

    Returns the module whose ``embedding_net`` maps [B, 100, 96] -> [B, 512]."""
    digest = weights.file_digest(path)
    if digest != CHECKPOINT_SHA256:
        raise MetricFailure(f"aisfx checkpoint {path}: sha256 {digest}, expected {CHECKPOINT_SHA256} (aisfx 0.1.2)")
    from aisfx.models.cnn2d import CrossNet, EmbeddingNet

    numpy_types = [np.core.multiarray.scalar, np.dtype, type(np.dtype(np.int64))]
    with torch.serialization.safe_globals(numpy_types):
        state, datasets = torch.load(path, map_location="cpu", weights_only=True)
    datasets = {name: (int(index), int(classes)) for name, (index, classes) in datasets.items()}
    model = CrossNet(EmbeddingNet("max", 3, 1, 64), datasets, "cpu")
    model.load_state_dict(state)
    return model.to(device).eval()


# ---- embedder -------------------------------------------------------------------------------------------------------

class AisfxEmbedder(Embedder):
    """aiSFX X-Sequential-CE 512-d embeddings of 2.32 s blocks (hop 1.16 s) at 44.1 kHz, Essentia front end."""

    name = "aisfx-x-sequential-ce"
    version = "1"
    sample_rate_hz = SAMPLE_RATE_HZ
    dims = 512

    def __init__(self, *, device: str = "cpu"):
        self.device = device
        self._model: torch.nn.Module | None = None

    def windowing(self) -> dict[str, Any]:
        return {"frame": FRAME, "hop": HOP, "n_mels": N_MELS, "block_frames": BLOCK_FRAMES,
                "block_hop_frames": BLOCK_HOP_FRAMES, "front_end": "essentia (torch)", "partial_block": "dropped"}

    def checkpoint(self) -> Path | None:
        package = aisfx_package_dir()
        return None if package is None else package / CHECKPOINT_RELPATH

    def availability(self) -> str | None:
        path = self.checkpoint()
        if path is None:
            return str(MissingDependencyError("aiSFX embeddings", "aisfx", AISFX_INSTALL))
        if not path.is_file():
            return f"aisfx is installed but its checkpoint {path} is missing; reinstall: {AISFX_INSTALL}"
        return None

    def weights_status(self) -> str:
        return f"pretrained: aisfx {CHECKPOINT_RELPATH} sha256:{CHECKPOINT_SHA256}"

    def min_samples(self) -> int:
        return 1

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            reason = self.availability()
            if reason is not None:
                raise MissingDependencyError("aiSFX embeddings", "aisfx", AISFX_INSTALL)
            self._model = load_aisfx_model(self.checkpoint(), self.device)
        return self._model

    def embed_batch(self, batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Mono [T_i] float32 at 44.1 kHz -> [B_i, 512] per item; all blocks of the batch in one forward pass."""
        blocks, counts = [], []
        for signal in batch:
            spec = aisfx_spectrogram(torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32)))
            item_blocks = aisfx_blocks(spec)
            blocks.append(item_blocks)
            counts.append(item_blocks.shape[0])
        with torch.inference_mode():
            embedded = self.model.embedding_net(torch.cat(blocks).to(self.device)).cpu().numpy()
        return list(np.split(embedded, np.cumsum(counts)[:-1]))


# ---- metrics --------------------------------------------------------------------------------------------------------

def pooled_cosine(reference: np.ndarray, degraded: np.ndarray) -> float:
    """Cosine between the block-mean embeddings of two items ([B_r, D], [B_d, D]); raises on a zero embedding."""
    a, b = reference.astype(np.float64).mean(axis=0), degraded.astype(np.float64).mean(axis=0)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise MetricFailure("aisfx_similarity: zero embedding (all-zero activations)")
    return float(min(a @ b / (na * nb), 1.0))


class _AisfxAvailability:
    device: str

    def make_embedder(self) -> AisfxEmbedder:
        return AisfxEmbedder(device=self.device)

    def availability(self) -> str | None:
        return self.make_embedder().availability()


def _info(name: str, level: str, higher: bool, citation: str, description: str) -> MetricInfo:
    return MetricInfo(
        name=name, unit="", higher_is_better=higher, needs_reference=True, level=level,
        sample_rate_hz=SAMPLE_RATE_HZ, version="1",
        citation=f"{citation}; embeddings {AisfxEmbedder.name}; weights aisfx wheel {CHECKPOINT_RELPATH} "
                 f"sha256:{CHECKPOINT_SHA256}, {WEIGHTS_LICENSE}",
        description=description, needs_weights=False, dependencies=("aisfx (--no-deps)",),
    )


class AisfxSimilarity(_AisfxAvailability, EmbeddingSimilarityMetric):
    """Cosine of the block-mean aiSFX embeddings of reference and degraded (higher is better, max 1)."""

    info = _info("aisfx_similarity", "item", True, AISFX_CITATION,
                 "cosine of block-mean aiSFX embeddings (the paper's acoustic-similarity protocol with a "
                 "sound-effect embedder; weights in the wheel)")

    def __init__(self, *, batch_size: int = 8, cache_dir: str | None = None, device: str = "cpu"):
        super().__init__(cache_dir=cache_dir, device=device)
        self.batch_size = int(batch_size)
        self._embeddings: EmbeddingCache | None = None

    @property
    def embeddings(self) -> EmbeddingCache:
        if self._embeddings is None:
            self._embeddings = EmbeddingCache(self.make_embedder(), self.cache, self.batch_size)
        return self._embeddings

    def compare(self, reference_embedding: np.ndarray, degraded_embedding: np.ndarray) -> MetricValue:
        return MetricValue(pooled_cosine(reference_embedding, degraded_embedding), {
            "working_rate_hz": SAMPLE_RATE_HZ, "blocks_reference": int(reference_embedding.shape[0]),
            "blocks_degraded": int(degraded_embedding.shape[0]), "embedder": self.embeddings.embedder.identity(),
        })


class _AisfxSet(_AisfxAvailability, EmbeddingSetMetric):
    embedder_class: ClassVar[type[Embedder]] = AisfxEmbedder


class FadAisfx(_AisfxSet, FrechetAudioDistance):
    """FAD on aiSFX block embeddings (512-d; N counts 2.32 s blocks: needs more than 512 per set)."""

    info = _info("fad_aisfx", "set", False, FAD_CITATION, "FAD on aiSFX embeddings (512-d, one per 1.16 s)")


class KadAisfx(_AisfxSet, KernelAudioDistance):
    """KAD on aiSFX block embeddings."""

    info = _info("kad_aisfx", "set", False, KAD_CITATION, "KAD on aiSFX embeddings (512-d, one per 1.16 s)")


class FadInfAisfx(_AisfxSet, FadInfinity):
    """FAD-inf on aiSFX block embeddings (the estimator and its reliability checks: :class:`FadInfinity`)."""

    info = _info("fad_inf_aisfx", "set", False, FAD_INF_CITATION, "FAD-inf on aiSFX embeddings (512-d, one per 1.16 s)")
