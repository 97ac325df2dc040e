"""Run configuration: a YAML file -> a validated, immutable :class:`RunConfig`.

Every error names the key path (``codecs[1].grid.bitrate_kbps``), the problem and the valid choices; unknown
keys and unknown codec or metric names suggest the closest match. Operating points are validated against each
codec's declared parameters without constructing the codec (no weights are loaded to check a config).

Example (the demo's config is ``bench/configs/demo.yaml``)::

    name: my-run
    seed: 0
    dataset: {path: data/sfx, sample_rate_hz: 48000, channels: 1, segment_s: 5.0}
    codecs:
      - name: opus
        grid: {bitrate_kbps: [6, 12, 24]}
      - name: lowpass_3k5
    metrics: [si_sdr, mel_distance]
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from codecbench.bench import validate
from codecbench.bench.core.errors import CodecbenchError, ConfigError
from codecbench.bench.datasets import DatasetSpec
from codecbench.bench.pairing import AlignmentSpec, check_alignment, check_length_policy
from codecbench.codecs.base import OperatingPoint


@dataclass(frozen=True)
class CodecSpec:
    """One codec of the run: its registry name, constructor options and operating points."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    points: tuple[OperatingPoint, ...] = ()


@dataclass(frozen=True)
class MetricSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutorSpec:
    name: str = "local"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    name: str
    dataset: DatasetSpec
    codecs: tuple[CodecSpec, ...]
    metrics: tuple[MetricSpec, ...] = (MetricSpec("si_sdr"), MetricSpec("mel_distance"))
    seed: int = 0
    output: str = ""  # run folder; default results/<name>
    cache_dir: str = ""  # default: <output>/../.cache (shared by the runs of one results root)
    device: str = "auto"
    weights_dir: str | None = None
    batch_size: int = 8
    shard_size: int = 8
    retries: int = 1
    entropy_fit_fraction: float = 0.5  # items used to fit the entropy models (code-stream codecs)
    executor: ExecutorSpec = ExecutorSpec()
    report: bool = True
    alignment: AlignmentSpec = AlignmentSpec()  # off by default: no lag search (bench/pairing.py)
    length_policy: str = "trim"  # trim both signals to their common length, or pad the decoded one

    @property
    def run_dir(self) -> Path:
        return Path(self.output or f"results/{self.name}")

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else self.run_dir.parent / ".cache"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML-able) of the resolved config."""
        out = asdict(self)
        out["codecs"] = [
            {"name": c.name, "options": dict(c.options), "points": [p.as_dict() for p in c.points]} for c in self.codecs
        ]
        return out


_TOP_KEYS = {f.name for f in fields(RunConfig)}
_DATASET_KEYS = {f.name for f in fields(DatasetSpec)}
_CODEC_KEYS = {"name", "options", "grid", "points"}
_METRIC_KEYS = {"name", "options"}
_EXECUTOR_KEYS = {"name", "workers", "options"}
DEVICES = ("cpu", "cuda", "auto")


def _check_keys(mapping: Any, allowed: set[str], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(mapping).__name__} {validate._short(mapping)}")
    for key in mapping:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings, got {validate._short(key)}")
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where}: unknown key '{key}'.{hint} Valid keys: {', '.join(sorted(allowed))}")


def _typed(value: Any, kind: type, where: str, positive: bool = False) -> Any:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {validate._short(value)}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: expected a number, got {validate._short(value)}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {validate._short(value)}")
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {validate._short(value)}")
    if positive and value <= 0:
        raise ConfigError(f"{where}: must be positive, got {value!r}")
    return kind(value)


# Sane ranges (stated in the errors): wider would only produce empty tables, huge allocations or divisions by 0.
SAMPLE_RATE_RANGE_HZ = (1_000, 384_000)
SEGMENT_RANGE_S = (0.1, 3600.0)


def _dataset(raw: Any, base_dir: Path) -> DatasetSpec:
    _check_keys(raw, _DATASET_KEYS, "dataset")
    if "path" not in raw:
        raise ConfigError("dataset: missing key 'path' (a folder, a .csv manifest, or builtin:demo)")
    path = validate.text(raw["path"], "dataset.path")
    if not path.startswith("builtin:") and not Path(path).expanduser().is_absolute():
        path = str(base_dir / path)
    kwargs: dict[str, Any] = {"path": path}
    if "sample_rate_hz" in raw:
        kwargs["sample_rate_hz"] = validate.number(raw["sample_rate_hz"], "dataset.sample_rate_hz", integer=True,
                                                   low=SAMPLE_RATE_RANGE_HZ[0], high=SAMPLE_RATE_RANGE_HZ[1])
    if "channels" in raw:
        kwargs["channels"] = _typed(raw["channels"], int, "dataset.channels", True)
    if "max_segments_per_clip" in raw:
        kwargs["max_segments_per_clip"] = validate.number(raw["max_segments_per_clip"], "dataset.max_segments_per_clip",
                                                          integer=True, low=1, high=100_000)
    if raw.get("segment_s") is not None:
        kwargs["segment_s"] = float(validate.number(raw["segment_s"], "dataset.segment_s",
                                                    low=SEGMENT_RANGE_S[0], high=SEGMENT_RANGE_S[1]))
    elif "segment_s" in raw:
        kwargs["segment_s"] = None
    if "pad_tolerance" in raw:
        tolerance = _typed(raw["pad_tolerance"], float, "dataset.pad_tolerance")
        if not 0 <= tolerance < 1:
            raise ConfigError(f"dataset.pad_tolerance: must be in [0, 1), got {tolerance}")
        kwargs["pad_tolerance"] = tolerance
    if raw.get("max_clips") is not None:
        kwargs["max_clips"] = validate.number(raw["max_clips"], "dataset.max_clips", integer=True, low=1, high=10**7)
    if kwargs.get("channels", 1) not in (1, 2):
        raise ConfigError(f"dataset.channels: 1 (mono) or 2 (stereo), got {kwargs['channels']}")
    return DatasetSpec(**kwargs)


MAX_POINTS = 10_000  # operating points of one codec entry (a grid's product)


def _name(raw: Any, where: str, kind: str) -> str:
    if "name" not in raw:
        raise ConfigError(f"{where}: missing key 'name' (a {kind} name)")
    return validate.text(raw["name"], f"{where}.name", max_chars=200)


def _codec(raw: Any, where: str) -> CodecSpec:
    from codecbench.codecs import registry

    if isinstance(raw, str):
        raw = {"name": raw}
    _check_keys(raw, _CODEC_KEYS, where)
    name = _name(raw, where, "codec")
    try:
        cls = registry.get(name)
    except CodecbenchError as error:
        raise ConfigError(f"{where}.name: {error}") from None
    from codecbench.codecs.base import Codec

    options = validate.options(raw.get("options"), cls, Codec, f"{where}.options", name)
    if "grid" in raw and "points" in raw:
        raise ConfigError(f"{where}: give either 'grid' or 'points', not both")
    if "grid" in raw:
        grid = raw["grid"]
        _check_keys(grid, {p.name for p in cls.params}, f"{where}.grid")
        axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
        total = 1
        for key, values in axes.items():
            if not values:
                raise ConfigError(f"{where}.grid.{key}: empty list")
            for index, value in enumerate(values):
                validate.scalar(value, f"{where}.grid.{key}[{index}]")
            total *= len(values)
            if total > MAX_POINTS:
                raise ConfigError(f"{where}.grid: more than {MAX_POINTS} operating points")
        defaults = cls.default_points[0] if cls.default_points else {}
        param_sets = [
            {**{k: v for k, v in defaults.items() if k not in axes}, **dict(zip(axes, combo))}
            for combo in itertools.product(*axes.values())
        ]
    elif "points" in raw:
        if not isinstance(raw["points"], list) or not raw["points"]:
            raise ConfigError(f"{where}.points: expected a non-empty list of parameter mappings")
        param_sets = raw["points"]
    else:
        param_sets = list(cls.default_points)
    points = []
    for index, params in enumerate(param_sets):
        if not isinstance(params, Mapping):
            raise ConfigError(f"{where}.points[{index}]: expected a mapping, got {validate._short(params)}")
        validate.string_keys(params, f"{where}.points[{index}]")
        for key, value in params.items():
            validate.scalar(value, f"{where}.points[{index}].{key}")
        try:
            points.append(cls.point(**params))
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        except (TypeError, ValueError, OverflowError) as error:  # a value the codec's parameter cannot take
            raise ConfigError(f"{where}.points[{index}]: {params!r} is not a valid operating point ({error})") from None
    if len(set(points)) != len(points):
        raise ConfigError(f"{where}: the same operating point appears twice")
    if len(points) > MAX_POINTS:
        raise ConfigError(f"{where}.points: more than {MAX_POINTS} operating points")
    return CodecSpec(name=name, options=options, points=tuple(points))


def _metric(raw: Any, where: str) -> MetricSpec:
    from codecbench.bench.metrics import registry

    if isinstance(raw, str):
        raw = {"name": raw}
    _check_keys(raw, _METRIC_KEYS, where)
    name = _name(raw, where, "metric")
    try:
        cls = registry.get(name)
    except CodecbenchError as error:
        raise ConfigError(f"{where}.name: {error}") from None
    from codecbench.bench.metrics.base import Metric

    return MetricSpec(name=name, options=validate.options(raw.get("options"), cls, Metric, f"{where}.options", name))


def _executor(raw: Any) -> ExecutorSpec:
    from codecbench.bench.executors import EXECUTORS

    if isinstance(raw, str):
        raw = {"name": raw}
    _check_keys(raw, _EXECUTOR_KEYS, "executor")
    name = validate.text(raw.get("name", "local"), "executor.name", max_chars=200)
    if name not in EXECUTORS:
        close = difflib.get_close_matches(name, list(EXECUTORS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"executor.name: unknown executor '{name}'.{hint} Known: {', '.join(EXECUTORS)}")
    options = raw.get("options") or {}
    _check_keys(options, set(options) if isinstance(options, Mapping) else set(), "executor.options")
    options = dict(options)
    if "workers" in raw:
        options["workers"] = validate.number(raw["workers"], "executor.workers", integer=True, low=1, high=1024)
    return ExecutorSpec(name=name, options=options)


def parse(raw: Any, base_dir: str | Path = ".") -> RunConfig:
    """Validate a config mapping (paths relative to ``base_dir``) into a :class:`RunConfig`."""
    base_dir = Path(base_dir)
    if raw is None:
        raise ConfigError("the config is empty")
    _check_keys(raw, _TOP_KEYS, "config (top level)")
    validate.depth(raw)
    for key in ("name", "dataset", "codecs"):
        if key not in raw:
            raise ConfigError(f"config (top level): missing key '{key}'")
    name = validate.run_name(raw["name"])
    if not isinstance(raw["codecs"], list) or not raw["codecs"]:
        raise ConfigError("codecs: expected a non-empty list")
    codecs = tuple(_codec(c, f"codecs[{i}]") for i, c in enumerate(raw["codecs"]))
    names = [c.name for c in codecs]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"codecs: {', '.join(twice)} appears twice; put all its points in one entry")
    kwargs: dict[str, Any] = {"name": name, "dataset": _dataset(raw["dataset"], base_dir), "codecs": codecs}
    if "metrics" in raw:
        if not isinstance(raw["metrics"], list):
            raise ConfigError("metrics: expected a list of metric names")
        if not raw["metrics"]:
            raise ConfigError("metrics: empty list; name at least one metric (or leave the key out for the defaults)")
        metrics = tuple(_metric(m, f"metrics[{i}]") for i, m in enumerate(raw["metrics"]))
        metric_names = [m.name for m in metrics]
        if len(set(metric_names)) != len(metric_names):
            twice = sorted({n for n in metric_names if metric_names.count(n) > 1})
            raise ConfigError(f"metrics: {', '.join(twice)} appears twice (each metric once)")
        kwargs["metrics"] = metrics
    for key, low, high in (("seed", 0, 2**32 - 1), ("batch_size", 1, 4096), ("shard_size", 1, 100_000),
                           ("retries", 0, 100)):
        if key in raw:
            kwargs[key] = validate.number(raw[key], key, integer=True, low=low, high=high)
    if "entropy_fit_fraction" in raw:
        fraction = _typed(raw["entropy_fit_fraction"], float, "entropy_fit_fraction")
        if not 0 < fraction < 1:
            raise ConfigError(f"entropy_fit_fraction: must be in (0, 1), got {fraction}")
        kwargs["entropy_fit_fraction"] = fraction
    for key in ("output", "cache_dir", "weights_dir"):
        if raw.get(key) is not None:
            value = validate.text(raw[key], key)
            kwargs[key] = value if Path(value).expanduser().is_absolute() else str(base_dir / value)
    if "device" in raw:
        if not isinstance(raw["device"], str) or raw["device"] not in DEVICES:
            raise ConfigError(f"device: {validate._short(raw['device'])} is not one of {', '.join(DEVICES)}")
        kwargs["device"] = raw["device"]
    if "executor" in raw:
        kwargs["executor"] = _executor(raw["executor"])
    if "report" in raw:
        kwargs["report"] = _typed(raw["report"], bool, "report")
    if "alignment" in raw:
        kwargs["alignment"] = _alignment(raw["alignment"])
    if "length_policy" in raw:
        kwargs["length_policy"] = check_length_policy(raw["length_policy"], "length_policy")
    return RunConfig(**kwargs)


def _alignment(raw: Any) -> AlignmentSpec:
    """``alignment: {max_lag_ms: 20, per: condition|item}`` (``max_lag_ms: 0`` or absent: off)."""
    _check_keys(raw, {"max_lag_ms", "per"}, "alignment")
    max_lag_ms = raw.get("max_lag_ms", 0.0)
    per = raw.get("per", "condition")
    check_alignment(max_lag_ms, per, "alignment")
    return AlignmentSpec(max_lag_ms=float(max_lag_ms), per=per)


def load(path: str | Path, base_dir: str | Path | None = None) -> RunConfig:
    """Read and validate a YAML config; relative paths resolve against ``base_dir`` (default: the working dir)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    raw = validate.load_yaml(path)  # UTF-8, duplicate keys refused, bounded nesting
    return parse(raw, base_dir if base_dir is not None else Path.cwd())


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available (use cpu or auto)")
    return device
