"""ViSQOL: the C++ reference's conformance cases (shared data), silence trimming, options, the process pool."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics import registry
from codecbench.bench.metrics.visqol import active_mask

needs_visqol = pytest.mark.skipif(importlib.util.find_spec("visqol") is None,
                                  reason="visqol-python not installed (pip install 'visqol-python[accel]')")
TOLERANCE_MOS = 0.01


def conformance_cases(folder: Path) -> list[tuple[str, str, bool, float]]:
    """(reference file, degraded file, speech mode, expected MOS) of every case in conformance_test.cc whose two
    files are in ``folder``; expected values from conformance.h."""
    constants = dict(re.findall(r"#define\s+(k\w+)\s+\(([-0-9.e]+)\)", (folder / "conformance.h").read_text()))
    source = (folder / "conformance_test.cc").read_text()
    cases = []
    for body in re.findall(r"ConformanceTestData\((\s*\".*?)\)", source, flags=re.S):
        strings = re.findall(r"((?:\"[^\"]*\"\s*)+),", body)
        paths = ["".join(re.findall(r"\"([^\"]*)\"", s)) for s in strings[:2]]
        tokens = [t.strip() for t in re.sub(r"\"[^\"]*\"", "", body).split(",") if t.strip()]
        speech, constant = tokens[0] == "true", tokens[1]
        ref, deg = (Path(p).name for p in paths)
        if (folder / ref).is_file() and (folder / deg).is_file():
            cases.append((ref, deg, speech, float(constants[constant])))
    return cases


@pytest.fixture(scope="module")
def conformance(shared_data):
    folder = shared_data / "metric-refs" / "visqol-conformance"
    if not folder.is_dir():
        pytest.skip("visqol-conformance data absent")
    return folder, conformance_cases(folder)


def test_conformance_cases_parsed(conformance):
    folder, cases = conformance
    assert len(cases) == 10 and all(not speech for _, _, speech, _ in cases)  # the audio cases with files here
    assert ("strauss48_stereo.wav", "strauss48_stereo_lp35.wav", False, 1.3888791489130758) in cases
    assert ("castanets48_stereo.wav", "castanets48_stereo.wav", False, 4.732101253042348) in cases


@needs_visqol
@pytest.mark.slow
def test_visqol_audio_matches_cpp_conformance(conformance):
    """Every audio case within 0.01 MOS of Google's C++ ViSQOL (v333), through codecbench's path, 2 workers."""
    folder, cases = conformance
    load = lambda name: sf.read(folder / name, dtype="float32", always_2d=True)[0].T  # noqa: E731 - [C, T]
    metric = registry.create("visqol_audio", workers=2)
    values = metric.score_batch([load(r) for r, _, _, _ in cases], [load(d) for _, d, _, _ in cases], 48_000)
    for (ref, deg, _, expected), value in zip(cases, values):
        assert not isinstance(value, MetricFailure), value
        assert abs(value.value - expected) <= TOLERANCE_MOS, (ref, deg, value.value, expected)


def test_active_mask_hand_case():
    rate = 1000  # 20 ms frames = 20 samples
    x = np.zeros(200)
    x[40:60] = 1.0  # frame 2: 0 dB
    x[100:120] = 0.01  # frame 5: -40 dB
    x[160:180] = 0.1  # frame 8: -20 dB
    assert np.flatnonzero(active_mask(x, rate, 30.0)[::20]).tolist() == [2, 8]
    assert np.flatnonzero(active_mask(x, rate, 50.0)[::20]).tolist() == [2, 5, 8]
    assert np.flatnonzero(active_mask(x, rate, 30.0, inner=False)[::20]).tolist() == list(range(2, 9))


def _sparse_pair(rng):
    rate = 48_000
    x = np.zeros(rate * 4, dtype=np.float32)
    for start in (0.3, 1.8, 3.2):
        n = int(0.5 * rate)
        s = int(start * rate)
        x[s : s + n] = 0.3 * rng.standard_normal(n).astype(np.float32) * np.hanning(n).astype(np.float32)
    spectrum = np.fft.rfft(x)
    spectrum[int(2000 * x.size / rate):] = 0  # 2 kHz low-pass
    return x[None], np.fft.irfft(spectrum, x.size).astype(np.float32)[None]


@needs_visqol
@pytest.mark.slow
def test_silence_trimming_changes_the_definition(rng):
    ref, deg = _sparse_pair(rng)
    plain = registry.create("visqol_audio")
    trimmed = registry.create("visqol_audio", trim_silence_db=40.0)
    assert plain.identity() != trimmed.identity()  # part of the cache key
    plain_value, trimmed_value = plain.score(ref, deg, 48_000), trimmed.score(ref, deg, 48_000)
    assert trimmed_value.extras["kept_duration_s"] == pytest.approx(1.4, abs=0.15)  # of 4 s: 3 events of 0.5 s
    assert trimmed_value.value < plain_value.value  # the low-pass is seen once the silent patches are gone


def test_options_validated_and_workers_not_in_identity():
    with pytest.raises(ValueError, match="trim_silence_db must be a positive"):
        registry.create("visqol_audio", trim_silence_db=-3)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        registry.create("visqol_audio", workers=0)
    assert registry.create("visqol_audio", workers=4).identity() == registry.create("visqol_audio").identity()
    assert registry.get("visqol_speech").info.sample_rate_hz == 16_000
    assert registry.get("visqol_audio").info.unit == "MOS" and registry.get("visqol_audio").info.higher_is_better


@needs_visqol
def test_too_short_and_silent_items_fail_with_reason():
    metric = registry.create("visqol_audio")
    with pytest.raises(MetricFailure, match="too short for ViSQOL"):
        metric.score(np.ones((1, 40_000), np.float32), np.ones((1, 40_000), np.float32), 48_000)
    with pytest.raises(MetricFailure, match="digital silence"):
        metric.score(np.zeros((1, 48_000), np.float32), np.zeros((1, 48_000), np.float32), 48_000)


def _tone_pairs(rng, count: int = 3, seconds: float = 1.5):
    rate = 48_000
    t = np.arange(int(seconds * rate)) / rate
    refs = [(0.3 * np.sin(2 * np.pi * (300 + 150 * i) * t) + 0.03 * rng.standard_normal(t.size)).astype(np.float32)[None]
            for i in range(count)]
    degs = [(r + 0.02 * rng.standard_normal(r.shape)).astype(np.float32) for r in refs]
    return refs, degs


@needs_visqol
@pytest.mark.slow
def test_workers_pinned_to_one_thread_and_values_equal_across_worker_counts(rng):
    """2 workers: cores // 2 numba and BLAS threads in each (one on 2 cores; set inside the worker), the pool
    reused by a second call, and the values those of the in-process path (within ViSQOL's own ~1e-14 call-to-call
    jitter)."""
    import os

    from codecbench.bench.core.threads import worker_threads

    refs, degs = _tone_pairs(rng)
    one = registry.create("visqol_audio")
    pool = registry.create("visqol_audio", workers=2)
    try:
        in_process = [v.value for v in one.score_batch(refs, degs, 48_000)]
        pooled = [v.value for v in pool.score_batch(refs, degs, 48_000)]
        probes = pool.worker_thread_counts()
        again = [v.value for v in pool.score_batch(refs, degs, 48_000)]
        assert pool.worker_thread_counts()[0]["pid"] in {p["pid"] for p in probes}  # the same pool, not a new one
    finally:
        pool.close()
    threads = worker_threads(2)
    assert all(p["pid"] != os.getpid() for p in probes)
    assert all(p["numba"] == threads and p["blas"] == threads for p in probes), probes
    assert np.allclose(pooled, in_process, rtol=0, atol=1e-12) and np.allclose(again, in_process, rtol=0, atol=1e-12)
    assert len(set(np.round(in_process, 6))) == len(in_process)  # three different pairs, three different values


@needs_visqol
@pytest.mark.slow
def test_killed_worker_pool_is_replaced(rng):
    """A worker that died between calls (killed, out of memory): the next call starts a fresh pool and scores."""
    import os
    import signal
    import time

    refs, degs = _tone_pairs(rng, count=2)
    pool = registry.create("visqol_audio", workers=2)
    try:
        first = [v.value for v in pool.score_batch(refs, degs, 48_000)]
        for probe in pool.worker_thread_counts():
            os.kill(probe["pid"], signal.SIGKILL)
        time.sleep(0.5)  # let the pool notice
        second = pool.score_batch(refs, degs, 48_000)
    finally:
        pool.close()
    assert not any(isinstance(v, MetricFailure) for v in second), second
    assert np.allclose([v.value for v in second], first, rtol=0, atol=1e-12)
