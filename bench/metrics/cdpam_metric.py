"""CDPAM (Manocha et al., ICASSP 2021): a learned perceptual audio distance, weights inside the ``cdpam`` wheel.

Definition (version "1"): both signals to mono (channel mean), soxr VHQ to 22.05 kHz, cut to their common length,
scaled to 16-bit integer range (``round(x * 32768)``, as the package's ``load_audio``), then the package's network:
``d = model_dist(normalize(acoustic(ref)), normalize(acoustic(deg)))`` (``cdpam.CDPAM.forward``). Lower is better;
0 for identical input. Equal to ``cdpam.CDPAM(dev='cpu').forward`` within 1e-5 (tests).

What differs from calling the package: the model is built here on the requested device (the package defaults to
``cuda:0``); the checkpoint (``CDPAM_trained/scratchJNDdefault_best_model.pth``, an old training checkpoint that
``torch.load(weights_only=True)`` cannot parse) is loaded with ``weights_only=False`` only after its sha256 matched
the digest below, and only its ``state`` entry is used; the package's ``load_audio`` (which uses the removed
``np.float``) is never called. The wheel declares no dependencies: it needs ``resampy`` and ``librosa`` at import
(codecbench's ``metrics`` extra installs them). Slow on CPU (about 1.1 s per audio second on 2 idle cores, 36 s for
a 5 s clip under load; on CPU one item per forward pass, a GPU batches items of equal length, ``batch_size``): not in
the default configs. Speed against the package: ``bench/benchmarks/cdpam_speed.py``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from codecbench.bench.core import weights
from codecbench.bench.core.errors import MetricFailure, MissingDependencyError
from codecbench.bench.metrics.alignment import at_working_rate
from codecbench.bench.metrics.base import BatchedItemMetric, MetricInfo, MetricValue

CDPAM_CITATION = ("Manocha et al., 'CDPAM: Contrastive learning for perceptual audio similarity', ICASSP 2021; "
                  "cdpam 0.0.6")
INSTALL = "pip install cdpam==0.0.6 resampy librosa"
CHECKPOINT_RELPATH = "CDPAM_trained/scratchJNDdefault_best_model.pth"
CHECKPOINT_SHA256 = "453c8b6edee1a94f0120236156436ff28fe4d8d884485e4a67695c8e8570bdfe"
SAMPLE_RATE_HZ = 22_050
MIN_SAMPLES = 8_192  # shorter inputs collapse in the encoder's strided layers
GPU_BATCH_SIZE = 4  # default items per forward pass off the CPU


def cdpam_checkpoint() -> Path | None:
    spec = importlib.util.find_spec("cdpam")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / CHECKPOINT_RELPATH


def load_cdpam_model(path: Path, device: str = "cpu") -> torch.nn.Module:
    """The package's FINnet with its trained state (sha256 verified before the pickle load), eval mode."""
    digest = weights.file_digest(path)
    if digest != CHECKPOINT_SHA256:
        raise MetricFailure(f"cdpam checkpoint {path}: sha256 {digest}, expected {CHECKPOINT_SHA256} (cdpam 0.0.6); "
                            "refusing to unpickle it")
    import warnings

    with warnings.catch_warnings():  # cdpam/__init__.py imports numpy.matlib (PendingDeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, message=".*numpy.matlib.*")
        from cdpam.models import FINnet

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # digest checked above
    model = FINnet(dev=torch.device(device), encoder_layers=16, encoder_filters=64, ndim=[16, 6], classif_dp=0.05,
                   classif_BN=0, classif_act="no", input_size=512)
    model.load_state_dict(checkpoint["state"])
    return model.to(device).eval()


