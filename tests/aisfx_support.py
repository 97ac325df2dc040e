"""Seeded test clips for the aiSFX front-end check (shared by the test and the fixture script).

The clips are generated, so the check needs no shared data: 44.1 kHz mono float32, a decaying filtered-noise
burst, a harmonic chirp, clicks over silence, and a 1.5 s clip shorter than one 100-frame block.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE_HZ = 44_100
FIXTURE = "aisfx_essentia_reference.npz"


def aisfx_clips() -> dict[str, np.ndarray]:
    """name -> float32 [T] at 44.1 kHz (seeded; identical on every machine up to float rounding)."""
    rng = np.random.default_rng(20221204)
    sr = SAMPLE_RATE_HZ
    t4 = np.arange(4 * sr) / sr
    noise = rng.standard_normal(t4.size)
    burst = np.convolve(noise, np.ones(8) / 8, mode="same") * np.exp(-1.5 * t4) * 0.5
    f_hz = 200.0 * 2.0 ** (t4 * 1.5)  # 200 Hz -> 1.6 kHz in 4 s
    phase = 2 * np.pi * np.cumsum(f_hz) / sr
    chirp = sum(0.3 / k * np.sin(k * phase) for k in range(1, 6))
    t5 = np.arange(5 * sr) / sr
    clicks = np.zeros(t5.size)
    for start in rng.integers(0, t5.size - 2000, size=12):
        clicks[start : start + 2000] += rng.standard_normal(2000) * np.exp(-np.arange(2000) / 200.0) * 0.6
    short = 0.2 * np.sin(2 * np.pi * 440.0 * np.arange(int(1.5 * sr)) / sr) + 0.02 * rng.standard_normal(int(1.5 * sr))
    clips = {"burst": burst, "chirp": chirp, "clicks": clicks, "short": short}
    # peak 0.9: audio loaders (Essentia's among them) clip float samples to [-1, 1]
    return {name: np.asarray(0.9 * x / np.abs(x).max(), dtype=np.float32) for name, x in clips.items()}
