"""Typed records of a run, in one place:

- :class:`ResultRow`: one row of a results table (``run``, ``score``, set metrics, failures). Its fields are the
  table's columns, in order, with units in their names; the parquet/CSV schema (:data:`COLUMNS`,
  :func:`column_kinds`) is derived from it.
- :class:`UnitOutcome`: how a unit ended (done, or failed with the kind of failure and the reason).
- :class:`UnitRecord`: what the run store keeps per unit (outcome, rows, counters, attempts).
- :class:`RunStats`: the counters of a unit or a whole run (``RunResult.stats``).
- :class:`RunResult`: what ``api.run`` returns (run folder, results table, counters).

Imports nothing of codecbench, so every layer (runner, results, status, score) can use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAN = math.nan


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One row of a results table. ``run``, ``level``, ``status`` and ``value`` are required; a ``failed`` row
    needs its ``error``. Field order is the table's column order; the annotation gives the column's kind."""

    run: str
    codec: str = ""
    codec_kind: str = ""
    is_anchor: bool = False
    weights: str = ""
    point: str = ""
    point_params: str = ""
    bitrate_kbps: float = NAN
    serialized_kbps: float = NAN
    container_overhead_kbps: float = NAN
    entropy_coded_kbps: float = NAN
    frame_rate_hz: float = NAN
    compression_ratio: float = NAN
    rate_source: str = ""
    params_count: float = NAN
    algorithmic_latency_ms: float = NAN
    encode_rtf: float = NAN
    decode_rtf: float = NAN
    item_id: str = ""
    clip_path: str = ""
    clip_hash: str = ""
    decoded_key: str = ""
    duration_s: float = NAN
    level: str  # "item" or "set"
    metric: str = ""
    unit: str = ""
    value_column: str = ""  # the metric's name with its unit, e.g. si_sdr_db (the wide tables' column)
    higher_is_better: bool = False
    value: float
    status: str  # "ok", "failed", or a metric's own word for an unreliable value
    stage: str = ""  # where a failure happened: load, codec, metric
    error: str = ""
    extras: str = ""  # JSON: what the metric reported with the value
    extras_processing: str = ""  # JSON: what the codec (or the reader of decoded files) did
    seed: int = -1
    # what was done to the input file (bench.datasets.InputRecord)
    input_sample_rate_hz: float = NAN
    input_resampler: str = ""
    input_channels: float = NAN
    input_downmix: str = ""
    input_padded_s: float = NAN
    input_dropped_s: float = NAN
    input_truncation_suspected: bool = False
    input_header_frames: float = NAN
    input_read_frames: float = NAN
    input_note: str = ""
    # how the pair was prepared for the metrics (bench.pairing.PairRecord)
    length_policy: str = ""
    length_trimmed_s: float = NAN
    length_padded_s: float = NAN
    lag_decision: str = ""
    lag_scope: str = ""
    lag_samples: float = NAN
    lag_candidate_samples: float = NAN
    lag_peak_correlation: float = NAN
    lag_peak_z: float = NAN
    lag_ms: float = NAN
    decoded_hash: str = ""
    degenerate: str = ""  # bench.degenerate: output identical across operating points

    def __post_init__(self) -> None:
        if self.level not in ("item", "set"):
            raise ValueError(f"ResultRow.level: {self.level!r} is not 'item' or 'set'")
        if self.status == "failed" and not str(self.error):
            raise ValueError(f"ResultRow: a failed row needs its error ({self.codec} {self.point} {self.item_id} "
                             f"{self.metric})")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], strict: bool = True) -> ResultRow:
        """A row from a mapping of column -> value. ``strict``: a key that is no column is an error (a misspelt
        column); otherwise such keys are left out (records written by older versions carried helper keys)."""
        unknown = [k for k in values if k not in _FIELD_NAMES]
        if unknown and strict:
            raise ValueError(f"ResultRow: unknown column(s) {sorted(unknown)}")
        try:
            return cls(**{k: v for k, v in values.items() if k in _FIELD_NAMES})
        except TypeError as error:  # a required field missing
            raise ValueError(f"ResultRow: {error}") from None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COLUMNS}

    def as_tuple(self) -> tuple:
        return tuple(getattr(self, name) for name in COLUMNS)

    def replace(self, **changes: Any) -> ResultRow:
        return dataclasses.replace(self, **changes)


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ResultRow))
_FIELD_NAMES = frozenset(COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(ResultRow)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def column_kinds() -> dict[str, str]:
    """Column -> ``float`` | ``int`` | ``bool`` | ``str``, from :class:`ResultRow`'s annotations (the table schema)."""
    return {f.name: str(f.type) for f in dataclasses.fields(ResultRow)}


def rows_of(values: Iterable[ResultRow | Mapping[str, Any]]) -> list[ResultRow]:
    """ResultRows from rows or mappings (strictly: unknown columns are errors)."""
    return [v if isinstance(v, ResultRow) else ResultRow.from_mapping(v) for v in values]

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


@dataclass
class RunStats:
    """Counters of one unit (stored in its record) or of a whole run (``RunResult.stats``); read as attributes, or
    by name (``stats["codec_calls"]``). ``failures`` (run level): the failed units and inputs, for the summary."""

    units: int = 0
    units_cached: int = 0
    units_failed: int = 0
    items: int = 0
    clips_failed: int = 0  # input files that could not be loaded (failed rows, not retried)
    codec_calls: int = 0
    codec_items: int = 0
    cached_items: int = 0
    metric_computations: int = 0
    cached_metric_values: int = 0
    failed_items: int = 0
    set_computations: int = 0
    set_cached: int = 0
    seconds: float = 0.0
    failures: dict[str, Any] = field(default_factory=lambda: {"units": [], "inputs": []})

    def __getitem__(self, name: str) -> Any:
        if name not in _STATS_FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in _STATS_FIELDS else default

    def counts(self) -> dict[str, Any]:
        """The counters without ``failures`` (the manifest's ``counts``; a unit record's ``stats``)."""
        return {name: getattr(self, name) for name in _STATS_FIELDS if name != "failures"}

    def add(self, counts: Mapping[str, Any]) -> None:
        """Add a unit's counters (a mapping as its record or executor result holds them)."""
        for name in ("codec_calls", "codec_items", "cached_items", "metric_computations", "cached_metric_values",
                     "failed_items", "set_computations", "set_cached"):
            value = counts.get(name, 0)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(self, name, getattr(self, name) + int(value))


_STATS_FIELDS = tuple(f.name for f in dataclasses.fields(RunStats))


@dataclass
class RunResult:
    """What ``api.run`` returns: the run folder, its results table (a pandas DataFrame of :class:`ResultRow`
    columns) and the run's counters (also readable by name: ``result.stats["codec_calls"]``)."""

    run_dir: Any  # pathlib.Path
    table: Any  # pandas.DataFrame
    stats: RunStats


@dataclass(frozen=True)
class UnitRecord:
    """What the run store keeps for one unit: its outcome, every row it computed (also when it failed), its
    counters, attempts so far, the codec's weights status and the item metrics unavailable when it ran."""

    outcome: UnitOutcome
    rows: tuple[ResultRow, ...] = ()
    stats: RunStats = field(default_factory=RunStats)
    attempts: int = 0  # failed attempts so far (0 for a unit done at its first attempt)
    weights: str = ""
    metrics_unavailable: tuple[str, ...] = ()
    traceback: str = ""
    decoded: tuple[dict[str, Any], ...] = ()  # per decoded item: its columns without a metric (for set metrics)

    def to_json(self) -> dict[str, Any]:
        """The store's JSON body (``status`` is ``done`` or ``failed``; ``outcome`` the kind)."""
        body: dict[str, Any] = {"status": self.outcome.status, "outcome": self.outcome.kind,
                                "rows": [row.as_dict() for row in self.rows], "stats": self.stats.counts(),
                                "weights": self.weights, "metrics_unavailable": list(self.metrics_unavailable),
                                "decoded": [dict(d) for d in self.decoded]}
        if self.outcome.failed:
            body.update(error=self.outcome.reason, attempts=self.attempts)
        if self.traceback:
            body["traceback"] = self.traceback
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UnitRecord:
        """A stored record back (rows leniently: keys that are no column are left out)."""
        status = body.get("status", "done")
        kind = body.get("outcome") or (DONE if status == "done" else FAILED_CODEC)
        outcome = UnitOutcome(kind if kind in OUTCOMES else FAILED_CODEC, str(body.get("error", "")))
        stats = RunStats(**{k: v for k, v in (body.get("stats") or {}).items() if k in _STATS_FIELDS and k != "failures"})
        return cls(outcome, tuple(ResultRow.from_mapping(r, strict=False) for r in body.get("rows", [])), stats,
                   int(body.get("attempts", 0)), str(body.get("weights", "")),
                   tuple(body.get("metrics_unavailable", [])), str(body.get("traceback", "")),
                   tuple(d for d in body.get("decoded", []) if isinstance(d, dict)))
