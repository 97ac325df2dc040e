"""Model embedders with their real architectures: LAION-CLAP (HTSAT-tiny), PANN (Cnn14_16k), EnCodec encoder (24 kHz).

Weights come only from the weights directory (:mod:`codecbench.bench.core.weights`): each model names its exact file,
its official source and its sub-folder. Offline (``CODECBENCH_OFFLINE=1``), an absent file stops with
:class:`~codecbench.bench.core.errors.WeightsNotFoundError`; online, the file is downloaded from its official source
into the weights directory first. ``random_init=True`` builds the same architecture at seeded random
initialisation (tests; results are labelled ``random-init`` through :meth:`Embedder.weights_status`).

Heavy packages (laion_clap -> transformers, frechet_audio_distance, encodec) are imported only when a model is
built. All models run in eval mode under ``torch.inference_mode``; windowing is fixed (no random crops).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from codecbench.bench.core import weights  # noqa: F401
from codecbench.bench.core.clap_model import CLAP_WEIGHTS, build_clap_module
from codecbench.bench.core.errors import MissingDependencyError
from codecbench.bench.core.weights import WeightsFile  # noqa: F401  (re-exported)
from codecbench.bench.metrics.embeddings import Embedder


def _require(module: str, what: str, package: str, install: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(what, package, install) from exc


class ModelEmbedder(Embedder):
    """Shared parts: weights file, random-init switch, seeded construction, lazy model."""

    weights_file: WeightsFile
    package: tuple[str, str, str]  # (import name, package name, install line)

    def __init__(self, *, random_init: bool = False, seed: int = 0, weights_dir: str | None = None,
                 device: str = "cpu"):
        self.random_init = bool(random_init)
        self.seed = int(seed)
        self.weights_dir = weights_dir
        self.device = device
        self._model: Any = None

    def availability(self) -> str | None:
        import importlib.util

        module, package, install = self.package
        if importlib.util.find_spec(module) is None:
            return str(MissingDependencyError(self.name, package, install))
        return None if self.random_init else self.weights_file.missing_reason(self.weights_dir)

    def weights_status(self) -> str:
        if self.random_init:
            return f"random-init (seed {self.seed})"
        return self.weights_file.status(self.weights_dir)  # sha256 of the file (memoised per file in bench.core.weights)

    @property
    def model(self) -> Any:
        if self._model is None:
            _require(*self.package[:1], self.name, *self.package[1:])
            path = None if self.random_init else self.weights_file.fetch(self.weights_dir)
            torch.manual_seed(self.seed)
            self._model = self.build(path).to(self.device).eval()
        return self._model

    def build(self, path: Path | None) -> torch.nn.Module:
        """The model, with the weights at ``path`` loaded (None: random initialisation)."""
        raise NotImplementedError


def fixed_windows(length: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Deterministic windows [start, stop) covering ``length`` samples: starts 0, hop, ...; the last window ends at
    ``length`` (aligned to the end); one window (the whole signal) when ``length <= window``."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] + window < length:
        starts.append(length - window)
    return [(s, s + window) for s in starts]


# ---- LAION-CLAP --------------------------------------------------------------------------------------------------

class ClapEmbedder(ModelEmbedder):
    """LAION-CLAP HTSAT-tiny audio embeddings (512-d, unit norm) of fixed 10 s windows at 48 kHz.

    Windows: 480 000 samples, hop ``hop_s`` (default 10 s, non-overlapping, as fadtk), the last window aligned to
    the end; a signal of 10 s or less is one window, repeat-padded by laion_clap ("repeatpad"). Samples are
    quantised to int16 and back, as laion_clap's own example does. Eval mode, no random crop.
    """

    name = "laion-clap-htsat-tiny"
    version = "1"
    sample_rate_hz = 48_000
    dims = 512
    window = 480_000
    weights_file = CLAP_WEIGHTS
    package = ("laion_clap", "laion-clap", "pip install laion-clap==1.1.7")

    def __init__(self, *, hop_s: float = 10.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.hop = int(round(hop_s * self.sample_rate_hz))

    def windowing(self) -> dict[str, Any]:
        return {"window": self.window, "hop": self.hop, "tail": "end-aligned", "short": "repeatpad", "int16": True}

    def build(self, path: Path | None) -> torch.nn.Module:
        return build_clap_module(path, self.device)

    def embed_batch(self, batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        windows, owners = [], []
        for index, signal in enumerate(batch):
            for start, stop in fixed_windows(signal.shape[0], self.window, self.hop):
                windows.append(np.ascontiguousarray(signal[start:stop], dtype=np.float32))
                owners.append(index)
        with torch.inference_mode():
            embedded = np.asarray(self.model.get_audio_embedding_from_data(windows, use_tensor=False))
        owners_arr = np.asarray(owners)
        return [embedded[owners_arr == i] for i in range(len(batch))]


# ---- EnCodec encoder --------------------------------------------------------------------------------------------

class EncodecEmbedder(ModelEmbedder):
    """EnCodec 24 kHz encoder output before quantisation: 128-d frames at 75 Hz (as frechet-audio-distance/fadtk)."""

    name = "encodec-24khz-encoder"
    version = "1"
    sample_rate_hz = 24_000
    dims = 128
    weights_file = WeightsFile(
        "EnCodec 24 kHz", "encodec_24khz-d7cc33bc.th",
        "https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th", "encodec",
    )
    package = ("encodec", "encodec", "pip install encodec==0.1.1")

    def windowing(self) -> dict[str, Any]:
        return {"frames": "encoder stride 320 (75 Hz)", "whole_signal": True}

    def min_samples(self) -> int:
        return 320

    def build(self, path: Path | None) -> torch.nn.Module:
        from encodec import EncodecModel

        model = EncodecModel.encodec_model_24khz(pretrained=False)
        if path is not None:
            model.load_state_dict(torch.load(path, map_location="cpu"))
        return model

    def embed_batch(self, batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        with torch.inference_mode():
            for signal in batch:  # lengths differ; the encoder is convolutional
                x = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))[None, None].to(self.device)
                out.append(self.model.encoder(x)[0].T.cpu().numpy())
        return out


# ---- PANN Cnn14 (16 kHz) ----------------------------------------------------------------------------------------

class PannEmbedder(ModelEmbedder):
    """PANN Cnn14_16k 2048-d embeddings of fixed 1 s windows (hop ``hop_s``) at 16 kHz (Kong et al. 2020)."""

    name = "pann-cnn14-16k"
    version = "1"
    sample_rate_hz = 16_000
    dims = 2048
    window = 16_000
    weights_file = WeightsFile(
        "PANN Cnn14_16k", "Cnn14_16k_mAP=0.438.pth",
        "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth", "pann",
    )
    package = ("frechet_audio_distance", "frechet-audio-distance", "pip install frechet-audio-distance==0.3.4")

    def __init__(self, *, hop_s: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.hop = int(round(hop_s * self.sample_rate_hz))

    def windowing(self) -> dict[str, Any]:
        return {"window": self.window, "hop": self.hop, "tail": "end-aligned"}

    def min_samples(self) -> int:
        return 512

    def build(self, path: Path | None) -> torch.nn.Module:
        weights.set_offline(weights.is_offline())
        from frechet_audio_distance.models.pann import Cnn14_16k

        model = Cnn14_16k(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000,
                          classes_num=527)
        if path is not None:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["model"])
        return model

    def embed_batch(self, batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        with torch.inference_mode():
            for signal in batch:
                spans = fixed_windows(signal.shape[0], self.window, self.hop)
                if len(spans) == 1:
                    x = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))[None]
                else:
                    x = torch.from_numpy(np.stack([signal[a:b] for a, b in spans]).astype(np.float32))
                out.append(self.model(x.to(self.device), None)["embedding"].cpu().numpy())
        return out
