"""One weights directory and one offline switch, shared by every model in codecbench (codecs and metric embeddings).

- Weights directory: ``CODECBENCH_WEIGHTS`` or the ``weights_dir`` config key; default ``~/.cache/codecbench/weights``.
- Offline: ``CODECBENCH_OFFLINE=1`` or ``--offline`` forbids every download. :func:`set_offline` also sets the
  Hugging Face offline variables, which must happen *before* ``laion_clap`` / ``transformers`` are imported
  (otherwise the import retries the hub for minutes).

Every model resolves its exact file with :func:`resolve`; a missing file stops with a message naming the file,
its official source and where to put it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from codecbench.bench.core.errors import WeightsNotFoundError

ENV_WEIGHTS = "CODECBENCH_WEIGHTS"
ENV_OFFLINE = "CODECBENCH_OFFLINE"
_HF_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


_DIRECTORY: list[Path] = []  # set by use_directory (a run's `weights_dir`), in this process only


def use_directory(path: str | os.PathLike | None) -> None:
    """Make ``path`` this process's weights directory (a run's ``weights_dir`` config key; None: back to
    ``$CODECBENCH_WEIGHTS`` / the user cache). The environment is left as it is."""
    _DIRECTORY.clear()
    if path:
        _DIRECTORY.append(Path(path).expanduser())


def weights_dir(override: str | os.PathLike | None = None) -> Path:
    """The weights directory: ``override`` (an option), else the run's (:func:`use_directory`), else
    ``$CODECBENCH_WEIGHTS``, else the user cache."""
    if override:
        return Path(override).expanduser()
    if _DIRECTORY:
        return _DIRECTORY[0]
    if os.environ.get(ENV_WEIGHTS):
        return Path(os.environ[ENV_WEIGHTS]).expanduser()
    return Path.home() / ".cache" / "codecbench" / "weights"


def is_offline() -> bool:
    """True when downloads are forbidden (``CODECBENCH_OFFLINE`` set to anything but 0/false/empty)."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def set_offline(offline: bool = True) -> None:
    """Switch downloads off (or on) for this process, including the Hugging Face libraries' own switches."""
    if offline:
        os.environ[ENV_OFFLINE] = "1"
        for var in _HF_OFFLINE_VARS:
            os.environ[var] = "1"
    else:
        os.environ.pop(ENV_OFFLINE, None)


def resolve(model: str, filename: str, source: str, subdir: str = "", override: str | os.PathLike | None = None) -> Path:
    """Path of ``filename`` for ``model`` in the weights directory; raise :class:`WeightsNotFoundError` if absent.

    ``source`` is the official download address, quoted in the error. Loaders that may download call
    :func:`is_offline` first and only then let the official loader fetch into :func:`weights_dir`.
    """
    path = weights_dir(override) / subdir / filename
    if not path.is_file():
        raise WeightsNotFoundError(model, filename, source, path)
    return path


def file_digest(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """sha256 of a file (weights identity in cache keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def fetch(model: str, filename: str, url: str, subdir: str = "", override: str | os.PathLike | None = None) -> Path:
    """Like :func:`resolve`, but when the file is absent and downloads are allowed, download ``url`` into the
    weights directory first (official source only). Offline, a missing file raises :class:`WeightsNotFoundError`."""
    try:
        return resolve(model, filename, url, subdir, override)
    except WeightsNotFoundError:
        if is_offline():
            raise
    import torch.hub  # heavy import only when downloading

    path = weights_dir(override) / subdir / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as exc:  # network errors come in many types
        raise WeightsNotFoundError(model, filename, url, path) from exc
    return path


_root_dir = weights_dir  # the methods below take a parameter of that name


@dataclass(frozen=True)
class WeightsFile:
    """Where a model's exact weights file lives: its name, official source, sub-folder of the weights directory."""

    model: str
    filename: str
    source: str
    subdir: str

    def path(self, weights_dir: str | None = None) -> Path:
        return _root_dir(weights_dir) / self.subdir / self.filename

    def missing_reason(self, weights_dir: str | None = None) -> str | None:
        """None when the file is present or may be downloaded (online); else the reason (file, source, path)."""
        if self.path(weights_dir).is_file() or not is_offline():
            return None
        return str(WeightsNotFoundError(self.model, self.filename, self.source, self.path(weights_dir)))

    def fetch(self, weights_dir: str | None = None) -> Path:
        """Path of the file; downloads it from its official source when absent and online."""
        path = self.path(weights_dir)
        if not path.is_file() and not is_offline():
            path.parent.mkdir(parents=True, exist_ok=True)
            import torch.hub  # heavy import only when downloading

            torch.hub.download_url_to_file(self.source, str(path))
        return resolve(self.model, self.filename, self.source, self.subdir, weights_dir)
