"""Degenerate models: operating points whose decoded output does not depend on the operating point.

A random-init model that ignores its bitrate gives bit-identical audio at every point; its "sweep" is one
measurement repeated, and a curve through it looks like data. Detection works on the decoded content hashes
(``decoded_hash``, :func:`codecbench.bench.core.audio.content_hash`): within one codec, points whose decoded
hashes are equal on every item they share (at least :data:`MIN_SHARED_ITEMS`) are grouped; every point of a
group of two or more is flagged with :data:`FLAG` in the ``degenerate`` column. The results table, the score
table and the report carry the flag; figures do not draw flagged points as a curve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FLAG = "degenerate: output does not depend on the operating point"
MIN_SHARED_ITEMS = 1


def degenerate_points(table: pd.DataFrame, *, codec: str = "codec", point: str = "point", item: str = "item_id",
                      digest: str = "decoded_hash") -> dict[tuple[str, str], tuple[str, ...]]:
    """``{(codec, point): (the other points with identical output, ...)}`` for every flagged point."""
    if digest not in table or table.empty:
        return {}
    rows = table[[codec, point, item, digest]].dropna()
    rows = rows[(rows[digest].astype(str) != "") & (rows[item].astype(str) != "")].drop_duplicates([codec, point, item])
    flagged: dict[tuple[str, str], tuple[str, ...]] = {}
    for name, group in rows.groupby(codec, sort=False):
        hashes = {p: dict(zip(g[item], g[digest])) for p, g in group.groupby(point, sort=False)}
        if len(hashes) < 2:
            continue
        points = list(hashes)
        for a in points:
            twins = []
            for b in points:
                if a == b:
                    continue
                shared = set(hashes[a]) & set(hashes[b])
                if len(shared) >= MIN_SHARED_ITEMS and all(hashes[a][k] == hashes[b][k] for k in shared):
                    twins.append(b)
            if twins:
                flagged[(str(name), str(a))] = tuple(twins)
    return flagged


def mark(table: pd.DataFrame, *, point: str = "point") -> pd.DataFrame:
    """``table`` with its ``degenerate`` column set (:data:`FLAG` or "") on every row of a flagged point."""
    flagged = degenerate_points(table, point=point)
    keys = list(zip(table["codec"].astype(str), table[point].astype(str))) if len(table) else []
    table = table.copy()
    table["degenerate"] = [FLAG if key in flagged else "" for key in keys]
    return table


def mark_score_table(table: pd.DataFrame) -> pd.DataFrame:
    """The ``codecbench score`` table: the decoded folders (conditions) of one codec name are its points."""
    if table.empty or "condition" not in table:
        return table
    return mark(table, point="condition")


def note(table: pd.DataFrame, point: str = "point") -> list[str]:
    """One line per flagged point, for summaries and reports."""
    if "degenerate" not in table:
        return []
    flagged = table[table["degenerate"].astype(str) != ""][["codec", point]].drop_duplicates()
    return [f"{r.codec} {getattr(r, point)}: {FLAG}" for r in flagged.itertuples(index=False)]


def report_flags(ok: pd.DataFrame) -> set[tuple[str, str, str]]:
    """(run, codec, point) of the flagged points of a report's ``ok`` rows (the ``degenerate`` column)."""
    if "degenerate" not in ok or ok.empty:
        return set()
    rows = ok[ok["degenerate"].fillna("").astype(str) != ""]
    return {(str(r), str(c), str(p)) for r, c, p in zip(rows["run"], rows["codec"], rows["point"])}
