"""Content-addressed, atomically written cache (decoded audio, metric values, embeddings).

Keys are sha256 over canonical JSON of what determines the content (DESIGN.md): input audio content hash,
model/codec identity (name, version, weights digest), parameters, preprocessing. Files are written to a
temporary name in the same folder and renamed, so a killed run never leaves a half-written entry.

Layout under the cache root: ``<namespace>/<key[:2]>/<key><suffix>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def make_key(**parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts`` (sorted keys, no whitespace; non-JSON values via ``str``)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 less the umask); mkstemp's own is 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename; the file gets
    the usual mode of a new file (as ``results.parquet`` does), not the temporary file's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())


class Cache:
    """A content-addressed store rooted at ``root``; namespaces keep kinds apart ("decoded", "metrics", ...)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, namespace: str, key: str, suffix: str) -> Path:
        return self.root / namespace / key[:2] / f"{key}{suffix}"

    # JSON records
    def get_json(self, namespace: str, key: str) -> Any | None:
        path = self.path(namespace, key, ".json")
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # unreadable entry: treated as a miss and rewritten

    def put_json(self, namespace: str, key: str, obj: Any) -> Path:
        path = self.path(namespace, key, ".json")
        atomic_write_json(path, obj)
        return path

    # arrays (embeddings)
    def get_array(self, namespace: str, key: str) -> np.ndarray | None:
        path = self.path(namespace, key, ".npy")
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put_array(self, namespace: str, key: str, array: np.ndarray) -> Path:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        path = self.path(namespace, key, ".npy")
        atomic_write_bytes(path, buffer.getvalue())
        return path

    # audio (float32 WAV)
    def audio_path(self, namespace: str, key: str) -> Path:
        return self.path(namespace, key, ".wav")

    def get_audio(self, namespace: str, key: str) -> np.ndarray | None:
        path = self.audio_path(namespace, key)
        if not path.is_file():
            return None
        from codecbench.bench.core import audio

        try:
            data, _ = audio.read(path)
        except Exception:
            return None
        return data

    def put_audio(self, namespace: str, key: str, data: np.ndarray, sample_rate_hz: int) -> Path:
        from codecbench.bench.core import audio

        path = self.audio_path(namespace, key)
        audio.write(path, data, sample_rate_hz)  # atomic: temp name + rename
        return path
