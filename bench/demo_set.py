"""The built-in demo set: procedurally generated 5-s, 48 kHz sound effects, deterministic from a seed.

Nine sounds covering what sound-effect codecs meet: an impact with resonant modes, rain (noise texture with
droplets), a harmonic tone with vibrato, an FM chirp, footsteps (transients), an engine (low harmonics with
amplitude modulation), a bell (inharmonic partials), wind (slowly modulated band-pass noise) and a stereo scene
(birdsong chirps panned left and right). No audio is committed; :func:`write_demo_set` renders them to a folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 48_000
DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"  # the demo benchmark (``codecbench demo``)
DURATION_S = 5.0


def _time() -> np.ndarray:
    return np.arange(int(SAMPLE_RATE_HZ * DURATION_S)) / SAMPLE_RATE_HZ


def _normalise(x: np.ndarray, peak: float = 0.7) -> np.ndarray:
    return (peak * x / np.max(np.abs(x))).astype(np.float32)


def _bandpass(x: np.ndarray, low_hz: float, high_hz: float, order: int = 4) -> np.ndarray:
    from scipy import signal

    sos = signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=SAMPLE_RATE_HZ, output="sos")
    return signal.sosfilt(sos, x)


def impact(rng: np.random.Generator) -> np.ndarray:
    """A struck object: a noise burst exciting decaying resonant modes, hit three times."""
    t = _time()
    out = np.zeros_like(t)
    for onset_s in (0.2, 1.7, 3.1):
        tau = t - onset_s
        on = tau >= 0
        modes = rng.uniform(150, 3000, size=6)
        env = np.exp(-tau[on] * rng.uniform(4, 9))
        ring = sum(np.sin(2 * np.pi * f * tau[on]) * np.exp(-tau[on] * f / 400) for f in modes)
        burst = rng.standard_normal(on.sum()) * np.exp(-tau[on] * 60)
        out[on] += env * ring + 2 * burst
    return _normalise(out)


def rain(rng: np.random.Generator) -> np.ndarray:
    """Rain: pink-ish noise bed plus a few hundred short droplets."""
    from scipy import signal

    n = int(SAMPLE_RATE_HZ * DURATION_S)
    bed = signal.lfilter([1.0], [1.0, -0.95], rng.standard_normal(n)) * 0.05
    drops = np.zeros(n)
    for start in rng.integers(0, n - 2000, size=400):
        length = 600
        k = np.arange(length)
        drops[start : start + length] += (
            rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * rng.uniform(2000, 7000) * k / SAMPLE_RATE_HZ) * np.exp(-k / 80)
        )
    return _normalise(bed + drops)


def harmonic_tone(rng: np.random.Generator) -> np.ndarray:
    """A bowed-string-like tone: 20 harmonics with vibrato and a slow swell."""
    t = _time()
    f0 = rng.uniform(180, 260)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))) / SAMPLE_RATE_HZ
    tone = sum(np.sin(k * phase) / k**1.2 for k in range(1, 21))
    return _normalise(tone * np.sin(np.pi * t / DURATION_S) ** 0.5)


def fm_chirp(rng: np.random.Generator) -> np.ndarray:
    """A sci-fi sweep: FM synthesis with an exponentially rising carrier."""
    t = _time()
    carrier = 200 * (40 ** (t / DURATION_S))
    modulator = np.sin(2 * np.pi * rng.uniform(50, 120) * t) * rng.uniform(2, 5)
    return _normalise(np.sin(2 * np.pi * np.cumsum(carrier) / SAMPLE_RATE_HZ + modulator) * 0.9)


def footsteps(rng: np.random.Generator) -> np.ndarray:
    """Footsteps on gravel: transient clusters at a walking pace."""
    n = int(SAMPLE_RATE_HZ * DURATION_S)
    out = np.zeros(n)
    for step_s in np.arange(0.3, DURATION_S - 0.3, 0.55):
        start = int((step_s + rng.uniform(-0.03, 0.03)) * SAMPLE_RATE_HZ)
        for _ in range(30):
            at = start + int(rng.exponential(1500))
            if at + 400 < n:
                k = np.arange(400)
                out[at : at + 400] += rng.standard_normal(400) * np.exp(-k / rng.uniform(20, 80))
    return _normalise(_bandpass(out, 200, 9000))


def engine(rng: np.random.Generator) -> np.ndarray:
    """An idling engine: low harmonic series with firing-rate amplitude modulation and some rumble."""
    t = _time()
    f0 = rng.uniform(28, 40)
    hum = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 16))
    rumble = _bandpass(rng.standard_normal(t.size), 40, 400) * 0.6
    return _normalise((hum + rumble) * (1 + 0.5 * np.sin(2 * np.pi * f0 / 2 * t)))


def bell(rng: np.random.Generator) -> np.ndarray:
    """A bell: inharmonic partials (ratios of a church bell) with long decays, struck twice."""
    t = _time()
    f0 = rng.uniform(300, 500)
    ratios = (0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 2.66, 3.01, 4.1)
    out = np.zeros_like(t)
    for onset_s in (0.1, 2.6):
        tau = np.clip(t - onset_s, 0, None)
        on = t >= onset_s
        out += on * sum(np.sin(2 * np.pi * f0 * r * tau) * np.exp(-tau * (0.6 + r)) / (1 + r) for r in ratios)
    return _normalise(out)


def wind(rng: np.random.Generator) -> np.ndarray:
    """Wind: band-pass noise whose centre frequency and level drift slowly."""
    n = int(SAMPLE_RATE_HZ * DURATION_S)
    t = _time()
    noise = rng.standard_normal(n)
    low = _bandpass(noise, 200, 800)
    high = _bandpass(noise, 800, 3000)
    drift = 0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6))
    gust = 0.4 + 0.6 * np.sin(2 * np.pi * 0.17 * t) ** 2
    return _normalise(gust * (drift * low + (1 - drift) * high))


def stereo_birds(rng: np.random.Generator) -> np.ndarray:
    """Two birds, one left and one right, chirping in turns over a soft noise bed (stereo, [2, T])."""
    n = int(SAMPLE_RATE_HZ * DURATION_S)
    channels = np.zeros((2, n))
    for side in (0, 1):
        for start_s in np.arange(0.2 + 0.3 * side, DURATION_S - 0.3, 0.9):
            start = int(start_s * SAMPLE_RATE_HZ)
            length = int(0.12 * SAMPLE_RATE_HZ)
            k = np.arange(length) / SAMPLE_RATE_HZ
            f = rng.uniform(3000, 5000) + 4000 * k / 0.12
            chirp = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE_HZ) * np.hanning(length)
            channels[side, start : start + length] += chirp
            channels[1 - side, start : start + length] += 0.2 * chirp
    channels += 0.01 * rng.standard_normal((2, n))
    return _normalise(channels)


SOUNDS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "impact": impact,
    "rain": rain,
    "harmonic_tone": harmonic_tone,
    "fm_chirp": fm_chirp,
    "footsteps": footsteps,
    "engine": engine,
    "bell": bell,
    "wind": wind,
    "stereo_birds": stereo_birds,
}


def generate(name: str, seed: int = 0) -> np.ndarray:
    """One demo sound as float32 [C, T] at 48 kHz; the same (name, seed) always gives the same samples."""
    rng = np.random.default_rng([seed, list(SOUNDS).index(name)])
    audio = SOUNDS[name](rng)
    return audio if audio.ndim == 2 else audio[None]


def write_demo_set(folder: str | Path, seed: int = 0, names: list[str] | None = None) -> list[Path]:
    """Render the demo sounds as float WAV files into ``folder`` (skips files already rendered)."""
    from codecbench.bench.core import audio

    folder = Path(folder)
    paths = []
    for name in names or list(SOUNDS):
        path = folder / f"{name}.wav"
        if not path.is_file():
            audio.write(path, generate(name, seed), SAMPLE_RATE_HZ)
        paths.append(path)
    return paths
