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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
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
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(mapping).__name__} {mapping!r}")
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where}: unknown key '{key}'.{hint} Valid keys: {', '.join(sorted(allowed))}")


def _typed(value: Any, kind: type, where: str, positive: bool = False) -> Any:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{where}: must be positive, got {value!r}")
    return kind(value)


def _dataset(raw: Any, base_dir: Path) -> DatasetSpec:
    _check_keys(raw, _DATASET_KEYS, "dataset")
    if "path" not in raw:
        raise ConfigError("dataset: missing key 'path' (a folder, a .csv manifest, or builtin:demo)")
    path = _typed(raw["path"], str, "dataset.path")
    if not path.startswith("builtin:") and not Path(path).expanduser().is_absolute():
        path = str(base_dir / path)
    kwargs: dict[str, Any] = {"path": path}
    for key, kind, positive in (
        ("sample_rate_hz", int, True),
        ("channels", int, True),
        ("max_segments_per_clip", int, True),
    ):
        if key in raw:
            kwargs[key] = _typed(raw[key], kind, f"dataset.{key}", positive)
    if raw.get("segment_s") is not None:
        kwargs["segment_s"] = _typed(raw["segment_s"], float, "dataset.segment_s", True)
    elif "segment_s" in raw:
        kwargs["segment_s"] = None
    if "pad_tolerance" in raw:
        tolerance = _typed(raw["pad_tolerance"], float, "dataset.pad_tolerance")
        if not 0 <= tolerance < 1:
            raise ConfigError(f"dataset.pad_tolerance: must be in [0, 1), got {tolerance}")
        kwargs["pad_tolerance"] = tolerance
    if raw.get("max_clips") is not None:
        kwargs["max_clips"] = _typed(raw["max_clips"], int, "dataset.max_clips", True)
    if kwargs.get("channels", 1) not in (1, 2):
        raise ConfigError(f"dataset.channels: 1 (mono) or 2 (stereo), got {kwargs['channels']}")
    return DatasetSpec(**kwargs)


def _codec(raw: Any, where: str) -> CodecSpec:
    from codecbench.codecs import registry

    if isinstance(raw, str):
        raw = {"name": raw}
    _check_keys(raw, _CODEC_KEYS, where)
    if "name" not in raw:
        raise ConfigError(f"{where}: missing key 'name'")
    try:
        cls = registry.get(raw["name"])
    except CodecbenchError as error:
        raise ConfigError(f"{where}.name: {error}") from None
    options = raw.get("options") or {}
    _check_keys(options, set(options), f"{where}.options")  # a mapping; the codec checks the names
    if "grid" in raw and "points" in raw:
        raise ConfigError(f"{where}: give either 'grid' or 'points', not both")
    if "grid" in raw:
        grid = raw["grid"]
        _check_keys(grid, {p.name for p in cls.params}, f"{where}.grid")
        axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
        for key, values in axes.items():
            if not values:
                raise ConfigError(f"{where}.grid.{key}: empty list")
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
            raise ConfigError(f"{where}.points[{index}]: expected a mapping, got {params!r}")
        try:
            points.append(cls.point(**params))
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    if len(set(points)) != len(points):
        raise ConfigError(f"{where}: the same operating point appears twice")
    return CodecSpec(name=raw["name"], options=dict(options), points=tuple(points))


def _metric(raw: Any, where: str) -> MetricSpec:
    from codecbench.bench.metrics import registry

    if isinstance(raw, str):
        raw = {"name": raw}
    _check_keys(raw, _METRIC_KEYS, where)
    try:
        registry.get(raw.get("name", ""))
    except CodecbenchError as error:
        raise ConfigError(f"{where}.name: {error}") from None
    return MetricSpec(name=raw["name"], options=dict(raw.get("options") or {}))


def _executor(raw: Any) -> ExecutorSpec:
    from codecbench.bench.executors import EXECUTORS

    if isinstance(raw, str):
        raw = {"name": raw}
    _check_keys(raw, _EXECUTOR_KEYS, "executor")
    name = raw.get("name", "local")
    if name not in EXECUTORS:
        close = difflib.get_close_matches(name, list(EXECUTORS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"executor.name: unknown executor '{name}'.{hint} Known: {', '.join(EXECUTORS)}")
    options = dict(raw.get("options") or {})
    if "workers" in raw:
        options["workers"] = _typed(raw["workers"], int, "executor.workers", True)
    return ExecutorSpec(name=name, options=options)


def parse(raw: Any, base_dir: str | Path = ".") -> RunConfig:
    """Validate a config mapping (paths relative to ``base_dir``) into a :class:`RunConfig`."""
    base_dir = Path(base_dir)
    if raw is None:
        raise ConfigError("the config is empty")
    _check_keys(raw, _TOP_KEYS, "config (top level)")
    for key in ("name", "dataset", "codecs"):
        if key not in raw:
            raise ConfigError(f"config (top level): missing key '{key}'")
    name = _typed(raw["name"], str, "name")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ConfigError(f"name: '{name}' must be a plain folder name")
    if not isinstance(raw["codecs"], list) or not raw["codecs"]:
        raise ConfigError("codecs: expected a non-empty list")
    codecs = tuple(_codec(c, f"codecs[{i}]") for i, c in enumerate(raw["codecs"]))
    names = [c.name for c in codecs]
    if len(set(names)) != len(names):
        raise ConfigError("codecs: a codec appears twice; put all its points in one entry")
    kwargs: dict[str, Any] = {"name": name, "dataset": _dataset(raw["dataset"], base_dir), "codecs": codecs}
    if "metrics" in raw:
        if not isinstance(raw["metrics"], list):
            raise ConfigError("metrics: expected a list of metric names")
        kwargs["metrics"] = tuple(_metric(m, f"metrics[{i}]") for i, m in enumerate(raw["metrics"]))
    for key, kind, positive in (
        ("seed", int, False),
        ("batch_size", int, True),
        ("shard_size", int, True),
        ("retries", int, False),
    ):
        if key in raw:
            kwargs[key] = _typed(raw[key], kind, key, positive)
    if "entropy_fit_fraction" in raw:
        fraction = _typed(raw["entropy_fit_fraction"], float, "entropy_fit_fraction")
        if not 0 < fraction < 1:
            raise ConfigError(f"entropy_fit_fraction: must be in (0, 1), got {fraction}")
        kwargs["entropy_fit_fraction"] = fraction
    for key in ("output", "cache_dir", "weights_dir"):
        if raw.get(key) is not None:
            value = _typed(raw[key], str, key)
            kwargs[key] = value if Path(value).expanduser().is_absolute() else str(base_dir / value)
    if "device" in raw:
        if raw["device"] not in DEVICES:
            raise ConfigError(f"device: '{raw['device']}' is not one of {', '.join(DEVICES)}")
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
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path}: not valid YAML ({error})") from None
    return parse(raw, base_dir if base_dir is not None else Path.cwd())


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available (use cpu or auto)")
    return device
