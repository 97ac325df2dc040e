"""Typed records of a run: how a unit ended (:class:`UnitOutcome`).

Imports nothing of codecbench, so every layer (runner, results, status, score) can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

# exceptions that say the environment is wrong (a package or weights file missing, a disk or memory fault), not
# that the codec computed something wrong; both fail the unit and are retried
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (ImportError, OSError, MemoryError)

DONE = "done"
FAILED_CODEC = "failed-codec"  # the codec raised (build, encode, decode) or gave NaN/Inf output
FAILED_ENVIRONMENT = "failed-environment"  # a package, weights file or prepared clip missing; disk or memory faults
OUTCOMES = (DONE, FAILED_CODEC, FAILED_ENVIRONMENT)


def fault_kind(error: BaseException) -> str:
    """``failed-environment`` for an import, OS or memory error, else ``failed-codec``."""
    return FAILED_ENVIRONMENT if isinstance(error, ENVIRONMENT_ERRORS) else FAILED_CODEC


def error_text(error: BaseException) -> str:
    """``TypeName: message`` on one line."""
    return " ".join(f"{type(error).__name__}: {error}".splitlines())


@dataclass(frozen=True)
class CodecFault:
    """Why one item has no decoded audio (``kind``: one of the failed outcomes). ``str()`` is the reason."""

    reason: str
    kind: str = FAILED_CODEC

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class UnitOutcome:
    """How a unit ended: ``done``, or failed with the kind of failure, the first reason and how many items it hit.

    A unit with any codec or environment failure is failed (never done): it is retried up to ``retries`` times and
    again on every rerun. Metric failures are failed rows in a done unit."""

    kind: str = DONE
    reason: str = ""
    failed_items: int = 0

    def __post_init__(self) -> None:
        if self.kind not in OUTCOMES:
            raise ValueError(f"UnitOutcome.kind: {self.kind!r} is not one of {OUTCOMES}")

    @property
    def failed(self) -> bool:
        return self.kind != DONE

    @property
    def status(self) -> str:
        """The store's status word: ``done`` or ``failed``."""
        return "failed" if self.failed else "done"

    @classmethod
    def from_faults(cls, faults: list[CodecFault], items: int) -> UnitOutcome:
        """Done when no item has a fault; else failed (environment when any fault is one) with the first reason."""
        if not faults:
            return cls()
        kind = FAILED_ENVIRONMENT if any(f.kind == FAILED_ENVIRONMENT for f in faults) else FAILED_CODEC
        return cls(kind, f"{faults[0].reason} ({len(faults)} of {items} items)", len(faults))

    @classmethod
    def from_error(cls, error: BaseException, items: int) -> UnitOutcome:
        """A unit that failed as a whole (e.g. its codec could not be built)."""
        return cls(fault_kind(error), error_text(error), items)
