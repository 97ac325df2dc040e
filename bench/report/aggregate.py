"""Per operating point summaries: the mean of each item metric over items with its bootstrap 95 % CI.

One row per (run, codec, point, metric). Item-level metrics get a percentile-bootstrap CI over items
(:func:`codecbench.bench.core.stats.bootstrap_ci`); set-level metrics (FAD, KAD, FAD-inf, ...) are one value per point
whose CI is the metric's own item bootstrap, read from the row's extras (``ci_low``, ``ci_high``; NaN where the
metric computed none). Rates of a point are the median
over its rows (the nominal bitrate can differ by a rounding between items of different lengths).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from codecbench.bench.core.stats import bootstrap_ci

SUMMARY_COLUMNS: tuple[str, ...] = (
    "run", "codec", "system", "group", "random_init", "weights", "point", "point_params",
    "bitrate_kbps", "frame_rate_hz", "compression_ratio", "metric", "unit", "higher_is_better", "level",
    "mean", "ci_low", "ci_high", "n", "n_failed",
)  # fmt: skip


def system_group(codec_kind: str, is_anchor: bool) -> str:
    """``anchor``, ``continuous`` (latent codecs: compression ratio, no kbps) or ``discrete``."""
    if is_anchor:
        return "anchor"
    return "continuous" if codec_kind == "continuous" else "discrete"


def add_system_columns(table: pd.DataFrame, several_runs: bool) -> pd.DataFrame:
    """Add ``system`` (legend label), ``group`` and ``random_init`` columns to a results table.

    The label is the codec name, followed by ``[run]`` when a report compares several runs and by
    ``(random init)`` when the weights status says so.
    """
    table = table.copy()
    table["random_init"] = table["weights"].str.lower().str.startswith("random")
    label = table["codec"]
    if several_runs:
        label = label + " [" + table["run"] + "]"
    table["system"] = label.where(~table["random_init"], label + " (random init)")
    table["group"] = [system_group(k, a) for k, a in zip(table["codec_kind"], table["is_anchor"])]
    return table


def count_failed(failed: pd.DataFrame) -> dict[tuple[str, str, str, str], int]:
    """Failed rows per (run, codec, point, metric); a load or codec failure (metric "") counts for every metric."""
    counts: dict[tuple[str, str, str, str], int] = {}
    for key, n in failed.groupby(["run", "codec", "point", "metric"]).size().items():
        counts[tuple(str(k) for k in key)] = int(n)  # type: ignore[index]
    return counts


def summarise(
    ok: pd.DataFrame,
    failed: pd.DataFrame | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Summary rows (columns :data:`SUMMARY_COLUMNS`) of a table that has the system columns added.

    ``ok`` holds only ``ok`` rows; ``failed`` the failed ones (counted into ``n_failed``, never averaged).
    """
    counts = count_failed(failed) if failed is not None and not failed.empty else {}
    rows = []
    keys = ["run", "codec", "point", "metric", "level"]
    rates = ok.groupby(["run", "codec", "point"])[["bitrate_kbps", "frame_rate_hz", "compression_ratio"]].median()
    for (run, codec, point, metric, level), part in ok.groupby(keys, sort=True):
        first = part.iloc[0]
        values = part["value"].to_numpy(dtype=np.float64)
        if level == "item":
            ci = bootstrap_ci(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
            mean, low, high = ci.estimate, ci.low, ci.high
        else:  # one value per point; its own CI (item bootstrap, FAD/KAD/FAD-inf) is in the row's extras
            mean, low, high = float(values.mean()), *_set_ci(part)
        rate = rates.loc[(run, codec, point)]
        n_failed = counts.get((run, codec, point, metric), 0) + counts.get((run, codec, point, ""), 0)
        rows.append(
            dict(
                run=run,
                codec=codec,
                system=first["system"],
                group=first["group"],
                random_init=bool(first["random_init"]),
                weights=first["weights"],
                point=point,
                point_params=first["point_params"],
                bitrate_kbps=float(rate["bitrate_kbps"]),
                frame_rate_hz=float(rate["frame_rate_hz"]),
                compression_ratio=float(rate["compression_ratio"]),
                metric=metric,
                unit=first["unit"],
                higher_is_better=bool(first["higher_is_better"]),
                level=level,
                mean=mean,
                ci_low=low,
                ci_high=high,
                n=len(values),
                n_failed=n_failed,
            )  # fmt: skip
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _set_ci(part: pd.DataFrame) -> tuple[float, float]:
    """(ci_low, ci_high) a set metric computed for its single row (extras JSON), else NaN."""
    import json

    if len(part) != 1 or "extras" not in part.columns:
        return np.nan, np.nan
    try:
        extras = json.loads(part["extras"].iloc[0] or "{}")
    except (TypeError, json.JSONDecodeError):
        return np.nan, np.nan
    low, high = extras.get("ci_low"), extras.get("ci_high")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return np.nan, np.nan
    return float(low), float(high)


def rate_of(row: pd.Series | dict) -> float:
    """The x value of a summary row: nominal kbps (discrete), compression ratio (continuous; frame rate if absent)."""
    if row["group"] == "continuous":
        ratio = row["compression_ratio"]
        return float(ratio) if np.isfinite(ratio) else float(row["frame_rate_hz"])
    return float(row["bitrate_kbps"])


def metric_info(table: pd.DataFrame) -> dict[str, tuple[str, bool]]:
    """Each metric's (unit, higher_is_better), in order of first appearance."""
    info: dict[str, tuple[str, bool]] = {}
    for metric, unit, hib in table[["metric", "unit", "higher_is_better"]].itertuples(index=False):
        if metric and metric not in info:
            info[metric] = (unit, bool(hib))
    return info
