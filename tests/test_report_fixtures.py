"""A synthetic run folder with known values, in the layout of docs/architecture.md, for the report tests.

Known by construction (6 items whose offsets sum to zero, so every mean is exact):
- ``opus`` (classic) at 3, 6, 12, 24 kbps: si_sdr = 10 log10(kbps) dB, mel_distance = 2 / kbps.
- ``neuralx`` (neural, random init) at 1.5, 3, 6, 12 kbps: si_sdr = 10 log10(kbps) + 3 dB (so +3 dB at equal
  rate and a BD-rate of 10^-0.3 - 1 = -49.88 % against opus), mel_distance = 1 / kbps; one codec failure
  (item clip2#0, offset 0, at 1.5 kbps: the mean over the other five stays exact).
- ``latent`` (continuous) at compression ratios 32, 64, 128 (frame rates 25, 12.5, 6.25 Hz): si_sdr = 20, 15, 10.
- anchors ``lowpass`` (3.5 kHz: si_sdr 5 dB; 7 kHz: 8 dB) and ``reference`` (si_sdr 60 dB).
- set-level ``fad`` per point (lower is better) = 1 / kbps (discrete), 1 / frame rate (continuous).
The module also checks the fixture itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

ITEM_OFFSETS_DB = np.array([-1.5, -0.5, 0.0, 0.25, 0.75, 1.0])  # sum 0
ITEMS = [f"clip{i}#0" for i in range(len(ITEM_OFFSETS_DB))]
SAMPLE_RATE_HZ = 48_000


def _row(**kw) -> dict:
    base = dict(
        run="synth", codec="", codec_kind="classic", is_anchor=False, weights="not needed", point="",
        point_params="{}", bitrate_kbps=np.nan, serialized_kbps=np.nan, container_overhead_kbps=np.nan,
        entropy_coded_kbps=np.nan, frame_rate_hz=np.nan, compression_ratio=np.nan, item_id="", clip_path="",
        clip_hash="", decoded_key="", duration_s=1.0, level="item", metric="", unit="", higher_is_better=True,
        value=np.nan, status="ok", stage="", error="", extras="{}", seed=0,
    )  # fmt: skip
    base.update(kw)
    return base


def synthetic_rows(run: str = "synth") -> list[dict]:
    rows: list[dict] = []

    def item_rows(codec, kind, point, params, rate_cols, si_sdr, mel, weights="not needed", anchor=False, fail=()):
        for i, item in enumerate(ITEMS):
            common = dict(
                run=run, codec=codec, codec_kind=kind, is_anchor=anchor, weights=weights, point=point,
                point_params=json.dumps(params), item_id=item, clip_hash=f"clip{i}", decoded_key=f"{codec}-{point}-{i}",
                **rate_cols,
            )  # fmt: skip
            if item in fail:
                rows.append(_row(**common, status="failed", stage="codec", error="synthetic failure"))
                continue
            rows.append(_row(**common, metric="si_sdr", unit="dB", value=si_sdr + ITEM_OFFSETS_DB[i]))
            if mel is not None:
                rows.append(
                    _row(
                        **common,
                        metric="mel_distance",
                        unit="",
                        higher_is_better=False,
                        value=mel + 0.1 * ITEM_OFFSETS_DB[i],
                    )
                )

    def set_row(codec, kind, point, params, rate_cols, fad, weights="not needed"):
        rows.append(
            _row(run=run, codec=codec, codec_kind=kind, weights=weights, point=point, point_params=json.dumps(params),
                 level="set", metric="fad", unit="", higher_is_better=False, value=fad, **rate_cols)
        )  # fmt: skip

    for kbps in (3.0, 6.0, 12.0, 24.0):
        rc = dict(bitrate_kbps=kbps, frame_rate_hz=50.0)
        item_rows(
            "opus", "classic", f"bitrate_kbps={kbps:g}", {"bitrate_kbps": kbps}, rc, 10 * np.log10(kbps), 2 / kbps
        )
        set_row("opus", "classic", f"bitrate_kbps={kbps:g}", {"bitrate_kbps": kbps}, rc, 1 / kbps)
    for n_q, kbps in ((1, 1.5), (2, 3.0), (4, 6.0), (8, 12.0)):
        rc = dict(bitrate_kbps=kbps, frame_rate_hz=75.0)
        w = "random-init (no pretrained weights)"
        fail = (ITEMS[2],) if kbps == 1.5 else ()  # offset 0: the mean stays exact
        item_rows("neuralx", "neural", f"n_q={n_q}", {"n_q": n_q}, rc, 10 * np.log10(kbps) + 3, 1 / kbps, w, fail=fail)
        set_row("neuralx", "neural", f"n_q={n_q}", {"n_q": n_q}, rc, 1 / kbps, w)
    for t, ratio, fr, si in ((4, 32.0, 25.0, 20.0), (8, 64.0, 12.5, 15.0), (16, 128.0, 6.25, 10.0)):
        rc = dict(compression_ratio=ratio, frame_rate_hz=fr)
        item_rows("latent", "continuous", f"t={t}", {"t": t}, rc, si, None)
        set_row("latent", "continuous", f"t={t}", {"t": t}, rc, 1 / fr)
    for cutoff, si in ((3500, 5.0), (7000, 8.0)):
        item_rows("lowpass", "anchor", f"cutoff_hz={cutoff}", {"cutoff_hz": cutoff}, {}, si, None, anchor=True)
    item_rows("reference", "anchor", "reference", {}, {}, 60.0, None, anchor=True)
    return rows


def write_synthetic_run(root: Path, run: str = "synth", *, with_audio: bool = False) -> Path:
    """Write ``root/<run>/`` (results.parquet, results.csv, manifest.json) and, optionally, a cache with audio."""
    run_dir = root / run
    run_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(synthetic_rows(run))
    table.to_parquet(run_dir / "results.parquet", index=False)
    table.to_csv(run_dir / "results.csv", index=False)
    cache = root / ".cache"
    manifest = {
        "run": run, "seed": 1234, "git_commit": "abc1234", "cache_dir": str(cache),
        "versions": {"codecbench": "0.1.0", "torch": "2.11.0"},
        "weights": {"neuralx": "random-init (no pretrained weights)", "opus": "not needed"},
    }  # fmt: skip
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if with_audio:
        from codecbench.bench.core.cache import Cache

        rng = np.random.default_rng(0)
        for row in table.itertuples():
            for sub, key in (("clips", row.clip_hash), ("decoded", row.decoded_key)):
                path = cache / sub / key[:2] / f"{key}.wav"
                if key and not path.exists():  # written through the cache: with its digest record
                    audio = 0.1 * rng.standard_normal(SAMPLE_RATE_HZ // 2).astype(np.float32)
                    Cache(cache).put_audio(sub, key, audio, SAMPLE_RATE_HZ)
    return run_dir


def test_fixture_means_are_exact(tmp_path):
    run_dir = write_synthetic_run(tmp_path)
    table = pd.read_parquet(run_dir / "results.parquet")
    ok = table[(table["status"] == "ok") & (table["metric"] == "si_sdr")]
    means = ok.groupby(["codec", "point"])["value"].mean()
    assert np.isclose(means[("opus", "bitrate_kbps=12")], 10 * np.log10(12.0), atol=1e-12)
    assert np.isclose(means[("neuralx", "n_q=1")], 10 * np.log10(1.5) + 3, atol=1e-12)
    assert int((table["status"] == "failed").sum()) == 1
