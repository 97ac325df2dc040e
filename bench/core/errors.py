"""Project exceptions. Each names the file, key or value at fault, the problem, and the valid choices.

A leaf module: every other part of codecbench may import it, it imports nothing of ours.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CodecbenchError(Exception):
    """Base class of every error codecbench raises on purpose (the CLI prints these as one line)."""


class ConfigError(CodecbenchError):
    """A configuration key or value is wrong. The message names the key path, e.g. ``codecs[1].grid.bitrate_kbps``."""


class AudioInputError(CodecbenchError):
    """An input audio file cannot be used. The message names the file and the problem."""

    def __init__(self, path: object, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnknownNameError(CodecbenchError, KeyError):
    """An unknown codec, metric or executor name; the message lists the known names and the closest match."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} '{name}'.{hint} Known: {', '.join(known) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class MissingDependencyError(CodecbenchError, ImportError):
    """An optional package is needed; the message gives the install line."""

    def __init__(self, what: str, package: str, install: str):
        self.package = package
        super().__init__(f"{what} needs the package '{package}', which is not installed. Install it with: {install}")


class WeightsNotFoundError(CodecbenchError, FileNotFoundError):
    """A model's weights file is absent and downloading is not allowed (offline) or failed."""

    def __init__(self, model: str, filename: str, source: str, expected_path: object):
        self.model, self.filename, self.source, self.expected_path = model, filename, source, str(expected_path)
        super().__init__(
            f"weights for {model} not found: expected the file '{filename}' at {expected_path}. "
            f"Official source: {source}. Download it there (or unset CODECBENCH_OFFLINE to let the official "
            f"loader fetch it into the weights directory)."
        )

    def __str__(self) -> str:  # OSError would format its constructor arguments as errno/strerror
        return self.args[0]


class WeightsChecksumError(CodecbenchError):
    """A weights file's sha256 differs from the digest pinned for it: the file is not the one the model expects."""

    def __init__(self, model: str, path: object, digest: str, expected: str):
        self.model, self.path, self.digest, self.expected = model, str(path), digest, expected
        super().__init__(
            f"{self.path}: sha256 {digest} does not match the {expected} pinned for {model}; the file is damaged or "
            "not the expected release (delete it to fetch it again, or pin the digest of the file you mean to use)"
        )


class MetricFailure(CodecbenchError):
    """A metric cannot score this item (e.g. PESQ on a silent reference). Recorded with its reason, never as 0/NaN."""