def cdpam_distance(model: torch.nn.Module, reference: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
    """Distances [B] of 16-bit-scaled mono 22.05 kHz ``reference``, ``degraded`` [B, T] (same T)."""
    import torch.nn.functional as F

    with torch.inference_mode():
        _, a1, _ = model.base_encoder.forward(reference.float().unsqueeze(1))
        _, a2, _ = model.base_encoder.forward(degraded.float().unsqueeze(1))
        return model.model_dist.forward(F.normalize(a1, dim=1), F.normalize(a2, dim=1))


class CdpamDistance(BatchedItemMetric):
    """CDPAM distance at 22.05 kHz (unitless, lower is better)."""

    info = MetricInfo(
        name="cdpam_distance", unit="", higher_is_better=False, needs_reference=True, level="item",
        sample_rate_hz=SAMPLE_RATE_HZ, version="1",
        citation=f"{CDPAM_CITATION}; weights cdpam wheel {CHECKPOINT_RELPATH} sha256:{CHECKPOINT_SHA256} (MIT)",
        description="CDPAM learned perceptual distance (mono, 22.05 kHz, 16-bit scale); slow on CPU (~1.2 s per "
                    "second of audio on 2 cores)",
        dependencies=("cdpam", "resampy", "librosa"),
    )

    def __init__(self, *, batch_size: int | None = None, cache_dir: str | None = None, device: str = "cpu"):
        super().__init__(cache_dir=cache_dir, device=device)  # batch_size and device do not change values
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"cdpam_distance: batch_size must be >= 1, got {batch_size}")
        # default: one item per forward pass on CPU (measured: 2 pairs of 2 s in one pass took 1.25x as long as one
        # pair at a time), GPU_BATCH_SIZE elsewhere
        self.batch_size = int(batch_size) if batch_size is not None else (1 if device == "cpu" else GPU_BATCH_SIZE)
        self._model: torch.nn.Module | None = None

    def availability(self) -> str | None:
        path = cdpam_checkpoint()
        if path is None:
            return str(MissingDependencyError("CDPAM", "cdpam", INSTALL))
        for module in ("resampy", "librosa"):
            if importlib.util.find_spec(module) is None:
                return str(MissingDependencyError("CDPAM (the cdpam package imports it)", module, INSTALL))
        if not path.is_file():
            return f"cdpam is installed but its checkpoint {path} is missing; reinstall: {INSTALL}"
        return None

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            reason = self.availability()
            if reason is not None:
                raise MissingDependencyError("CDPAM", "cdpam", INSTALL)
            self._model = load_cdpam_model(cdpam_checkpoint(), self.device)
        return self._model

    def _prepare(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int):
        ref, deg, _, extras = at_working_rate(reference, degraded, sample_rate_hz, SAMPLE_RATE_HZ, "cdpam_distance",
                                              MIN_SAMPLES)
        scale = lambda x: torch.round(x.mean(dim=0).double() * 32768.0).float()  # noqa: E731 - [C, T] -> [T]
        extras.update(downmix="mean", scale="int16")
        return scale(ref), scale(deg), extras

    def score_batch(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> list[MetricValue | MetricFailure]:
        """Items of equal length are batched (``batch_size`` per forward pass; 1 on CPU by default)."""
        out: list[MetricValue | MetricFailure | None] = [None] * len(references)
        groups: dict[int, list[tuple[int, torch.Tensor, torch.Tensor, dict]]] = {}
        for index, (ref, deg) in enumerate(zip(references, degraded)):
            try:
                r, d, extras = self._prepare(ref, deg, sample_rate_hz)
                groups.setdefault(r.shape[-1], []).append((index, r, d, extras))
            except MetricFailure as failure:
                out[index] = failure
        for items in groups.values():
            for start in range(0, len(items), self.batch_size):
                chunk = items[start : start + self.batch_size]
                refs = torch.stack([r for _, r, _, _ in chunk]).to(self.device)
                degs = torch.stack([d for _, _, d, _ in chunk]).to(self.device)
                distances = cdpam_distance(self.model, refs, degs).reshape(-1).cpu().numpy()
                for (index, _, _, extras), value in zip(chunk, distances):
                    try:
                        out[index] = MetricValue(float(value), extras)
                    except MetricFailure as failure:
                        out[index] = failure
        return out  # type: ignore[return-value]
