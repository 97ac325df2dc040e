"""S-PRESSO stage 2: extract z with the frozen stage-1 encoder (cached), fit QINCo2 offline, report MSE per m.

Shapes: T samples (48 kHz), Dz z dims, Fz z frames, N frame vectors, M QINCo2 steps.

One training vector = one z frame [Dz] (paper-notes section 5.1). ``fit_stage2`` writes into its output folder:

- ``qinco2.pt``: the quantiser (:meth:`QINCo2.save`), with metadata: stage-1 checkpoint path and sha256, z frame
  rate, codebook size, bits per frame;
- ``report.json``: MSE per number of steps m = 1..M on the held-out frames for QINCo2 and for plain RQ (same
  k-means codebooks, no networks) with the rate each m gives, plus the training history;
- ``z_train.npy`` / ``z_val.npy``: the frame vectors [N, Dz] used (e.g. for ``bench/benchmarks/qinco2_vs_faiss.py``).

z of every clip is cached in ``cache_dir`` under ``spresso-z/``, keyed by the stage-1 checkpoint's sha256 and the
clip's content hash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from codecbench.bench.core import audio as audio_ops
from codecbench.bench.core.cache import Cache, atomic_write_json, make_key
from codecbench.bench.core.errors import ConfigError
from codecbench.bench.core.weights import file_digest
from codecbench.codecs.spresso import qinco2 as q
from codecbench.codecs.spresso.discrete import bitrate_kbps

SAMPLE_RATE_HZ = 48000


@dataclass(frozen=True)
class Clip:
    """One whole clip: ``name`` and mono ``audio`` [T] at 48 kHz."""

    name: str
    audio: np.ndarray


def load_clips(source: str | os.PathLike | Sequence[np.ndarray]) -> list[Clip]:
    """Whole clips from a folder of audio files (resampled to 48 kHz, mean-downmixed) or in-memory arrays [T]."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise ConfigError(f"{folder}: S-PRESSO data folder does not exist")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in audio_ops.AUDIO_SUFFIXES)
        if not paths:
            raise ConfigError(f"{folder}: no audio files ({', '.join(audio_ops.AUDIO_SUFFIXES)}) in the data folder")
        clips = []
        for path in paths:
            data, rate = audio_ops.read(path)
            mono = audio_ops.resample(torch.from_numpy(data.mean(axis=0)), rate, SAMPLE_RATE_HZ)
            clips.append(Clip(str(path.relative_to(folder)), mono.numpy().astype(np.float32)))
        return clips
    clips = [Clip(f"array{i}", np.asarray(a, dtype=np.float32).reshape(-1)) for i, a in enumerate(source)]
    if not clips:
        raise ConfigError("S-PRESSO data: no clips given")
    return clips


@torch.no_grad()
def extract_latents(model, clips: Sequence[Clip], checkpoint_digest: str, cache_dir: str | os.PathLike | None = None,
                    device: str = "cpu") -> list[np.ndarray]:
    """z of every clip with the frozen stage-1 encoder: per clip [Fz, Dz] float32 (cached by content)."""
    cache = Cache(cache_dir) if cache_dir is not None else None
    model = model.to(device).eval()
    out = []
    for clip in clips:
        key = make_key(kind="spresso-z", checkpoint=checkpoint_digest,
                       clip=audio_ops.content_hash(clip.audio[None], SAMPLE_RATE_HZ))
        z = cache.get_array("spresso-z", key) if cache is not None else None
        if z is None:
            audio = torch.from_numpy(clip.audio)[None].to(device)
            z = model.encode(audio)[0].T.cpu().numpy().astype(np.float32)  # [Fz, Dz]
            if cache is not None:
                cache.put_array("spresso-z", key, z)
        out.append(z)
    return out


