"""S-PRESSO stage 2: extract z with the frozen stage-1 encoder (cached), fit QINCo2 offline, report MSE per m.

Shapes: T samples (48 kHz), Dz z dims, Fz z frames, N frame vectors, M QINCo2 steps.

One training vector = one z frame [Dz] (paper-notes section 5.1). ``fit_stage2`` writes into its output folder:

- ``qinco2.pt``: the quantiser (:meth:`QINCo2.save`), with metadata: stage-1 checkpoint path and sha256, z frame
  rate, codebook size, bits per frame;
- ``report.json``: MSE per number of steps m = 1..M on the held-out frames for QINCo2 and for plain RQ (same
  k-means codebooks, no networks) with the rate each m gives, plus the training history;
- ``MODEL_CARD.md``: data, epochs, held-out MSE per m against RQ, what was kept (QINCo2 or RQ) and why;
- ``qinco2_resume.pt``: written after every epoch; rerunning the same command resumes;
- ``z_train.npy`` / ``z_val.npy``: the frame vectors [N, Dz] used (held-out = whole clips) (e.g. for ``bench/benchmarks/qinco2_vs_faiss.py``).

z of every clip is cached in ``cache_dir`` under ``spresso-z/``, keyed by the stage-1 checkpoint's sha256 and the
clip's content hash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
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


def clip_count(source: str | os.PathLike | Sequence[np.ndarray]) -> int:
    """How many clips :func:`iter_clips` yields (file names only; no audio is read)."""
    return len(_clip_paths(source)) if isinstance(source, (str, os.PathLike)) else len(source)


def _clip_paths(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: S-PRESSO data folder does not exist")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in audio_ops.AUDIO_SUFFIXES)
    if not paths:
        raise ConfigError(f"{folder}: no audio files ({', '.join(audio_ops.AUDIO_SUFFIXES)}) in the data folder")
    return paths


def iter_clips(source: str | os.PathLike | Sequence[np.ndarray], indices: Sequence[int] | None = None):
    """Whole clips one at a time (only the current one in memory) from a folder of audio files (resampled to
    48 kHz, mean-downmixed; a folder written by ``spresso prepare-data`` is read as is) or in-memory arrays [T].
    ``indices``: only these clips (e.g. one rank's share)."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        paths = _clip_paths(folder)
        for i in range(len(paths)) if indices is None else indices:
            data, rate = audio_ops.read(paths[i])
            mono = audio_ops.resample(torch.from_numpy(data.mean(axis=0)), rate, SAMPLE_RATE_HZ)
            yield Clip(str(paths[i].relative_to(folder)), mono.numpy().astype(np.float32))
        return
    if not len(source):
        raise ConfigError("S-PRESSO data: no clips given")
    for i in range(len(source)) if indices is None else indices:
        yield Clip(f"array{i}", np.asarray(source[i], dtype=np.float32).reshape(-1))


def load_clips(source: str | os.PathLike | Sequence[np.ndarray]) -> list[Clip]:
    """All clips of :func:`iter_clips` in memory (for small evaluation sets; training streams them)."""
    return list(iter_clips(source))


@torch.no_grad()
def extract_latents(model, clips: Iterable[Clip], checkpoint_digest: str, cache_dir: str | os.PathLike | None = None,
                    device: str = "cpu", seconds: list[float] | None = None) -> list[np.ndarray]:
    """z of every clip with the frozen stage-1 encoder: per clip [Fz, Dz] float32 (cached by content). ``clips``
    may be a stream (:func:`iter_clips`): each clip's audio is dropped once encoded; ``seconds`` (a list) gets
    each clip's duration appended."""
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
        if seconds is not None:
            seconds.append(len(clip.audio) / SAMPLE_RATE_HZ)
    return out


def split_frames(latents: Sequence[np.ndarray], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip-disjoint split of the frame vectors into (train [N, Dz], held-out [N_val, Dz]).

    Whole clips are held out (shuffled by ``seed``) until they hold at least ``val_fraction`` of the frames, so no
    held-out frame has a neighbour frame of the same clip in the training set. Needs at least 2 clips.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"stage 2: val_fraction must be in (0, 1), got {val_fraction}")
    latents = [np.asarray(z) for z in latents]
    if len(latents) < 2:
        raise ConfigError(f"stage 2: a clip-disjoint held-out split needs at least 2 clips, got {len(latents)}")
    total = sum(len(z) for z in latents)
    order = np.random.default_rng(seed).permutation(len(latents))
    val_idx, held = [], 0
    for i in order[:-1]:  # at least one clip stays for training
        if held >= val_fraction * total:
            break
        val_idx.append(int(i))
        held += len(latents[i])
    val_set = set(val_idx)
    train = np.concatenate([z for i, z in enumerate(latents) if i not in val_set])
    val = np.concatenate([latents[i] for i in sorted(val_set)])
    return train, val


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
    selected: str = "qinco2"  # "rq" when the trained QINCo2 was worse on held-out frames (RQ codebooks kept)
    best_epoch: int = 0
    note: str = ""
    measured_kbps_per_step: list[float] = field(default_factory=list)  # from the z frames of the clips (codes sent)


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
    durations_s: list[float] = []  # clips are streamed: one clip's audio in memory at a time, z kept
    latents = extract_latents(model, iter_clips(data), digest, cache_dir, device, seconds=durations_s)
    total_s = sum(durations_s)
    total_frames = sum(len(z) for z in latents)  # z frames sent, the padded last frame of every clip included
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
    quantizer, history = q.fit_qinco2(train_t, config, train, val_data=val_t, device=device, log=log,
                                      resume_path=out_dir / "qinco2_resume.pt")
    val_dev = val_t.to(device)
    frame_rate_hz = float(model.z_frame_rate_hz)
    report = Stage2Report(
        frame_rate_hz=frame_rate_hz,
        codebook_size=config.codebook_size,
        bitrate_kbps_per_step=[bitrate_kbps(frame_rate_hz, m, config.codebook_size)
                               for m in range(1, config.num_steps + 1)],
        qinco2_mse_per_step=quantizer.prefix_mse(val_dev, quantizer.encode(val_dev)),
        rq_mse_per_step=history.rq_val_mse_per_step,  # k-means RQ, same codebook seed, scored in the fit
        train_vectors=len(z_train),
        val_vectors=len(z_val),
        z_variance=float(z_val.var()),
        selected=history.selected,
        best_epoch=history.best_epoch,
        note=history.note,
        measured_kbps_per_step=[total_frames * m * float(np.log2(config.codebook_size)) / total_s / 1000
                                for m in range(1, config.num_steps + 1)],
    )
    quantizer.save(out_dir / "qinco2.pt", metadata={
        "stage1_checkpoint": str(checkpoint), "stage1_sha256": digest, "frame_rate_hz": frame_rate_hz,
        "time_pool": int(model.time_pool), "bits_per_frame": config.bits_per_vector,
        "selected": history.selected, "best_epoch": history.best_epoch, "note": history.note,
        "val_mse_per_step": report.qinco2_mse_per_step, "rq_val_mse_per_step": report.rq_mse_per_step,
    })
    atomic_write_json(out_dir / "report.json", {
        **asdict(report), "qinco2_config": asdict(config), "train_config": asdict(train),
        "history": asdict(history), "stage1_checkpoint": str(checkpoint), "stage1_sha256": digest,
    })
    (out_dir / "MODEL_CARD.md").write_text(model_card(report, config, train, history, checkpoint, digest,
                                                      file_digest(out_dir / "qinco2.pt"), data))
    return report


def model_card(report: Stage2Report, config: q.QINCo2Config, train: q.QINCo2TrainConfig, history: q.FitHistory,
               checkpoint, stage1_digest: str, qinco2_digest: str, data) -> str:
    """A Markdown model card for one stage-2 fit: data, steps, held-out MSE per m against RQ, what was kept."""
    source = str(data) if isinstance(data, (str, os.PathLike)) else f"{len(data)} in-memory clips"
    epochs = len(history.train_loss)
    iters = epochs * max(1, -(-(train.vectors_per_epoch or report.train_vectors) // train.batch_size))
    lines = [
        f"# QINCo2 model card: qinco2.pt (sha256 {qinco2_digest[:12]})", "",
        f"- stage-1 checkpoint: {checkpoint} (sha256 {stage1_digest[:12]}); z frame rate "
        f"{report.frame_rate_hz:.4g} Hz",
        f"- data: {source}; {report.train_vectors} training frames, {report.val_vectors} held-out frames "
        "(whole clips held out)",
        f"- model: M = {config.num_steps}, K = {config.codebook_size}, L = {config.num_blocks}, "
        f"d_e = {config.embed_dim}, d_h = {config.hidden_dim}, A = {config.num_candidates}, B = {config.beam_size}",
        f"- training: {epochs} of {train.epochs} epochs ({iters} optimiser steps, batch {train.batch_size}, "
        f"lr {train.lr:g}){'; stopped early' if history.stopped_early else ''}",
        f"- kept: **{history.selected}** — {history.note}", "",
        "Held-out MSE per element (raw z units) and the rate each m gives (frame rate x m x log2 K):", "",
        format_report(report), "",
    ]
    if history.selected == "rq":
        lines.append("**The trained QINCo2 was worse than plain residual quantisation on held-out frames; this file "
                     "holds the RQ codebooks (networks zero).**")
    return "\n".join(lines) + "\n"


def format_report(report: Stage2Report) -> str:
    """A table: m, kbps (frame rate x m x log2 K), measured kbps (codes of the clips, padded last frames
    included), QINCo2 MSE, RQ MSE, ratio (held-out frames)."""
    measured = report.measured_kbps_per_step or [float("nan")] * len(report.bitrate_kbps_per_step)
    lines = [f"{'m':>3s} {'kbps':>8s} {'measured':>8s} {'QINCo2 mse':>11s} {'RQ mse':>10s} {'QINCo2/RQ':>9s}"]
    for m, (rate, got, qm, rm) in enumerate(zip(report.bitrate_kbps_per_step, measured, report.qinco2_mse_per_step,
                                                report.rq_mse_per_step), start=1):
        lines.append(f"{m:3d} {rate:8.4f} {got:8.4f} {qm:11.5g} {rm:10.5g} {qm / rm:9.3f}")
    lines.append(f"frames: {report.train_vectors} train, {report.val_vectors} held out (other clips); z variance "
                 f"{report.z_variance:.4g}; frame rate {report.frame_rate_hz:.4g} Hz")
    if report.note:
        lines.append(f"selection: {report.note}")
    return "\n".join(lines)


def read_report(out_dir: str | os.PathLike) -> dict:
    path = Path(out_dir) / "report.json"
    if not path.is_file():
        raise ConfigError(f"{path}: no stage-2 report (run codecbench spresso-quant fit-qinco2 first)")
    return json.loads(path.read_text())
