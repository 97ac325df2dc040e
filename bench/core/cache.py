"""Content-addressed, atomically written cache (decoded audio, metric values, embeddings).

Keys are sha256 over canonical JSON of what determines the content (DESIGN.md): input audio content hash,
model/codec identity (name, version, weights digest), parameters, preprocessing. Files are written to a
temporary name in the same folder and renamed, so a killed run never leaves a half-written entry.

Layout under the cache root: ``<namespace>/<key[:2]>/<key><suffix>``.

Verified reads (nothing is served on trust): a JSON entry is an envelope ``{"cache_format", "namespace", "key",
"digest", "data"}`` and a binary entry (WAV, ``.npy``, ``.npz``) has a sidecar ``<file>.sha256`` holding its
namespace, key and the sha256 of its bytes. A read checks that the entry names the key it was asked for and that
the content still has its digest; any mismatch (truncated, flipped bytes, a valid entry swapped in from another key,
an entry of the older unverified format) is a miss: the caller recomputes and rewrites it, and the first mismatch
of a process is reported on stderr once (:func:`mismatches` counts them all).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
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


CACHE_FORMAT = 2
SIDECAR = ".sha256"
_MISMATCHES: dict[str, int] = {}


def digest_of(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (as :func:`make_key`, for content rather than keys)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def mismatch(path: str | os.PathLike, why: str) -> None:
    """Record a cache entry that failed verification; say so on stderr once per process."""
    if not _MISMATCHES:
        print(f"codecbench: cache entry {path} failed verification ({why}); it is recomputed, as is every other "
              "entry that fails (counted in the manifest)", file=sys.stderr)
    _MISMATCHES[why] = _MISMATCHES.get(why, 0) + 1


def reset_mismatches() -> None:
    """Start a new run's count (and its one notice)."""
    _MISMATCHES.clear()


def mismatches() -> int:
    """How many cache entries failed verification in this process (each one was recomputed, never served)."""
    return sum(_MISMATCHES.values())


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR)


def write_verified(path: str | os.PathLike, data: bytes, namespace: str, key: str) -> Path:
    """Write ``data`` atomically, then its sidecar (namespace, key, sha256): a reader needs both to agree."""
    path = Path(path)
    atomic_write_bytes(path, data)
    atomic_write_json(sidecar_path(path), {"cache_format": CACHE_FORMAT, "namespace": namespace, "key": key,
                                           "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    return path


def read_verified(path: str | os.PathLike, namespace: str | None = None, key: str | None = None) -> bytes | None:
    """The bytes of a binary entry when its sidecar names ``namespace``/``key`` (when given) and its digest
    matches; None (a miss, reported by :func:`mismatch`) otherwise. An absent file is a plain miss."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        mismatch(path, f"unreadable: {error.strerror or error}")
        return None
    try:
        side = json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        mismatch(path, "no readable digest record (older cache format or a partial write)")
        return None
    if not isinstance(side, dict) or side.get("cache_format") != CACHE_FORMAT:
        mismatch(path, "digest record of another format")
        return None
    if (namespace is not None and side.get("namespace") != namespace) or (key is not None and side.get("key") != key):
        mismatch(path, "entry of another key")
        return None
    if hashlib.sha256(data).hexdigest() != side.get("sha256"):
        mismatch(path, "content does not match its digest")
        return None
    return data


def verify_file(path: str | os.PathLike) -> bool:
    """Whether a cache file found by path (report players, listening-test bundles) passes its digest check; the
    key is the file's stem, the namespace its grandparent folder's name."""
    path = Path(path)
    return read_verified(path, path.parent.parent.name, path.name.split(".", 1)[0]) is not None


class Cache:
    """A content-addressed store rooted at ``root``; namespaces keep kinds apart ("decoded", "metrics", ...).
    Every read is verified (key and content digest); see the module docstring."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, namespace: str, key: str, suffix: str) -> Path:
        return self.root / namespace / key[:2] / f"{key}{suffix}"

    # JSON records
    def get_json(self, namespace: str, key: str) -> Any | None:
        path = self.path(namespace, key, ".json")
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            mismatch(path, "unreadable or not JSON")
            return None
        if not isinstance(entry, dict) or entry.get("cache_format") != CACHE_FORMAT or "data" not in entry:
            mismatch(path, "not a verified entry (older cache format or foreign file)")
            return None
        if entry.get("namespace") != namespace or entry.get("key") != key:
            mismatch(path, "entry of another key")
            return None
        if entry.get("digest") != digest_of(entry["data"]):
            mismatch(path, "content does not match its digest")
            return None
        return entry["data"]

    def put_json(self, namespace: str, key: str, obj: Any) -> Path:
        path = self.path(namespace, key, ".json")
        obj = json.loads(json.dumps(obj, default=str))  # what a reader will see, so the digest matches on read
        atomic_write_json(path, {"cache_format": CACHE_FORMAT, "namespace": namespace, "key": key,
                                 "digest": digest_of(obj), "data": obj})
        return path

    # raw bytes (e.g. compressed code streams)
    def get_bytes(self, namespace: str, key: str, suffix: str) -> bytes | None:
        return read_verified(self.path(namespace, key, suffix), namespace, key)

    def put_bytes(self, namespace: str, key: str, suffix: str, data: bytes) -> Path:
        return write_verified(self.path(namespace, key, suffix), data, namespace, key)

    # arrays (embeddings)
    def get_array(self, namespace: str, key: str) -> np.ndarray | None:
        import io

        data = self.get_bytes(namespace, key, ".npy")
        if data is None:
            return None
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError):
            mismatch(self.path(namespace, key, ".npy"), "not a readable array")
            return None

    def put_array(self, namespace: str, key: str, array: np.ndarray) -> Path:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        return self.put_bytes(namespace, key, ".npy", buffer.getvalue())

    # audio (float32 WAV)
    def audio_path(self, namespace: str, key: str) -> Path:
        return self.path(namespace, key, ".wav")

    def get_audio(self, namespace: str, key: str, content_hash: str | None = None,
                  sample_rate_hz: int | None = None) -> np.ndarray | None:
        """The entry's samples [C, T], verified against its digest and, when ``content_hash`` is given (the
        ``decoded_hash`` of a decoded record, a clip's hash), against the hash of its samples at ``sample_rate_hz``."""
        import io

        import soundfile as sf

        path = self.audio_path(namespace, key)
        data = self.get_bytes(namespace, key, ".wav")
        if data is None:
            return None
        try:
            frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception as error:  # libsndfile raises several types for corrupt input
            mismatch(path, f"unreadable audio ({type(error).__name__})")
            return None
        audio = np.ascontiguousarray(frames.T)
        if content_hash is not None:
            from codecbench.bench.core.audio import content_hash as hash_of

            if hash_of(audio, sample_rate_hz or int(rate)) != content_hash:
                mismatch(path, "samples do not match the recorded content hash")
                return None
        return audio

    def has_audio(self, namespace: str, key: str, content_hash: str | None = None,
                  sample_rate_hz: int | None = None) -> bool:
        """Whether a verified entry is there (see :meth:`get_audio`); a failed entry counts as absent."""
        return self.get_audio(namespace, key, content_hash, sample_rate_hz) is not None

    def put_audio(self, namespace: str, key: str, data: np.ndarray, sample_rate_hz: int) -> Path:
        import io

        import soundfile as sf

        audio = np.asarray(data, dtype=np.float32)
        buffer = io.BytesIO()
        sf.write(buffer, audio.T if audio.ndim == 2 else audio, sample_rate_hz, subtype="FLOAT", format="WAV")
        return self.put_bytes(namespace, key, ".wav", buffer.getvalue())
