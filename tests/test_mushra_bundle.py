"""MUSHRA bundle builder: selection, loudness, excerpts, anchors, opaque stimulus names, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from codecbench.bench.core import audio as audio_io
from codecbench.bench.core.cache import Cache
from codecbench.listening_test.bundle import BundleError, build_bundle, integrated_loudness_lufs, load_bundle
from mushra_support import SAMPLE_RATE_HZ, write_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory):
    return build_bundle(run_dir, tmp_path_factory.mktemp("b") / "bundle", excerpt_s=1.5)


def _source_audio(run_dir, item_id, codec, point):
    import pandas as pd

    table = pd.read_parquet(run_dir / "results.parquet")
    row = table[(table.codec == codec) & (table.point == point) & (table.item_id == item_id)].iloc[0]
    cache = run_dir.parent / "cache"
    return audio_io.read(cache / "decoded" / row.decoded_key[:2] / f"{row.decoded_key}.wav")[0]


def test_bundle_layout_selection_and_rule(bundle):
    description = load_bundle(bundle)
    assert sorted(p.name for p in bundle.iterdir()) == ["audio", "bundle.json", "page"]
    assert sorted(p.name for p in (bundle / "page").iterdir()) == ["index.html", "mushra.css", "mushra.js"]
    names = [c["condition"] for c in description["conditions"]]
    assert names == ["reference", "lowpass_7k", "lowpass_3k5", "opus@bitrate_kbps=12", "opus@bitrate_kbps=6",
                     "toycodec"]
    assert description["selection"]["conditions_rule"] == "every condition under test in the run"
    assert description["selection"]["items_rule"] == "every item decoded by all selected conditions (3)"
    assert description["selection"]["anchor_sources"] == {"lowpass_7k": "run", "lowpass_3k5": "run"}
    assert [i["item_id"] for i in description["items"]] == ["clip00#0", "clip01#0", "clip02#0"]
    for item in description["items"]:
        assert len(item["stimuli"]) == 6
        for s in item["stimuli"]:  # file names reveal nothing about the condition
            assert s["condition"] not in s["file"] and s["codec"] not in s["file"]
            assert s["file"] == f"audio/{item['key']}/{s['id']}.wav"


def test_same_gain_for_every_condition_and_target_loudness(bundle, run_dir):
    description = load_bundle(bundle)
    item = description["items"][1]
    n = int(1.5 * SAMPLE_RATE_HZ)
    gain = 10 ** (item["gain_db"] / 20)
    ref, rate = audio_io.read(bundle / item["reference_file"])
    assert rate == SAMPLE_RATE_HZ and ref.shape == (1, n)
    assert integrated_loudness_lufs(ref, rate) == pytest.approx(-23.0, abs=0.05)
    for s in item["stimuli"]:
        written, _ = audio_io.read(bundle / s["file"])
        if s["condition"] == "reference":
            original = audio_io.read(run_dir.parent / "cache" / "clips" / item["clip_hash"][:2]
                                     / f"{item['clip_hash']}.wav")[0]
        else:
            original = _source_audio(run_dir, item["item_id"], s["codec"], s["point"])
        # PCM 16-bit: error below one quantisation step
        np.testing.assert_allclose(written, original[:, :n] * gain, atol=1.0 / 32768)


def test_excerpt_at_most_12_s_and_peak_limit(run_dir, tmp_path):
    with pytest.raises(BundleError, match=r"excerpt_s=12.5: must be in \(0, 12.0\]"):
        build_bundle(run_dir, tmp_path / "x", excerpt_s=12.5)
    loud = build_bundle(run_dir, tmp_path / "loud", target_lufs=0.0, items=["clip00#0"])
    item = load_bundle(loud)["items"][0]
    assert item["peak_limited"] is True and item["duration_s"] == 2.0
    peak = max(np.abs(audio_io.read(loud / s["file"])[0]).max() for s in item["stimuli"])
    assert peak == pytest.approx(10 ** (-1 / 20), abs=2e-3)


def test_selection_by_codec_and_items(run_dir, tmp_path):
    out = build_bundle(run_dir, tmp_path / "b", conditions=["opus"], items=["clip02#0", "clip01#0"],
                       training_item="clip01#0")
    description = load_bundle(out)
    assert [c["condition"] for c in description["conditions"]][3:] == ["opus@bitrate_kbps=12", "opus@bitrate_kbps=6"]
    assert description["training_item"] == "clip01#0"
    assert "conditions given on the command line (opus)" == description["selection"]["conditions_rule"]
    sampled = build_bundle(run_dir, tmp_path / "s", max_items=2, seed=3)
    assert "2 of 3 complete items drawn at random (seed 3)" == load_bundle(sampled)["selection"]["items_rule"]


def test_errors_unknown_condition_item_and_existing_folder(run_dir, bundle, tmp_path):
    with pytest.raises(BundleError, match=r"unknown condition 'opus@bitrate_kbps=99'.*opus@bitrate_kbps=12"):
        build_bundle(run_dir, tmp_path / "x", conditions=["opus@bitrate_kbps=99"])
    with pytest.raises(BundleError, match=r"unknown item 'nope#0'; the run's items"):
        build_bundle(run_dir, tmp_path / "x", items=["nope#0"])
    with pytest.raises(BundleError, match="folder exists and is not empty"):
        build_bundle(run_dir, bundle)
    with pytest.raises(BundleError, match="results.parquet: missing"):
        build_bundle(tmp_path, tmp_path / "y")


def test_too_many_conditions(tmp_path):
    many = {f"c{i}": ("default",) for i in range(10)}
    run = write_run(tmp_path, n_items=1, duration_s=1.0, conditions=many)
    with pytest.raises(BundleError, match=r"10 conditions under test selected, at most 9 fit a trial \(12 signals"):
        build_bundle(run, tmp_path / "b")


def test_run_without_decoded_audio(tmp_path):
    run = write_run(tmp_path, n_items=1, duration_s=1.0)
    shutil.rmtree(tmp_path / "cache" / "decoded")
    with pytest.raises(BundleError, match="has no decoded/ folder; the bundle needs the run's decoded audio"):
        build_bundle(run, tmp_path / "b")


def test_missing_decoded_file(tmp_path):
    import pandas as pd

    run = write_run(tmp_path, n_items=1, duration_s=1.0)
    table = pd.read_parquet(run / "results.parquet")
    key = table[(table.codec == "opus") & (table.level == "item")].decoded_key.iloc[0]
    (tmp_path / "cache" / "decoded" / key[:2] / f"{key}.wav").unlink()
    with pytest.raises(BundleError, match=r"is missing from the run's decoded-audio cache"):
        build_bundle(run, tmp_path / "b")


@pytest.mark.parametrize("problem", ["length", "rate"])
def test_mismatched_length_or_rate(tmp_path, problem):
    import pandas as pd

    run = write_run(tmp_path, n_items=1, duration_s=1.0)
    table = pd.read_parquet(run / "results.parquet")
    key = table[(table.codec == "toycodec") & (table.level == "item")].decoded_key.iloc[0]
    path = tmp_path / "cache" / "decoded" / key[:2] / f"{key}.wav"
    data, rate = audio_io.read(path)
    cache = Cache(tmp_path / "cache")  # a consistent entry (digest record matches) with the wrong shape or rate
    if problem == "length":
        cache.put_audio("decoded", key, data[:, :-10], rate)
        match = r"toycodec default on item 'clip00#0' has shape \[C, T\] = \[1, 23990\], its reference \[1, 24000\]"
    else:
        cache.put_audio("decoded", key, data, 16_000)
        match = r"toycodec default on item 'clip00#0' is at 16000 Hz, its reference at 24000 Hz"
    with pytest.raises(BundleError, match=match):
        build_bundle(run, tmp_path / "b")


def test_anchors_made_with_registry_when_run_lacks_them(tmp_path):
    pytest.importorskip("codecbench.codecs.anchors", reason="anchor codecs (codecs/anchors.py) not available yet")
    run = write_run(tmp_path, n_items=1, duration_s=1.0, with_anchors=False)
    out = build_bundle(run, tmp_path / "b")
    description = load_bundle(out)
    assert set(description["selection"]["anchor_sources"].values()) == {"made by the bundle (registry)"}
    item = description["items"][0]
    spectra = {}
    for s in item["stimuli"]:
        x = audio_io.read(out / s["file"])[0][0]
        power = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE_HZ)
        spectra[s["condition"]] = power[freqs > 8000].sum() / power.sum()
    # the 3.5 kHz and 7 kHz anchors remove the content above 8 kHz that the reference has
    assert spectra["lowpass_3k5"] < 1e-3 * spectra["reference"]
    assert spectra["lowpass_7k"] < 1e-2 * spectra["reference"]


def test_bundle_json_refuses_unknown_version_and_outside_files(bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    description = json.loads((copy / "bundle.json").read_text())
    description["items"][0]["stimuli"][0]["file"] = "../../etc/passwd"
    (copy / "bundle.json").write_text(json.dumps(description))
    with pytest.raises(BundleError, match=r"names '../../etc/passwd', which is not a file of the bundle"):
        load_bundle(copy)
    description["format_version"] = 99
    (copy / "bundle.json").write_text(json.dumps(description))
    with pytest.raises(BundleError, match="bundle format version 99 is not supported"):
        load_bundle(copy)
