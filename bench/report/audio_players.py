"""Audio for the HTML report's players: the original and every system's decoded version of a few items.

Files come from the run's decoded-audio cache (``clips/<h[:2]>/<h>.wav`` and ``decoded/<k[:2]>/<k>.wav``,
architecture.md) and are copied into the report folder as 16-bit FLAC (lossless at the player's precision, about
half the size of float WAV), cut to ``max_duration_s``, so that the folder opens from disk on its own. Samples
beyond +/-1 cannot be stored in 16-bit FLAC and are clipped in the copy; the count is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from codecbench.bench.core import audio as audio_io
from codecbench.bench.core.cache import verify_file
from codecbench.bench.core.errors import AudioInputError


@dataclass(frozen=True)
class Player:
    """One audio player: its label and the file's path relative to the report folder (None: audio unavailable)."""

    label: str
    src: str | None
    group: str = ""


@dataclass(frozen=True)
class ItemPlayers:
    item_id: str
    original: Player
    systems: tuple[Player, ...]


@dataclass(frozen=True)
class PlayerSet:
    items: tuple[ItemPlayers, ...]
    n_files: int
    n_clipped_files: int
    total_bytes: int
    missing: int


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")[:60] or "x"


def _cache_file(cache_dir: Path, sub: str, key: str) -> Path:
    return cache_dir / sub / key[:2] / f"{key}.wav"


def _copy(src: Path, dst: Path, max_duration_s: float) -> tuple[bool, int]:
    """Copy ``src`` to FLAC ``dst``; returns (clipped, bytes written)."""
    audio, sr = audio_io.read(src)
    audio = audio[:, : int(round(max_duration_s * sr))]
    clipped = bool(np.any(np.abs(audio) > 1.0))
    audio_io.write(dst, np.clip(audio, -1.0, 1.0), sr, subtype="PCM_16")
    return clipped, dst.stat().st_size


def collect_players(
    ok: pd.DataFrame,
    cache_dirs: dict[str, Path | None],
    out_dir: Path,
    *,
    n_items: int = 2,
    max_duration_s: float = 5.0,
) -> PlayerSet:
    """Copy audio of the first ``n_items`` items (sorted ids) for every system and point into ``out_dir/audio``.

    ``ok`` carries the system columns; ``cache_dirs`` maps run name to its cache folder (None: not found).
    """
    items_rows = ok[(ok["level"] == "item") & (ok["item_id"] != "")]
    item_ids = sorted(set(items_rows["item_id"]))[:n_items]
    audio_dir = out_dir / "audio"
    n_files = n_clipped = total = missing = 0
    out_items = []
    for i, item in enumerate(item_ids):
        rows = items_rows[items_rows["item_id"] == item].drop_duplicates(["run", "codec", "point"])
        rows = rows.assign(_anchor=rows["group"] == "anchor").sort_values(["_anchor", "system", "bitrate_kbps"])

        def fetch(run: str, sub: str, key: str, name: str, i: int = i) -> str | None:
            nonlocal n_files, n_clipped, total, missing
            cache = cache_dirs.get(run)
            if cache is None or not key:
                missing += 1
                return None
            src = _cache_file(cache, sub, key)
            dst = audio_dir / f"item{i}_{name}.flac"
            if not verify_file(src):  # truncated, damaged or swapped: no player rather than wrong audio
                missing += 1
                return None
            try:
                clipped, size = _copy(src, dst, max_duration_s)
            except AudioInputError:
                missing += 1
                return None
            n_files, n_clipped, total = n_files + 1, n_clipped + clipped, total + size
            return f"audio/{dst.name}"

        first = rows.iloc[0]
        original = Player("original", fetch(first["run"], "clips", str(first.get("clip_hash", "") or ""), "original"))
        players = []
        for _, r in rows.iterrows():
            name = f"{_slug(r['run'])}_{_slug(r['codec'])}_{_slug(r['point'])}"
            key = str(r.get("decoded_key", "") or "")
            players.append(Player(f"{r['system']} · {r['point']}", fetch(r["run"], "decoded", key, name), r["group"]))
        out_items.append(ItemPlayers(item, original, tuple(players)))
    return PlayerSet(tuple(out_items), n_files, n_clipped, total, missing)