def split_frames(latents: Sequence[np.ndarray], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All frame vectors [N, Dz], shuffled and split into (train, held-out) by ``val_fraction``."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"stage 2: val_fraction must be in (0, 1), got {val_fraction}")
    frames = np.concatenate([np.asarray(z) for z in latents])
    perm = np.random.default_rng(seed).permutation(len(frames))
    n_val = max(1, int(round(val_fraction * len(frames))))
    return frames[perm[n_val:]], frames[perm[:n_val]]


@dataclass(frozen=True)
class Stage2Report:
    """MSE per element of the held-out frames for m = 1..M steps (raw z units) and the rates they give."""

    frame_rate_hz: float
    codebook_size: int
    bitrate_kbps_per_step: list[float]
    qinco2_mse_per_step: list[float]
    rq_mse_per_step: list[float]
    train_vectors: int
    val_vectors: int
    z_variance: float


def fit_stage2(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike | Sequence[np.ndarray],
    out_dir: str | os.PathLike,
    config: q.QINCo2Config | None = None,
    train: q.QINCo2TrainConfig | None = None,
    *,
    num_steps: int = 10,
    codebook_size: int = 4096,
    preset: str = "M",
    val_fraction: float = 0.1,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> Stage2Report:
    """Extract z with the stage-1 ``checkpoint``, fit QINCo2 (``config``, else ``preset`` with M and K), save it and
    the report in ``out_dir``; returns the report."""
    from codecbench.codecs.spresso.model import load_stage1

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = train or q.QINCo2TrainConfig()
    model = load_stage1(checkpoint, device)
    digest = file_digest(checkpoint)
    latents = extract_latents(model, load_clips(data), digest, cache_dir, device)
    z_train, z_val = split_frames(latents, val_fraction, train.seed)
    if config is None:
        config = q.QINCo2Config.preset(preset, dim=model.z_dim, num_steps=num_steps, codebook_size=codebook_size)
    if config.dim != model.z_dim:
        raise ConfigError(f"stage 2: QINCo2 dim {config.dim} does not match the checkpoint's z dim {model.z_dim}")
    if len(z_train) < config.codebook_size:
        raise ConfigError(
            f"stage 2: {len(z_train)} training frames is fewer than K = {config.codebook_size} codewords; "
            f"give more audio or a smaller codebook_size"
        )
    np.save(out_dir / "z_train.npy", z_train)
    np.save(out_dir / "z_val.npy", z_val)
    train_t, val_t = torch.from_numpy(z_train), torch.from_numpy(z_val)
    quantizer, history = q.fit_qinco2(train_t, config, train, val_data=val_t, device=device, log=log)
    rq = q.build_rq(train_t, config, kmeans_iters=train.kmeans_iters, seed=train.seed).to(device)
    val_dev = val_t.to(device)
    frame_rate_hz = float(model.z_frame_rate_hz)
    report = Stage2Report(
        frame_rate_hz=frame_rate_hz,
        codebook_size=config.codebook_size,
        bitrate_kbps_per_step=[bitrate_kbps(frame_rate_hz, m, config.codebook_size)
                               for m in range(1, config.num_steps + 1)],
        qinco2_mse_per_step=quantizer.prefix_mse(val_dev, quantizer.encode(val_dev)),
        rq_mse_per_step=rq.prefix_mse(val_dev, rq.encode(val_dev)),
        train_vectors=len(z_train),
        val_vectors=len(z_val),
        z_variance=float(z_val.var()),
    )
    quantizer.save(out_dir / "qinco2.pt", metadata={
        "stage1_checkpoint": str(checkpoint), "stage1_sha256": digest, "frame_rate_hz": frame_rate_hz,
        "time_pool": int(model.time_pool), "bits_per_frame": config.bits_per_vector,
    })
    atomic_write_json(out_dir / "report.json", {
        **asdict(report), "qinco2_config": asdict(config), "train_config": asdict(train),
        "history": asdict(history), "stage1_checkpoint": str(checkpoint), "stage1_sha256": digest,
    })
    return report


def format_report(report: Stage2Report) -> str:
    """A table: m, kbps, QINCo2 MSE, RQ MSE, ratio (held-out frames)."""
    lines = [f"{'m':>3s} {'kbps':>8s} {'QINCo2 mse':>11s} {'RQ mse':>10s} {'QINCo2/RQ':>9s}"]
    for m, (rate, qm, rm) in enumerate(zip(report.bitrate_kbps_per_step, report.qinco2_mse_per_step,
                                           report.rq_mse_per_step), start=1):
        lines.append(f"{m:3d} {rate:8.4f} {qm:11.5g} {rm:10.5g} {qm / rm:9.3f}")
    lines.append(f"frames: {report.train_vectors} train, {report.val_vectors} held out; z variance "
                 f"{report.z_variance:.4g}; frame rate {report.frame_rate_hz:.4g} Hz")
    return "\n".join(lines)


def read_report(out_dir: str | os.PathLike) -> dict:
    path = Path(out_dir) / "report.json"
    if not path.is_file():
        raise ConfigError(f"{path}: no stage-2 report (run codecbench spresso-quant fit-qinco2 first)")
    return json.loads(path.read_text())
