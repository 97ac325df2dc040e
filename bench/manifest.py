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
