"""One weights directory and one offline switch, shared by every model in codecbench (codecs and metric embeddings).

- Weights directory: ``CODECBENCH_WEIGHTS`` or the ``weights_dir`` config key; default ``~/.cache/codecbench/weights``.
- Offline: ``CODECBENCH_OFFLINE=1`` or ``--offline`` forbids every download. :func:`set_offline` also sets the
  Hugging Face offline variables, which must happen *before* ``laion_clap`` / ``transformers`` are imported
  (otherwise the import retries the hub for minutes).

Every model resolves its exact file with :func:`resolve`; a missing file stops with a message naming the file,
its official source and where to put it.

Identity: every model that loads a file puts the file's sha256 into its identity (the cache keys of what it
produces) through :func:`pretrained_status` / :meth:`WeightsFile.status`; :func:`file_digest` computes it once
per file and process (memoised by path, size and modification time, so a changed file is hashed again). Where a
digest is pinned (the model's own, or a user's), :func:`verify` refuses a file that does not match it
(:class:`~codecbench.bench.core.errors.WeightsChecksumError`, one line naming the file).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from codecbench.bench.core.errors import WeightsChecksumError, WeightsNotFoundError

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


_DIGESTS: dict[tuple[str, int, int], str] = {}
_HUB_HASH = re.compile(r"-([0-9a-f]{8,64})\.[^.]+$")


def file_digest(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """sha256 (hex) of a file: the weights identity in cache keys.

    Computed once per (resolved path, size, modification time) in this process, so asking for it per unit or per
    item costs a ``stat``; a file replaced in place (other size or time) is hashed again.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            while block := handle.read(chunk_bytes):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def folder_digest(folder: str | os.PathLike) -> str:
    """sha256 over the relative names and :func:`file_digest` of every file under ``folder`` (sorted): the identity
    of a checkpoint that is a folder of files."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


def hub_hash_prefix(filename: str) -> str | None:
    """The sha256 prefix a torch.hub-style file name carries (``encodec_24khz-d7cc33bc.th`` -> ``d7cc33bc``), or None.

    torch.hub's ``check_hash`` verifies downloads against exactly this prefix."""
    match = _HUB_HASH.search(filename)
    return match.group(1) if match else None


def verify(path: str | os.PathLike, expected_sha256: str | None, model: str) -> str:
    """The sha256 of ``path``; when ``expected_sha256`` is given (a full digest or a prefix of one, hex), raise
    :class:`WeightsChecksumError` naming the file unless the digest starts with it."""
    digest = file_digest(path)
    if expected_sha256 and not digest.startswith(expected_sha256.strip().lower()):
        label = f"sha256 {expected_sha256}" if len(expected_sha256) == 64 else f"sha256 prefix {expected_sha256}"
        raise WeightsChecksumError(model, path, digest, label)
    return digest


def pretrained_status(path: str | os.PathLike, name: str | None = None) -> str:
    """The weights column and identity of a loaded file: ``pretrained: <name> sha256:<digest>``."""
    return f"pretrained: {name or Path(path).name} sha256:{file_digest(path)}"


def random_init_status(seed: int, detail: str = "") -> str:
    """The weights column and identity of a model at random initialisation: ``random-init (seed=N[, detail])``."""
    return f"random-init (seed={int(seed)}{', ' + detail if detail else ''})"


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
    """Where a model's exact weights file lives: its name, official source, sub-folder of the weights directory, and
    optionally its pinned sha256 (full or a prefix; checked by :meth:`fetch`)."""

    model: str
    filename: str
    source: str
    subdir: str
    sha256: str | None = None

    def path(self, weights_dir: str | None = None) -> Path:
        return _root_dir(weights_dir) / self.subdir / self.filename

    def missing_reason(self, weights_dir: str | None = None) -> str | None:
        """None when the file is present or may be downloaded (online); else the reason (file, source, path)."""
        if self.path(weights_dir).is_file() or not is_offline():
            return None
        return str(WeightsNotFoundError(self.model, self.filename, self.source, self.path(weights_dir)))

    def status(self, weights_dir: str | None = None) -> str:
        """``pretrained: <file> sha256:<digest>`` when the file is present, else ``missing: <file>``."""
        path = self.path(weights_dir)
        return pretrained_status(path, self.filename) if path.is_file() else f"missing: {self.filename}"

    def fetch(self, weights_dir: str | None = None) -> Path:
        """Path of the file, checked against the pinned sha256 if any; downloads it from its official source when
        absent and online."""
        path = self.path(weights_dir)
        if not path.is_file() and not is_offline():
            path.parent.mkdir(parents=True, exist_ok=True)
            import torch.hub  # heavy import only when downloading

            torch.hub.download_url_to_file(self.source, str(path))
        path = resolve(self.model, self.filename, self.source, self.subdir, weights_dir)
        verify(path, self.sha256, self.model)
        return path
