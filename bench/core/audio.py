"""Audio I/O and signal helpers shared by datasets, codecs and metrics.

All audio I/O goes through soundfile (float WAV, FLAC, OGG; MP3 where libsndfile has it). Resampling is soxr
"VHQ" (recorded as :data:`RESAMPLER`). In-memory audio is float32 ``[B, C, T]`` tensors or ``[C, T]`` arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from codecbench.bench.core.errors import AudioInputError

RESAMPLER = f"soxr-{soxr.__version__}-VHQ"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")


def read(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[C, T]`` and its sample rate; :class:`AudioInputError` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise AudioInputError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise AudioInputError(path, "empty file (0 bytes)")
    try:
        data, sample_rate_hz = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for corrupt input
        raise AudioInputError(path, f"unreadable or corrupt audio ({type(exc).__name__}: {exc})") from exc
    return np.ascontiguousarray(data.T), int(sample_rate_hz)


def write(path: str | os.PathLike, audio: np.ndarray, sample_rate_hz: int, subtype: str = "FLOAT") -> None:
    """Write ``audio`` [C, T] (or [T]) atomically: to a temporary name, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.asarray(audio, dtype=np.float32)
    frames = audio.T if audio.ndim == 2 else audio
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), frames, sample_rate_hz, subtype=subtype, format=_format_of(path))
    os.replace(tmp, path)


def _format_of(path: Path) -> str:
    return {".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower(), "WAV")


def resample(audio: torch.Tensor, from_hz: int, to_hz: int) -> torch.Tensor:
    """Resample [..., T] with soxr VHQ; identity when the rates match. Output length = round(T * to / from)."""
    if from_hz == to_hz:
        return audio
    shape = audio.shape
    flat = audio.reshape(-1, shape[-1]).detach().cpu().numpy().astype(np.float64)
    out = soxr.resample(flat.T, from_hz, to_hz, quality="VHQ").T
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).reshape(*shape[:-1], -1).to(audio.device)


def match_channels(audio: torch.Tensor, channels: int) -> tuple[torch.Tensor, str]:
    """Adapt [B, C, T] to ``channels``: mean downmix to mono, duplication of mono; returns the policy used."""
    have = audio.shape[1]
    if have == channels:
        return audio, "none"
    if channels == 1:
        return audio.mean(dim=1, keepdim=True), f"downmix-mean-{have}to1"
    if have == 1:
        return audio.expand(-1, channels, -1).contiguous(), f"duplicate-1to{channels}"
    raise ValueError(f"cannot adapt {have} channels to {channels}")


def fit_length(audio: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Trim or zero-pad the last axis to ``num_samples``."""
    have = audio.shape[-1]
    if have >= num_samples:
        return audio[..., :num_samples]
    return torch.nn.functional.pad(audio, (0, num_samples - have))


def content_hash(audio: np.ndarray, sample_rate_hz: int) -> str:
    """sha256 of float32 samples, shape and rate: the identity of audio content in every cache key."""
    import hashlib

    audio = np.ascontiguousarray(audio, dtype=np.float32)
    digest = hashlib.sha256()
    digest.update(f"{audio.shape}|{sample_rate_hz}|float32|".encode())
    digest.update(audio.tobytes())
    return digest.hexdigest()
