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
