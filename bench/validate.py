"""The closed input surface: checks shared by the config, the CLI and the readers of run folders.

Every check raises :class:`~codecbench.bench.core.errors.ConfigError` with one line naming the key path (or the
argument, or the file), the problem and the valid range. Nothing here builds a model: codec and metric options are
checked against the keyword arguments their constructors accept (read from the signatures through the registries).
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from codecbench.bench.core.errors import ConfigError

MAX_DEPTH = 16  # nesting levels of a config (mappings and lists); deeper is not a codecbench config
MAX_NAME_CHARS = 128  # a run name is a folder name
RUNNER_SET = ("device", "cache_dir")  # keyword arguments the runner passes itself; never options


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def close_hint(name: Any, known: list[str]) -> str:
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def number(value: Any, where: str, *, integer: bool = False, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Any:
    """A finite int/float (``integer``: an int) within ``[low, high]`` (``low_open``: ``(low, high]``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{where}: expected {'an integer' if integer else 'a number'}, got {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value}")
    below = low is not None and (value <= low if low_open else value < low)
    if below or (high is not None and value > high):
        left = "(" if low_open else "["
        lo = "-inf" if low is None else (str(low) if isinstance(low, int) else f"{low:g}")
        hi = "inf" if high is None else (str(high) if isinstance(high, int) else f"{high:g}")
        raise ConfigError(f"{where}: must be in {left}{lo}, {hi}], got {_short(value)}")
    return value


def text(value: Any, where: str, *, empty: bool = False, max_chars: int = 4096) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {_short(value)}")
    if not empty and not value:
        raise ConfigError(f"{where}: must not be empty")
    if "\x00" in value:
        raise ConfigError(f"{where}: contains a NUL character")
    if len(value) > max_chars:
        raise ConfigError(f"{where}: longer than {max_chars} characters ({len(value)})")
    return value


def run_name(value: Any) -> str:
    name = text(value, "name", max_chars=MAX_NAME_CHARS)
    bad = sorted({c for c in name if c in "/\\:*?\"<>|" or ord(c) < 32 or ord(c) == 127})
    if bad or name.startswith(".") or name.strip() != name:
        shown = ", ".join(repr(c) for c in bad) or "a leading dot or surrounding spaces"
        raise ConfigError(f"name: {_short(name)} must be a plain folder name (it has {shown})")
    return name


def depth(obj: Any, where: str = "config") -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` (iterative: no recursion limit to hit)."""
    stack = [(obj, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (Mapping, list, tuple)):
            if level > MAX_DEPTH:
                raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            children = node.values() if isinstance(node, Mapping) else node
            stack.extend((child, level + 1) for child in children)


def string_keys(mapping: Mapping, where: str) -> None:
    for key in mapping:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings, got {_short(key)}")


def scalar(value: Any, where: str) -> None:
    """A grid or point value: a string, bool, finite number or null."""
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, (int, float)):
        number(value, where)
        return
    raise ConfigError(f"{where}: expected a number or a string, got {_short(value)}")


# -- YAML ---------------------------------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML would keep the last silently)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: a mapping key must be a plain value") from None
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key '{key}' "
                              f"(first at line {seen[key] + 1}); give each key once")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(path: Path) -> Any:
    """Parse a YAML config file: UTF-8, no duplicate keys, bounded nesting; errors name the file."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a file") from None
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot read ({error.strerror or error})") from None
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {error.start}: {data[error.start:error.start + 1]!r})") from None
    if "\x00" in source:
        raise ConfigError(f"config file {path}: contains a NUL character")
    try:
        raw = yaml.load(source, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as error:
        raise ConfigError(f"config file {path}, {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path}: not valid YAML ({' '.join(str(error).split())})") from None
    except RecursionError:
        raise ConfigError(f"config file {path}: nested deeper than {MAX_DEPTH} levels") from None
    depth(raw, f"config file {path}")
    return raw


# -- options against constructor signatures ------------------------------------------------------------------------
def accepted_options(cls: type, base: type) -> tuple[set[str], set[str]]:
    """(accepted, required) keyword arguments of ``cls``'s constructor, following ``**options`` up the MRO to
    ``base`` (whose own ``**options`` are not a licence: the codec base refuses them, the metric base records
    only what subclasses declare). Runner-set arguments are excluded."""
    accepted: set[str] = set()
    required: set[str] = set()
    for klass in cls.__mro__:  # mixins included: ``**kwargs`` goes on to the next ``__init__`` in the MRO
        if klass is object:
            break
        if "__init__" not in vars(klass):
            continue
        try:
            parameters = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
        except (TypeError, ValueError):
            break
        forwards = False
        for p in parameters:
            if p.kind is p.VAR_KEYWORD:
                forwards = True
            elif p.kind is not p.VAR_POSITIONAL:
                accepted.add(p.name)
                if p.default is p.empty and klass is cls:
                    required.add(p.name)
        if not forwards or klass is base:
            break
    return accepted - set(RUNNER_SET), required - set(RUNNER_SET)


# options a codec cannot do without although its constructor gives them a default (it fails every unit otherwise)
NEEDED_OPTIONS: dict[str, tuple[str, ...]] = {"precomputed": ("folder",)}


def options(raw: Any, cls: type, base: type, where: str, name: str) -> dict[str, Any]:
    """Validate a codec's or metric's ``options`` mapping against its constructor; returns a plain dict."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of option names to values, got {_short(raw)}")
    string_keys(raw, where)
    accepted, required = accepted_options(cls, base)
    for key in raw:
        if key in RUNNER_SET:
            raise ConfigError(f"{where}.{key}: set by the runner, not an option (use the top-level '{key}' key)")
        if key not in accepted:
            known = ", ".join(sorted(accepted)) or "(none)"
            raise ConfigError(f"{where}.{key}: unknown option{close_hint(key, sorted(accepted))} "
                              f"(options of '{name}': {known})")
        value = raw[key]
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}.{key}: expected a finite number, got {value}")
    for key in sorted(required | set(NEEDED_OPTIONS.get(name, ()))):
        if raw.get(key) in (None, ""):
            raise ConfigError(f"{where}: '{name}' needs the option '{key}'")
    return dict(raw)


# -- CLI arguments and files ---------------------------------------------------------------------------------------
def output_folder(path: str | os.PathLike, what: str) -> Path:
    """A folder codecbench will write into: not a file, not under a file, creatable and writable."""
    path = Path(path)
    text(str(path), what)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                where = "is" if parent == path else f"is under {parent}, which is"
                raise ConfigError(f"{what} {path} {where} a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{what} {path}: {parent} is not writable")
            break
    return path


def output_file(path: str | os.PathLike, what: str) -> Path:
    """A file codecbench will write: its folder is a writable folder; it is not a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what} {path} is under {parent}, which is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{what} {path}: {parent} is not writable")
            break
    return path


def read_table(path: str | os.PathLike):
    """A results table (parquet or CSV) read with a one-line error for a truncated, garbage or unreadable file."""
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, na_values=[""])
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: the results table is missing") from None
    except PermissionError:
        raise ConfigError(f"{path}: the results table is not readable (permission denied)") from None
    except Exception as error:  # pyarrow/pandas raise many types for a damaged file
        reason = " ".join(str(error).split())[:160]
        raise ConfigError(f"{path}: not a readable results table ({type(error).__name__}: {reason}); "
                          "rerun the run to rewrite it") from None


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """A JSON file that must hold an object (manifest, plan); one-line errors otherwise."""
    import json

    path = Path(path)
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} is missing") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {what} ({error.strerror or error})") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{path}: {what} is not valid JSON ({' '.join(str(error).split())[:120]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: {what} is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: {what} must be a JSON object, got a {type(obj).__name__}")
    return obj


# -- command-line arguments (checked before any work starts) -------------------------------------------------------
DEVICE_CHOICES = ("cpu", "cuda", "auto")


def device(value: Any, where: str = "--device") -> str:
    """cpu, auto, cuda or cuda:N; cuda only when a CUDA device is there (checked without building anything)."""
    name = text(value, where, max_chars=32)
    base, _, index = name.partition(":")
    if base not in DEVICE_CHOICES or (index and (base != "cuda" or not index.isdigit())):
        raise ConfigError(f"{where}: {_short(name)} is not one of cpu, cuda, cuda:N, auto")
    if base == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{where}: '{name}' requested but no CUDA device is available (use cpu or auto)")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"{where}: '{name}': only {torch.cuda.device_count()} CUDA device(s) here")
    return name


def existing_folder(value: Any, where: str) -> Path:
    path = Path(text(str(value), where))
    if not path.exists():
        raise ConfigError(f"{where} {path}: no such folder")
    if not path.is_dir():
        raise ConfigError(f"{where} {path}: a file, not a folder")
    return path


_SCALARS = {  # argument -> (integer, low, high)
    "resamples": (True, 1, 10**7),
    "seed": (True, 0, 2**32 - 1),
    "audio_items": (True, 0, 1000),
    "workers": (True, 1, 1024),
    "sample_rate_hz": (True, 1000, 384_000),
    "deg_sample_rate_hz": (True, 1000, 384_000),
    "tolerance": (False, 0, 1),
}


def arguments(args: Any) -> None:
    """Check a parsed command line of run / demo / score / report / status before any work starts."""
    command = getattr(args, "command", "")
    for name, (integer, low, high) in _SCALARS.items():
        value = getattr(args, name, None)
        if value is not None:
            number(value, f"--{name.replace('_', '-')}", integer=integer, low=low, high=high)
    if getattr(args, "at_kbps", None):
        for value in args.at_kbps:
            number(value, "--at-kbps", low=0, low_open=True, high=1e5)
    if getattr(args, "device", None) is not None and command in ("run", "demo", "score"):
        device(args.device)
    if getattr(args, "cache_dir", None):
        output_folder(args.cache_dir, "--cache-dir")
    out = getattr(args, "out", None)
    if out:
        if command == "score":
            output_file(out, "--out")
        elif command in ("run", "demo", "report"):
            output_folder(out, "--out")
    if command == "status":
        existing_folder(args.run_dir, "status: run folder")
    if command == "report":
        for run_dir in args.run_dirs:
            existing_folder(run_dir, "report: run folder")
    if command == "score" and getattr(args, "out_dir", None):
        output_folder(args.out_dir, "--out-dir")
    if command == "score":
        existing_folder(args.reference_dir, "score: REF_DIR")
        for folder in args.decoded_dirs:
            existing_folder(folder, "score: DEG_DIR")
    if command == "run":
        path = Path(text(str(args.config), "run: config"))
        if not path.is_file():
            raise ConfigError(f"run: config file {path} {'is a folder' if path.is_dir() else 'does not exist'}")
