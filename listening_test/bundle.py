"""Build a self-contained MUSHRA bundle from a finished run folder.

Reads only what the run left (``results.parquet``, ``manifest.json`` and the decoded-audio cache named by the
manifest's ``cache_dir``) and writes::

    BUNDLE/bundle.json          the test description (PRIVATE: maps opaque stimulus ids to conditions)
    BUNDLE/audio/<item>/ref.wav the open reference of each item
    BUNDLE/audio/<item>/<id>.wav one file per stimulus (opaque id per item and condition)
    BUNDLE/page/                the web page (HTML, JS, CSS)

Every trial holds at most :data:`MAX_SIGNALS` rated signals: the hidden reference, the 7 kHz and the 3.5 kHz
low-pass anchors, and up to 9 conditions under test (ITU-R BS.1534-3). Each item gets ONE loudness gain
(ITU-R BS.1770 integrated loudness of its reference excerpt, via pyloudnorm, to ``target_lufs``), applied to all
its conditions, lowered where a condition would otherwise peak above ``peak_limit_dbfs``. Excerpts are at most
12 s. Anchors missing from the run are made with the anchor codecs of the registry.

Audio shapes: [C, T] arrays at the run's evaluation rate.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from codecbench.bench.core.errors import CodecbenchError

BUNDLE_FORMAT = "codecbench-mushra-bundle"
BUNDLE_FORMAT_VERSION = 1
MAX_SIGNALS = 12  # rated signals per trial, hidden reference and both anchors included (BS.1534-3)
MAX_EXCERPT_S = 12.0
REFERENCE = "reference"
ANCHORS = {"lowpass_7k": "anchor_7k", "lowpass_3k5": "anchor_3k5"}
ROLES = {REFERENCE: "reference", **ANCHORS}
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = ("index.html", "mushra.js", "mushra.css")


class BundleError(CodecbenchError):
    """A MUSHRA bundle cannot be built or read; the message names the file, item or condition and the fix."""


@dataclass(frozen=True)
class _Stimulus:
    condition: str
    codec: str
    point: str
    decoded_key: str  # empty: made here (hidden reference = the clip, missing anchors = registry codecs)


def condition_name(codec: str, point: str) -> str:
    """``codec`` for anchors and parameterless points, else ``codec@point`` (e.g. ``opus@bitrate_kbps=6``)."""
    if codec in ROLES or point in ("", "default"):
        return codec
    return f"{codec}@{point}"


# ----------------------------------------------------------------------------------------------------------------
# Reading the run
# ----------------------------------------------------------------------------------------------------------------


def _read_run(run_dir: Path) -> tuple[Any, Path, dict]:
    import pandas as pd

    if not run_dir.is_dir():
        raise BundleError(f"{run_dir}: run folder does not exist")
    table_path = run_dir / "results.parquet"
    manifest_path = run_dir / "manifest.json"
    for path in (table_path, manifest_path):
        if not path.is_file():
            raise BundleError(f"{path}: missing; is {run_dir} a finished codecbench run folder?")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if "cache_dir" not in manifest:
        raise BundleError(f"{manifest_path}: no 'cache_dir' key; the bundle needs the run's decoded-audio cache")
    cache_dir = Path(manifest["cache_dir"]).expanduser()
    if not cache_dir.is_absolute():  # relative to the run folder if it exists there, else to the working dir
        cache_dir = run_dir / cache_dir if (run_dir / cache_dir).is_dir() else cache_dir.resolve()
    table = pd.read_parquet(table_path)
    needed = {"codec", "point", "item_id", "clip_hash", "decoded_key"}
    missing = sorted(needed - set(table.columns))
    if missing:
        raise BundleError(f"{table_path}: missing columns {missing}")
    rows = table[(table["item_id"].fillna("") != "") & (table["decoded_key"].fillna("") != "")]
    if "level" in rows.columns:
        rows = rows[rows["level"].fillna("item") == "item"]
    if rows.empty:
        raise BundleError(
            f"{table_path}: the run has no decoded audio (no row with a decoded_key); rerun it so that the "
            f"decoded-audio cache is kept"
        )
    rows = rows.drop_duplicates(["codec", "point", "item_id"])[["codec", "point", "item_id", "clip_hash", "decoded_key"]]
    return rows, cache_dir, manifest


def _audio_path(cache_dir: Path, namespace: str, key: str) -> Path:
    return cache_dir / namespace / key[:2] / f"{key}.wav"


def _load(path: Path, what: str) -> tuple[np.ndarray, int]:
    from codecbench.bench.core import audio
    from codecbench.bench.core.cache import verify_file

    if not path.is_file():
        raise BundleError(f"{path}: {what} is missing from the run's decoded-audio cache")
    if not verify_file(path):
        raise BundleError(f"{path}: {what} fails its digest check (damaged or replaced); rerun the run to recompute it")
    return audio.read(path)


# ----------------------------------------------------------------------------------------------------------------
# Selection
# ----------------------------------------------------------------------------------------------------------------


def _select_conditions(rows, requested: Sequence[str] | None) -> tuple[list[tuple[str, str]], str]:
    """(codec, point) pairs under test and the rule used; anchors and the reference are always added."""
    available: dict[str, tuple[str, str]] = {}
    for codec, point in rows[["codec", "point"]].drop_duplicates().itertuples(index=False):
        if codec not in ROLES:
            available[condition_name(codec, point)] = (codec, point)
    by_codec: dict[str, list[str]] = {}
    for name, (codec, _) in available.items():
        by_codec.setdefault(codec, []).append(name)
    limit = MAX_SIGNALS - 1 - len(ANCHORS)
    if requested:
        chosen: list[str] = []
        for name in requested:
            if name in ROLES:
                continue  # always included
            if name in available:
                matches = [name]
            elif name in by_codec:
                matches = sorted(by_codec[name])
            else:
                raise BundleError(
                    f"unknown condition '{name}': the run has {sorted(available) or 'no conditions under test'} "
                    f"(a codec name selects all its operating points)"
                )
            chosen += [m for m in matches if m not in chosen]
        rule = f"conditions given on the command line ({', '.join(requested)})"
    else:
        chosen = sorted(available)
        rule = "every condition under test in the run"
    if not chosen:
        raise BundleError("no condition under test selected; the run has only anchors")
    if len(chosen) > limit:
        raise BundleError(
            f"{len(chosen)} conditions under test selected, at most {limit} fit a trial ({MAX_SIGNALS} signals "
            f"including the hidden reference and both anchors); choose with --conditions from {sorted(chosen)}"
        )
    return [available[name] for name in chosen], rule


def _select_items(rows, conditions, requested, max_items: int, seed: int) -> tuple[list[str], str]:
    have: dict[str, set] = {}
    for codec, point, item_id in rows[["codec", "point", "item_id"]].itertuples(index=False):
        have.setdefault(item_id, set()).add((codec, point))
    complete = sorted(item for item, pairs in have.items() if set(conditions) <= pairs)
    if requested:
        unknown = [i for i in requested if i not in have]
        if unknown:
            raise BundleError(f"unknown item '{unknown[0]}'; the run's items: {sorted(have)}")
        incomplete = [i for i in requested if i not in complete]
        if incomplete:
            raise BundleError(
                f"item '{incomplete[0]}' has no decoded audio for every selected condition in the run "
                f"(items complete for them: {complete or 'none'})"
            )
        return list(dict.fromkeys(requested)), f"items given on the command line ({len(requested)})"
    if not complete:
        raise BundleError("no item has decoded audio for every selected condition; choose --conditions or --items")
    if len(complete) <= max_items:
        return complete, f"every item decoded by all selected conditions ({len(complete)})"
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(complete, size=max_items, replace=False).tolist())
    return picked, f"{max_items} of {len(complete)} complete items drawn at random (seed {seed})"


# ----------------------------------------------------------------------------------------------------------------
# Audio preparation
# ----------------------------------------------------------------------------------------------------------------


def integrated_loudness_lufs(audio: np.ndarray, sample_rate_hz: int) -> float:
    """ITU-R BS.1770 integrated loudness of ``audio`` [C, T] in LUFS (pyloudnorm); -inf for silence."""
    import pyloudnorm

    if audio.shape[-1] < int(0.4 * sample_rate_hz):
        raise BundleError(f"{audio.shape[-1] / sample_rate_hz:.3f} s is shorter than one BS.1770 block (0.4 s)")
    meter = pyloudnorm.Meter(sample_rate_hz)
    return float(meter.integrated_loudness(np.asarray(audio, dtype=np.float64).T))


def item_gain_db(
    reference: np.ndarray, stimuli: Sequence[np.ndarray], sample_rate_hz: int, target_lufs: float,
    peak_limit_dbfs: float,
) -> tuple[float, float, bool]:
    """One gain for all conditions of an item: (gain_db, reference loudness LUFS, whether the peak limit lowered it).

    ``reference`` and each stimulus are [C, T]; the gain brings the reference to ``target_lufs`` and is lowered
    so that no stimulus (nor the reference) peaks above ``peak_limit_dbfs``.
    """
    loudness = integrated_loudness_lufs(reference, sample_rate_hz)
    if not math.isfinite(loudness):
        raise BundleError("the reference excerpt is silent (loudness -inf); choose another item or excerpt")
    gain_db = target_lufs - loudness
    peak = max(float(np.max(np.abs(x))) for x in [reference, *stimuli])
    limited = False
    if peak > 0:
        max_gain_db = peak_limit_dbfs - 20.0 * math.log10(peak)
        if gain_db > max_gain_db:
            gain_db, limited = max_gain_db, True
    return gain_db, loudness, limited


def _anchor_audio(name: str, reference: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Process ``reference`` [C, T] with the registry's anchor codec ``name``; returns [C, T]."""
    import torch
    from codecbench.codecs import registry

    try:
        codec = registry.create(name)
    except Exception as exc:
        raise BundleError(f"the run has no '{name}' anchor and the anchor codec cannot be built: {exc}") from exc
    result = codec.roundtrip(torch.from_numpy(np.ascontiguousarray(reference))[None], sample_rate_hz, codec.point())
    return result.decoded[0].detach().cpu().numpy().astype(np.float32)


