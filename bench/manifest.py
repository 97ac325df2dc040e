"""``manifest.json``: what a run needs to be reproduced and trusted: the resolved config, seed, package versions,
git commit, hardware, timings, weights status of every model, the resampler and downmix policy, the cache folder.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from codecbench.bench.core.cache import atomic_write_json

PACKAGES = (
    "codecbench", "torch", "torchaudio", "numpy", "scipy", "soundfile", "soxr", "av", "pandas", "pyarrow",
    "matplotlib", "encodec", "descript-audio-codec", "laion-clap", "frechet-audio-distance", "pesq", "auraloss",
    "music2latent", "peft", "faiss-cpu", "submitit", "fastapi", "pyloudnorm", "constriction",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_commit() -> str | None:
    """HEAD of the codecbench checkout (with a ``+dirty`` mark), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def hardware(device: str) -> dict[str, Any]:
    import os

    import torch

    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write(path: Path, manifest: dict[str, Any]) -> None:
    atomic_write_json(path, manifest)


COUNTS = ("units", "units_cached", "units_failed", "codec_calls", "metric_computations", "items", "clips_failed",
          "set_computations", "set_cached")  # the run counters in the manifest's ``counts``


def run_manifest(cfg: Any, table: Any, totals: Any, device_name: str, entropy_summary: dict[str, Any],
                 timings_s: dict[str, float], started_at: str) -> dict[str, Any]:
    """The run's manifest, built in this one place: config, seed, versions, commit, hardware, executor, cache,
    evaluation format, weights, unavailable metrics, skipped inputs, degenerate points, entropy coding, failures,
    counts, timings."""
    from codecbench.bench import degenerate
    from codecbench.bench.core import audio, cache, weights
    from codecbench.bench.datasets import skipped_files
    from codecbench.bench.runner import metric_instance

    unavailable = {}
    for spec in cfg.metrics:
        reason = metric_instance(spec, str(cfg.cache_root), device_name).availability()
        if reason:
            unavailable[spec.name] = reason
    weights_status = (
        table[table["codec"] != ""].groupby("codec")["weights"].agg(lambda s: sorted(set(s) - {""})).to_dict()
    )
    return {
        "run": cfg.name,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "hardware": hardware(device_name),
        "executor": cfg.executor.name,
        "cache_dir": str(cfg.cache_root.resolve()),
        "evaluation": {
            "sample_rate_hz": cfg.dataset.sample_rate_hz,
            "channels": cfg.dataset.channels,
            "resampler": audio.RESAMPLER,
            "downmix_policy": "mean of channels" if cfg.dataset.channels == 1 else "none",
            "segment_s": cfg.dataset.segment_s,
        },
        "weights": {"directory": str(weights.weights_dir(cfg.weights_dir)), "offline": weights.is_offline(),
                    "codecs": weights_status},
        "metrics_unavailable": unavailable,
        "inputs_skipped": skipped_files(cfg.dataset),
        "degenerate_points": degenerate.note(table),
        "entropy_coding": entropy_summary,
        "failures": totals.failures,
        "counts": {**{name: totals[name] for name in COUNTS},
                   "cache_entries_failed_verification": cache.mismatches()},
        "timings_s": timings_s,
        "started_at": started_at,
        "finished_at": now(),
    }


def write_run_manifest(cfg: Any, table: Any, totals: Any, device_name: str, entropy_summary: dict[str, Any],
                       timings_s: dict[str, float], started_at: str) -> dict[str, Any]:
    """Build (:func:`run_manifest`) and write ``<run>/manifest.json``; returns it."""
    from codecbench.bench.faults import write_manifest

    manifest = run_manifest(cfg, table, totals, device_name, entropy_summary, timings_s, started_at)
    write_manifest(cfg.run_dir / "manifest.json", manifest)
    return manifest
