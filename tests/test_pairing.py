"""Length policy and measured alignment (bench/pairing.py), against hand-made cases and the spresso-demo folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from codecbench.bench import config as config_mod
from codecbench.bench import pairing
from codecbench.bench.core.errors import ConfigError

SR = 48000
ON = pairing.AlignmentSpec(max_lag_ms=50.0, per="condition")
PER_ITEM = pairing.AlignmentSpec(max_lag_ms=50.0, per="item")


def clip(rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    """A sound-effect-like clip [1, T]: noise bursts under a slow random envelope."""
    n = int(seconds * SR)
    envelope = np.repeat(rng.uniform(0.0, 1.0, n // 2400 + 1), 2400)[:n]
    return (envelope * rng.standard_normal(n))[None].astype(np.float32)


def delayed(x: np.ndarray, lag: int) -> np.ndarray:
    """``x`` late by ``lag`` samples (early when negative), same length."""
    if lag >= 0:
        return np.concatenate([np.zeros((x.shape[0], lag), x.dtype), x[:, : x.shape[1] - lag]], axis=1)
    return np.concatenate([x[:, -lag:], np.zeros((x.shape[0], -lag), x.dtype)], axis=1)


def phase_randomised(x: np.ndarray, rng: np.random.Generator, frame: int = 2048) -> np.ndarray:
    """A 'generative' rendering: every frame keeps its magnitude spectrum, with random phases."""
    out = np.zeros_like(x)
    for start in range(0, x.shape[1] - frame + 1, frame):
        spectrum = np.fft.rfft(x[0, start : start + frame])
        phases = np.exp(2j * np.pi * rng.uniform(size=spectrum.shape))
        out[0, start : start + frame] = np.fft.irfft(np.abs(spectrum) * phases, frame)
    return out


def test_default_is_off_and_touches_nothing(rng):
    ref = [clip(rng)]
    deg = [delayed(ref[0], 100)]
    refs, degs, records = pairing.prepare(ref, deg, SR)
    assert records[0].lag.lag_decision == "off" and records[0].lag.lag_samples == 0
    np.testing.assert_array_equal(degs[0], deg[0])
    assert records[0].columns()["lag_ms"] == 0.0 and records[0].columns()["length_policy"] == "trim"


@pytest.mark.parametrize("spec", [ON, PER_ITEM], ids=["condition", "item"])
def test_known_integer_delay_is_found(rng, spec):
    refs = [clip(rng) for _ in range(3)]
    for lag in (137, -61):
        degs = [delayed(r, lag) + 0.05 * rng.standard_normal(r.shape).astype(np.float32) for r in refs]
        out_refs, out_degs, records = pairing.prepare(refs, degs, SR, alignment=spec)
        for record, r, d in zip(records, out_refs, out_degs):
            assert record.lag.lag_decision == "accepted" and record.lag.lag_samples == lag
            assert record.lag.lag_scope == spec.per and record.lag.lag_peak_z >= pairing.Z_THRESHOLD
            assert record.columns()["lag_ms"] == pytest.approx(1000 * lag / SR)
            assert r.shape == d.shape and r.shape[-1] == refs[0].shape[-1] - abs(lag)
            assert np.corrcoef(r[0], d[0])[0, 1] > 0.99  # really aligned


@pytest.mark.parametrize("spec", [ON, PER_ITEM], ids=["condition", "item"])
def test_unrelated_clips_get_no_shift(rng, spec):
    refs = [clip(rng) for _ in range(3)]
    degs = [clip(rng) for _ in range(3)]
    _, out_degs, records = pairing.prepare(refs, degs, SR, alignment=spec)
    for record, d, original in zip(records, out_degs, degs):
        assert record.lag.lag_samples == 0 and record.lag.lag_decision.startswith("rejected: ")
        np.testing.assert_array_equal(d, original)


def test_generative_output_gets_no_shift(rng):
    refs = [clip(rng) for _ in range(3)]
    degs = [phase_randomised(r, rng) for r in refs]
    for spec in (ON, PER_ITEM):
        _, _, records = pairing.prepare(refs, degs, SR, alignment=spec)
        assert all(r.lag.lag_samples == 0 and r.lag.lag_decision.startswith("rejected") for r in records)


def test_silent_and_tiny_windows_are_rejected(rng):
    ref = clip(rng, 0.5)
    _, _, records = pairing.prepare([ref], [np.zeros_like(ref)], SR, alignment=ON)
    assert records[0].lag.lag_decision == "rejected: silent signal"
    tiny = pairing.AlignmentSpec(max_lag_ms=0.2, per="item")  # +/- 10 samples: nothing off-peak to test against
    _, _, records = pairing.prepare([ref], [ref.copy()], SR, alignment=tiny)
    assert records[0].lag.lag_decision.startswith("rejected: window too small")


def test_length_policy_trim_and_pad():
    ref = np.arange(10, dtype=np.float32)[None] + 1
    short = ref[:, :8].copy()
    r, d, trimmed, padded = pairing.apply_length_policy(ref, short, "trim")
    assert r.shape[-1] == d.shape[-1] == 8 and (trimmed, padded) == (2, 0)
    r, d, trimmed, padded = pairing.apply_length_policy(ref, short, "pad")
    assert r.shape[-1] == d.shape[-1] == 10 and (trimmed, padded) == (0, 2) and d[0, -2:].tolist() == [0, 0]
    # a reader already padded 3 zeros onto the decoded signal: trim takes them off again
    read = np.concatenate([short[:, :7], np.zeros((1, 3), np.float32)], axis=1)
    r, d, trimmed, padded = pairing.apply_length_policy(ref, read, "trim", padded_samples=3)
    assert r.shape[-1] == d.shape[-1] == 7 and trimmed == 3
    _, _, _, padded = pairing.apply_length_policy(ref, read, "pad", padded_samples=3)
    assert padded == 3
    longer = np.ones((1, 12), np.float32)
    r, d, trimmed, _ = pairing.apply_length_policy(ref, longer, "pad")
    assert d.shape[-1] == 10 and trimmed == 2
    with pytest.raises(ConfigError, match="length_policy: 'stretch' is not one of trim, pad"):
        pairing.apply_length_policy(ref, short, "stretch")


def test_config_keys(tmp_path):
    base = {"name": "x", "dataset": {"path": str(tmp_path)}, "codecs": [{"name": "reference"}]}
    cfg = config_mod.parse(base)
    assert cfg.alignment == pairing.AlignmentSpec() and not cfg.alignment.enabled and cfg.length_policy == "trim"
    cfg = config_mod.parse({**base, "alignment": {"max_lag_ms": 20, "per": "item"}, "length_policy": "pad"})
    assert cfg.alignment == pairing.AlignmentSpec(20.0, "item") and cfg.length_policy == "pad"
    saved = cfg.to_dict()  # what config.yaml holds reads back
    assert config_mod.parse({**base, "alignment": saved["alignment"]}).alignment == cfg.alignment
    for bad, message in (
        ({"alignment": {"max_lag_ms": -1}}, r"alignment.max_lag_ms: expected a number of milliseconds in \[0, 1000\]"),
        ({"alignment": {"max_lag_ms": "20"}}, "alignment.max_lag_ms"),
        ({"alignment": {"per": "run"}}, "alignment.per: 'run' is not one of condition, item"),
        ({"alignment": {"lag": 3}}, "alignment"),
        ({"length_policy": "stretch"}, "length_policy: 'stretch' is not one of trim, pad"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_mod.parse({**base, **bad})


# ----------------------------------------------------------------------------------------------------------------
# On real decoded outputs (the shared data folder's spresso-demo; skipped when absent)
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture
def demo(shared_data: Path) -> Path:
    """The S-PRESSO paper's decoded outputs in the shared data folder (conftest's ``shared_data``)."""
    folder = shared_data / "spresso-demo"
    if not (folder / "src").is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


def _plain_si_sdr_db(ref: np.ndarray, deg: np.ndarray) -> float:
    """Independent zero-mean SI-SDR of two 1-D signals (numpy only, no codecbench code)."""
    ref = ref - ref.mean()
    deg = deg - deg.mean()
    target = (np.dot(deg, ref) / np.dot(ref, ref)) * ref
    return float(10 * np.log10(np.sum(target**2) / np.sum((deg - target) ** 2)))


def test_demo_si_sdr_defaults_match_plain_si_sdr_on_trimmed_signals(demo: Path):
    import soundfile as sf
    import soxr
    from codecbench.bench import score as score_mod

    conditions = sorted(p.name for p in demo.iterdir() if p.is_dir() and p.name != "src")
    rate_fixes = {"music2latent": 48000, "stableaudio": 48000}  # headers say 44100 Hz for 48 kHz samples
    checked = 0
    for condition in conditions:
        table = score_mod.score(demo / "src", demo / condition, metrics=["si_sdr"],
                                decoded_sample_rate_hz=rate_fixes.get(condition))
        for row in table.itertuples(index=False):
            ref, ref_rate = sf.read(demo / "src" / Path(row.clip_path).name, dtype="float64")
            deg, deg_rate = sf.read(json.loads(row.extras_processing)["decoded_path"], dtype="float64")
            deg_rate = rate_fixes.get(condition, deg_rate)
            if deg_rate != 48000:
                deg = soxr.resample(deg, deg_rate, 48000, quality="VHQ")
            n = min(len(ref), len(deg))
            assert row.status == "ok" and row.lag_samples == 0 and row.length_policy == "trim"
            assert abs(row.value - _plain_si_sdr_db(ref[:n], deg[:n])) <= 0.05, (condition, row.item_id)
            checked += 1
    assert checked == 3 * len(conditions)


def test_demo_generative_outputs_get_no_shift_with_alignment_on(demo: Path):
    from codecbench.codecs import precomputed

    for condition in ("spresso-0.096kbps", "semanticodec-0.3125kbps", "semanticodec-1.4kbps"):
        folder = precomputed.read_pairs(demo / "src", demo / condition)
        refs = [i.reference for i in folder.items]
        degs = [i.decoded for i in folder.items]
        for spec in (ON, PER_ITEM):
            _, _, records = pairing.prepare(refs, degs, SR, alignment=spec)
            assert all(r.lag.lag_samples == 0 for r in records), (condition, spec, [r.lag for r in records])