def _stimulus_id(salt: str, item_id: str, condition: str) -> str:
    return "s" + hashlib.sha256(f"{salt}|{item_id}|{condition}".encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------------------------


def build_bundle(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    items: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    max_items: int = 10,
    excerpt_s: float = 10.0,
    excerpt_start_s: float = 0.0,
    target_lufs: float = -23.0,
    peak_limit_dbfs: float = -1.0,
    training_item: str | None = None,
    title: str = "Listening test",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Build a MUSHRA bundle from the finished run in ``run_dir`` into ``out_dir``; returns ``out_dir``.

    Args:
        items: item ids (``<clip id>#<segment>``); default: every item decoded by all selected conditions, at most
            ``max_items`` drawn at random with ``seed``.
        conditions: condition names (``codec@point``) or codec names; default: every condition under test.
        excerpt_s: excerpt length (at most 12 s); ``excerpt_start_s``: where it starts in each item.
        target_lufs: BS.1770 integrated loudness of each item's reference after its gain.
        training_item: the item of the training page (grades discarded); default: the first selected item.
    """
    from codecbench.bench.core import audio as audio_io

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not 0 < excerpt_s <= MAX_EXCERPT_S:
        raise BundleError(f"excerpt_s={excerpt_s}: must be in (0, {MAX_EXCERPT_S}] seconds")
    if excerpt_start_s < 0:
        raise BundleError(f"excerpt_start_s={excerpt_start_s}: must be >= 0")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise BundleError(f"{out_dir}: folder exists and is not empty (pass overwrite / --force to replace it)")
        if not (out_dir / "bundle.json").is_file():
            raise BundleError(f"{out_dir}: not a bundle folder (no bundle.json); refusing to delete it")
        shutil.rmtree(out_dir)

    rows, cache_dir, manifest = _read_run(run_dir)
    if not (cache_dir / "decoded").is_dir():
        raise BundleError(
            f"{cache_dir}: the run's cache_dir has no decoded/ folder; the bundle needs the run's decoded audio"
        )
    chosen, condition_rule = _select_conditions(rows, conditions)
    item_ids, item_rule = _select_items(rows, chosen, items, max_items, seed)
    training_item = training_item or item_ids[0]
    if training_item not in item_ids:
        raise BundleError(f"training item '{training_item}' is not among the selected items {item_ids}")

    lookup = {(r.codec, r.point, r.item_id): r for r in rows.itertuples(index=False)}
    salt = secrets.token_hex(16)
    staging = out_dir.with_name(f".{out_dir.name}.building")
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "audio").mkdir(parents=True)
    anchor_sources: dict[str, str] = {}
    item_records = []
    sample_rate_hz = None
    for index, item_id in enumerate(item_ids, start=1):
        clip_hash = lookup[(*chosen[0], item_id)].clip_hash
        ref_path = _audio_path(cache_dir, "clips", clip_hash)
        reference, rate = _load(ref_path, f"reference clip of item '{item_id}'")
        if sample_rate_hz is None:
            sample_rate_hz = rate
        if rate != sample_rate_hz:
            raise BundleError(f"{ref_path}: {rate} Hz, other items are at {sample_rate_hz} Hz")
        signals: dict[str, np.ndarray] = {REFERENCE: reference}
        sources: dict[str, dict] = {REFERENCE: {"codec": REFERENCE, "point": "default", "source": "reference clip"}}
        for codec, point in chosen:
            row = lookup[(codec, point, item_id)]
            if row.clip_hash != clip_hash:
                raise BundleError(f"item '{item_id}': conditions were decoded from different reference clips")
            signals[condition_name(codec, point)] = _checked(
                _audio_path(cache_dir, "decoded", row.decoded_key), reference, rate, item_id, codec, point
            )
            sources[condition_name(codec, point)] = {"codec": codec, "point": point, "source": "run"}
        for anchor in ANCHORS:
            row = next((r for (c, _, i), r in lookup.items() if c == anchor and i == item_id), None)
            if row is not None:
                signals[anchor] = _checked(
                    _audio_path(cache_dir, "decoded", row.decoded_key), reference, rate, item_id, anchor, row.point
                )
                sources[anchor] = {"codec": anchor, "point": row.point, "source": "run"}
            else:
                signals[anchor] = _anchor_audio(anchor, reference, rate)
                sources[anchor] = {"codec": anchor, "point": "default", "source": "made by the bundle (registry)"}
            anchor_sources.setdefault(anchor, sources[anchor]["source"])
        # excerpt
        start = int(round(excerpt_start_s * rate))
        length = min(reference.shape[-1] - start, int(round(excerpt_s * rate)))
        if length < int(0.5 * rate):
            raise BundleError(
                f"item '{item_id}': {reference.shape[-1] / rate:.2f} s long, too short for an excerpt starting at "
                f"{excerpt_start_s} s (at least 0.5 s needed)"
            )
        cut = {name: x[:, start:start + length] for name, x in signals.items()}
        try:
            gain_db, loudness, limited = item_gain_db(
                cut[REFERENCE], list(cut.values()), rate, target_lufs, peak_limit_dbfs
            )
        except BundleError as exc:
            raise BundleError(f"item '{item_id}': {exc}") from exc
        gain = 10.0 ** (gain_db / 20.0)
        key = f"i{index:02d}"
        audio_io.write(staging / "audio" / key / "ref.wav", cut[REFERENCE] * gain, rate, subtype="PCM_16")
        stimuli = []
        for name, x in cut.items():
            sid = _stimulus_id(salt, item_id, name)
            audio_io.write(staging / "audio" / key / f"{sid}.wav", x * gain, rate, subtype="PCM_16")
            stimuli.append({"id": sid, "condition": name, "role": ROLES.get(name, "test"),
                            "file": f"audio/{key}/{sid}.wav", **sources[name]})
        item_records.append({
            "key": key, "item_id": item_id, "clip_hash": clip_hash, "duration_s": length / rate,
            "excerpt_start_s": start / rate, "loudness_lufs": loudness, "gain_db": gain_db,
            "peak_limited": limited, "reference_file": f"audio/{key}/ref.wav", "stimuli": stimuli,
        })

    names = [REFERENCE, *ANCHORS, *(condition_name(c, p) for c, p in chosen)]
    description = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "bundle_id": hashlib.sha256(f"{salt}|{json.dumps(item_records, sort_keys=True)}".encode()).hexdigest()[:16],
        "title": title,
        "source": {"run_dir": str(run_dir.resolve()), "run": manifest.get("run", run_dir.name),
                   "cache_dir": str(cache_dir)},
        "sample_rate_hz": sample_rate_hz,
        "selection": {
            "max_signals_per_trial": MAX_SIGNALS,
            "conditions_rule": condition_rule,
            "items_rule": item_rule,
            "always_included": [REFERENCE, *ANCHORS],
            "anchor_sources": anchor_sources,
        },
        "loudness": {
            "standard": "ITU-R BS.1770 integrated loudness (pyloudnorm)",
            "target_lufs": target_lufs,
            "peak_limit_dbfs": peak_limit_dbfs,
            "rule": "one gain per item from its reference excerpt, applied to every condition of the item; "
                    "lowered where any condition would peak above the limit",
        },
        "excerpt": {"max_s": excerpt_s, "start_s": excerpt_start_s},
        "audio_format": "WAV PCM 16-bit",
        "conditions": [{"condition": n, "role": ROLES.get(n, "test")} for n in names],
        "training_item": training_item,
        "items": item_records,
        "salt": salt,
    }
    (staging / "bundle.json").write_text(json.dumps(description, indent=1))
    (staging / "page").mkdir()
    for name in STATIC_FILES:
        shutil.copy2(STATIC_DIR / name, staging / "page" / name)
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked above)
    os.replace(staging, out_dir)
    return out_dir


def _checked(path: Path, reference: np.ndarray, rate: int, item_id: str, codec: str, point: str) -> np.ndarray:
    decoded, decoded_rate = _load(path, f"decoded audio of {codec} {point} on item '{item_id}'")
    if decoded_rate != rate:
        raise BundleError(
            f"{path}: {codec} {point} on item '{item_id}' is at {decoded_rate} Hz, its reference at {rate} Hz"
        )
    if decoded.shape != reference.shape:
        raise BundleError(
            f"{path}: {codec} {point} on item '{item_id}' has shape [C, T] = {list(decoded.shape)}, its reference "
            f"{list(reference.shape)}: mismatched length or channels"
        )
    return decoded


# ----------------------------------------------------------------------------------------------------------------
# Reading a bundle (server side)
# ----------------------------------------------------------------------------------------------------------------


def load_bundle(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``bundle_dir/bundle.json``; every referenced file must exist inside the bundle."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / "bundle.json"
    if not path.is_file():
        raise BundleError(f"{path}: missing; build a bundle with `codecbench mushra build RUN_DIR --out BUNDLE`")
    try:
        description = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if description.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a codecbench MUSHRA bundle (format {description.get('format')!r})")
    if description.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {description.get('format_version')!r} is not supported "
            f"(this codecbench reads {BUNDLE_FORMAT_VERSION})"
        )
    root = bundle_dir.resolve()
    for item in description["items"]:
        for rel in [item["reference_file"], *(s["file"] for s in item["stimuli"])]:
            file = (root / rel).resolve()
            if root not in file.parents or not file.is_file():
                raise BundleError(f"{path}: item '{item['item_id']}' names {rel!r}, which is not a file of the bundle")
    return description
