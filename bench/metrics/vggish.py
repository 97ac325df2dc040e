"""VGGish (Hershey et al., ICASSP 2017): the AudioSet VGG-like audio embedding, its log-mel front end and PCA step.

Written for codecbench from the TensorFlow reference (tensorflow/models ``research/audioset/vggish``: ``vggish_slim``,
``vggish_params``, ``mel_features``, ``vggish_postprocess``) and laid out so that the PyTorch weights of the
torchvggish release (harritaylor/torchvggish v0.1, ``vggish-10086976.pth``, converted from the TF checkpoint) load
under their own key names.

Front end (:class:`VggishFrontEnd`, the reference's constants)::

    16 kHz mono -> frames of 400 samples (25 ms), hop 160 (10 ms), only whole frames, periodic Hann
    -> |rfft| with n_fft 512 (next power of two)      [F, 257]   (magnitude, not power)
    -> 64 HTK-mel triangles 125-7500 Hz, built in the mel domain (mel = 1127 ln(1 + f / 700)), DC row zeroed
    -> log(mel + 0.01)                                 [F, 64]
    -> non-overlapping examples of 96 frames (0.96 s) [E, 96, 64]; a partial last example is dropped

Model (:class:`VGGish`): conv3x3(64) pool conv3x3(128) pool conv3x3(256) conv3x3(256) pool conv3x3(512) conv3x3(512)
pool (every conv ReLU, pad 1; pools 2x2 stride 2) -> [E, 512, 6, 4], flattened channels-last (time, band, channel)
as TF's NHWC flatten -> fc 12288->4096 ReLU -> fc 4096->4096 ReLU -> fc 4096->128. 72 141 184 parameters. The
embedding is fc2's pre-activation output, as the TF reference, fadtk and frechet-audio-distance use it
(torchvggish appends a ReLU; ``final_relu=True`` reproduces that).

Postprocessing (:class:`VggishPostprocessor`, optional): PCA with whitening (``pca_eigen_vectors`` [128, 128],
``pca_means`` [128]), clip to [-2, 2], scale to [0, 255] and truncate to integers as the reference's ``uint8``
cast (torchvggish rounds instead: at most 1 step apart). This reproduces the released AudioSet embeddings' format.

Shapes: T samples, F STFT frames, E examples (0.96 s each), D = 128 embedding dims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from codecbench.bench.core.errors import ConfigError, MetricFailure
from codecbench.bench.metrics.model_embedders import ModelEmbedder, WeightsFile
from torch import nn

EMBEDDING_DIMS = 128
PCA_VECTORS_KEY = "pca_eigen_vectors"
PCA_MEANS_KEY = "pca_means"
QUANTIZE_RANGE = (-2.0, 2.0)
TORCHVGGISH_RELEASE = "https://github.com/harritaylor/torchvggish/releases/download/v0.1"


# ---- front end ---------------------------------------------------------------------------------------------------

def hertz_to_mel_htk(frequency_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale as the reference: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(frequency_hz, dtype=np.float64) / 700.0)


@dataclass(frozen=True)
class VggishFrontEnd:
    """VGGish's log-mel examples. Defaults are the reference's ``vggish_params`` values."""

    sample_rate_hz: int = 16_000
    window_s: float = 0.025
    hop_s: float = 0.010
    n_mels: int = 64
    fmin_hz: float = 125.0
    fmax_hz: float = 7500.0
    log_offset: float = 0.01
    example_s: float = 0.96
    example_hop_s: float = 0.96

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate_hz * self.window_s))

    @property
    def hop_samples(self) -> int:
        return int(round(self.sample_rate_hz * self.hop_s))

    @property
    def n_fft(self) -> int:
        """Next power of two at or above the window (512 for 400 samples)."""
        return 1 << int(np.ceil(np.log2(self.window_samples)))

    @property
    def example_frames(self) -> int:
        return int(round(self.example_s / self.hop_s))

    @property
    def example_hop_frames(self) -> int:
        return int(round(self.example_hop_s / self.hop_s))

    def min_samples(self) -> int:
        """Shortest signal giving one example: 400 + 95 x 160 = 15 600 samples (0.975 s) at the defaults."""
        return self.window_samples + (self.example_frames - 1) * self.hop_samples

    def n_examples(self, n_samples: int) -> int:
        """Examples from ``n_samples`` samples at the working rate (0 when too short)."""
        if n_samples < self.window_samples:
            return 0
        frames = 1 + (n_samples - self.window_samples) // self.hop_samples
        if frames < self.example_frames:
            return 0
        return 1 + (frames - self.example_frames) // self.example_hop_frames

    def as_dict(self) -> dict[str, Any]:
        return {
            "sample_rate_hz": self.sample_rate_hz, "window": self.window_samples, "hop": self.hop_samples,
            "n_fft": self.n_fft, "window_fn": "hann-periodic", "spectrum": "magnitude", "n_mels": self.n_mels,
            "fmin_hz": self.fmin_hz, "fmax_hz": self.fmax_hz, "mel": "htk, triangles in mel, DC zeroed",
            "log_offset": self.log_offset, "example_frames": self.example_frames,
            "example_hop_frames": self.example_hop_frames, "tail": "partial example dropped",
        }

    def mel_matrix(self) -> np.ndarray:
        """Triangular mel weights [n_fft // 2 + 1, n_mels] (float64): peaks 1 at the band centres in mel."""
        nyquist_hz = self.sample_rate_hz / 2.0
        if not 0.0 <= self.fmin_hz < self.fmax_hz <= nyquist_hz:
            raise ConfigError(
                f"vggish front end: need 0 <= fmin_hz < fmax_hz <= {nyquist_hz} Hz, got {self.fmin_hz}, {self.fmax_hz}"
            )
        bins_mel = hertz_to_mel_htk(np.linspace(0.0, nyquist_hz, self.n_fft // 2 + 1))
        edges = np.linspace(hertz_to_mel_htk(self.fmin_hz), hertz_to_mel_htk(self.fmax_hz), self.n_mels + 2)
        lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
        rising = (bins_mel[:, None] - lower) / (centre - lower)
        falling = (upper - bins_mel[:, None]) / (upper - centre)
        weights = np.clip(np.minimum(rising, falling), 0.0, None)
        weights[0, :] = 0.0  # the reference excludes the DC bin
        return weights

    def log_mel(self, signal: np.ndarray) -> np.ndarray:
        """``signal`` [T] at ``sample_rate_hz`` -> log-mel frames [F, n_mels] (float64), F = 1 + (T - 400) // 160."""
        x = np.asarray(signal, dtype=np.float64)
        if x.ndim != 1:
            raise MetricFailure(f"vggish: expected mono [T] audio, got shape {x.shape}")
        if x.shape[0] < self.window_samples:
            raise MetricFailure(
                f"vggish: {x.shape[0]} samples is shorter than one STFT window ({self.window_samples} samples)"
            )
        frames = np.lib.stride_tricks.sliding_window_view(x, self.window_samples)[:: self.hop_samples]  # [F, 400]
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(self.window_samples) / self.window_samples)
        magnitude = np.abs(np.fft.rfft(frames * window, n=self.n_fft, axis=1))  # [F, 257]
        return np.log(magnitude @ self.mel_matrix() + self.log_offset)

    def examples(self, signal: np.ndarray) -> np.ndarray:
        """``signal`` [T] -> examples [E, 96, 64] (float32); :class:`MetricFailure` when shorter than one example."""
        n_examples = self.n_examples(np.shape(signal)[-1])
        if n_examples == 0:
            raise MetricFailure(
                f"vggish: {np.shape(signal)[-1]} samples at {self.sample_rate_hz} Hz give no example; needs at "
                f"least {self.min_samples()} ({self.min_samples() / self.sample_rate_hz:.3f} s)"
            )
        mel = self.log_mel(signal)
        starts = np.arange(n_examples) * self.example_hop_frames
        return np.stack([mel[s : s + self.example_frames] for s in starts]).astype(np.float32)


# ---- model -------------------------------------------------------------------------------------------------------

# (output channels, then "pool") per stage; the indices of the resulting Sequential match torchvggish's key names
_CONV_PLAN: tuple[int | str, ...] = (64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool")


class VGGish(nn.Module):
    """Log-mel examples [E, 1, 96, 64] (or [E, 96, 64]) -> embeddings [E, 128].

    Parameter names as torchvggish: ``features.{0,3,6,8,11,13}`` (convolutions), ``embeddings.{0,2,4}`` (fc1_1,
    fc1_2, fc2).
    """

    def __init__(self, *, final_relu: bool = False, example_frames: int = 96, n_mels: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        channels, pools = 1, 0
        for step in _CONV_PLAN:
            if step == "pool":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                pools += 1
            else:
                layers += [nn.Conv2d(channels, int(step), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(step)
        self.features = nn.Sequential(*layers)
        self.input_shape = (1, example_frames, n_mels)
        flat = channels * (example_frames >> pools) * (n_mels >> pools)  # 512 x 6 x 4 = 12288
        head: list[nn.Module] = [
            nn.Linear(flat, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIMS),
        ]
        if final_relu:
            head.append(nn.ReLU(inplace=True))
        self.embeddings = nn.Sequential(*head)

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """``examples`` [E, 1, 96, 64] or [E, 96, 64] -> [E, 128]."""
        x = examples[:, None] if examples.dim() == 3 else examples
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"VGGish: expected examples [E, {', '.join(map(str, self.input_shape))}], got {tuple(x.shape)}")
        h = self.features(x)  # [E, 512, 6, 4]
        h = h.permute(0, 2, 3, 1).flatten(1)  # channels last, as the TF model's NHWC flatten: [E, 12288]
        return self.embeddings(h)


class VggishPostprocessor(nn.Module):
    """PCA (with whitening) and 8-bit quantisation of embeddings [E, 128] -> [E, 128], values in {0, ..., 255}."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pca_eigen_vectors", torch.eye(EMBEDDING_DIMS))
        self.register_buffer("pca_means", torch.zeros(EMBEDDING_DIMS))

    def load_params(self, vectors: Any, means: Any) -> None:
        vectors_t = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
        means_t = torch.as_tensor(np.asarray(means), dtype=torch.float32).reshape(-1)
        if tuple(vectors_t.shape) != (EMBEDDING_DIMS, EMBEDDING_DIMS) or tuple(means_t.shape) != (EMBEDDING_DIMS,):
            raise ConfigError(
                f"vggish PCA parameters: expected {PCA_VECTORS_KEY} [128, 128] and {PCA_MEANS_KEY} [128], got "
                f"{list(vectors_t.shape)} and {list(means_t.shape)}"
            )
        self.pca_eigen_vectors.copy_(vectors_t)
        self.pca_means.copy_(means_t)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        low, high = QUANTIZE_RANGE
        projected = (embeddings - self.pca_means) @ self.pca_eigen_vectors.T  # = (V (e - m)^T)^T
        scaled = (projected.clamp(low, high) - low) * (255.0 / (high - low))
        return torch.floor(scaled)  # the reference casts to uint8 (truncation of values >= 0)


def load_vggish_weights(model: VGGish, path: Path) -> None:
    """Load a torchvggish-format state dict (``features.*``, ``embeddings.*``); errors name the file and the keys."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: expected a state dict (torchvggish format), got {type(state).__name__}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ConfigError(
            f"{path}: not a VGGish state dict in torchvggish's layout: missing keys {missing}, unexpected keys "
            f"{unexpected}, wrong shapes {[(k, list(state[k].shape), list(expected[k])) for k in wrong]}"
        )
    model.load_state_dict(state)


def load_pca_params(postprocessor: VggishPostprocessor, path: Path) -> None:
    """Load torchvggish's PCA file (a dict with ``pca_eigen_vectors`` [128, 128] and ``pca_means`` [128])."""
    # official release file; it may hold numpy arrays, which the weights-only unpickler refuses
    params = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(params, dict) or PCA_VECTORS_KEY not in params or PCA_MEANS_KEY not in params:
        keys = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ConfigError(f"{path}: expected the keys '{PCA_VECTORS_KEY}' and '{PCA_MEANS_KEY}', got {keys}")
    postprocessor.load_params(params[PCA_VECTORS_KEY], params[PCA_MEANS_KEY])


# ---- embedder ----------------------------------------------------------------------------------------------------

class VggishModule(nn.Module):
    """VGGish plus (optionally) its postprocessor: examples [E, 96, 64] -> [E, 128]."""

    def __init__(self, *, postprocess: bool = False, final_relu: bool = False):
        super().__init__()
        self.vggish = VGGish(final_relu=final_relu)
        self.postprocessor = VggishPostprocessor() if postprocess else None

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        embedded = self.vggish(examples)
        return embedded if self.postprocessor is None else self.postprocessor(embedded)


class VggishEmbedder(ModelEmbedder):
    """VGGish 128-d embeddings, one per non-overlapping 0.96 s example at 16 kHz (5 s -> 5 frames).

    Options: ``postprocess`` (PCA + 8-bit quantisation as the released AudioSet embeddings; needs the PCA file),
    ``final_relu`` (torchvggish's ReLU after fc2; off by default, as fadtk and frechet-audio-distance).
    """

    name = "vggish"
    version = "1"
    sample_rate_hz = 16_000
    dims = EMBEDDING_DIMS
    front_end = VggishFrontEnd()
    weights_file = WeightsFile(
        "VGGish (torchvggish port of the AudioSet TF checkpoint)", "vggish-10086976.pth",
        f"{TORCHVGGISH_RELEASE}/vggish-10086976.pth", "vggish",
    )
    pca_file = WeightsFile(
        "VGGish PCA parameters (torchvggish)", "vggish_pca_params-970ea276.pth",
        f"{TORCHVGGISH_RELEASE}/vggish_pca_params-970ea276.pth", "vggish",
    )
    package = ("torch", "torch", "pip install torch==2.11.0")
    max_examples = 64  # examples per model call (bounds memory: ~100 MB of activations at 64)

    def __init__(self, *, postprocess: bool = False, final_relu: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.postprocess = bool(postprocess)
        self.final_relu = bool(final_relu)

    def windowing(self) -> dict[str, Any]:
        return {**self.front_end.as_dict(), "postprocess": self.postprocess, "final_relu": self.final_relu}

    def min_samples(self) -> int:
        return self.front_end.min_samples()

    def availability(self) -> str | None:
        reason = super().availability()
        if reason is None and self.postprocess and not self.random_init:
            reason = self.pca_file.missing_reason(self.weights_dir)
        return reason

    def weights_status(self) -> str:
        status = super().weights_status()
        if self.random_init or not self.postprocess:
            return status
        return f"{status}; {self.pca_file.status(self.weights_dir).removeprefix('pretrained: ')}"

    def build(self, path: Path | None) -> torch.nn.Module:
        module = VggishModule(postprocess=self.postprocess, final_relu=self.final_relu)
        if path is not None:
            load_vggish_weights(module.vggish, path)
        if module.postprocessor is not None:
            if self.random_init:  # seeded random PCA (tests only; labelled random-init)
                generator = torch.Generator().manual_seed(self.seed)
                vectors = torch.linalg.qr(torch.randn(EMBEDDING_DIMS, EMBEDDING_DIMS, generator=generator))[0]
                module.postprocessor.load_params(vectors, torch.zeros(EMBEDDING_DIMS))
            else:
                load_pca_params(module.postprocessor, self.pca_file.fetch(self.weights_dir))
        return module

    def embed_batch(self, batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Mono signals [T_i] at 16 kHz -> [E_i, 128], E_i = examples of 0.96 s; one model call for the batch."""
        examples = [self.front_end.examples(signal) for signal in batch]
        counts = [e.shape[0] for e in examples]
        stacked = np.concatenate(examples)  # [sum E_i, 96, 64]
        with torch.inference_mode():
            embedded = np.concatenate([
                self.model(torch.from_numpy(stacked[s : s + self.max_examples]).to(self.device)).float().cpu().numpy()
                for s in range(0, stacked.shape[0], self.max_examples)
            ])
        bounds = np.cumsum([0, *counts])
        return [embedded[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
