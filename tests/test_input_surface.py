"""The closed input surface: every config value and CLI argument is checked before work starts; bad input ends in
exit code 2 and one line naming the key (or argument, or file), never a traceback."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from codecbench.bench import cli, config, validate
from codecbench.bench.core.errors import ConfigError
from codecbench.bench.metrics import registry as metric_registry
from codecbench.codecs import registry as codec_registry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BASE = {
    "name": "surface",
    "dataset": {"path": "data", "sample_rate_hz": 16000, "segment_s": 1.0},
    "codecs": [{"name": "opus", "grid": {"bitrate_kbps": [6, 12]}}, {"name": "lowpass_3k5"}],
    "metrics": ["si_sdr", {"name": "mel_distance"}],
    "seed": 0,
    "retries": 1,
    "report": False,
}


def run_cli(argv, capsys):
    """codecbench in-process: (exit code, stderr); argparse's own exits (usage errors) count as exit code 2."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def write_config(tmp_path: Path, raw) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("codecbench: error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- options checked at config time, for every registered codec and metric ---------------------------------------
def _misspelt(accepted: set[str]) -> tuple[str, str | None]:
    if not accepted:
        return "bogus_option", None
    option = sorted(accepted)[0]
    return option + "x", option


@pytest.mark.parametrize("name", codec_registry.names())
def test_misspelt_codec_option_is_one_line_exit_2(name, tmp_path, capsys):
    from codecbench.codecs.base import Codec

    accepted, _ = validate.accepted_options(codec_registry.get(name), Codec)
    wrong, right = _misspelt(accepted)
    raw = {**BASE, "codecs": [{"name": name, "options": {wrong: 1}}]}
    code, err = run_cli(["run", write_config(tmp_path, raw)], capsys)
    line = one_line_error(err)
    assert code == 2
    assert f"codecs[0].options.{wrong}: unknown option" in line
    if right:
        assert f"did you mean '{right}'?" in line


@pytest.mark.parametrize("name", metric_registry.names())
def test_misspelt_metric_option_is_one_line_exit_2(name, tmp_path, capsys):
    from codecbench.bench.metrics.base import Metric

    accepted, _ = validate.accepted_options(metric_registry.get(name), Metric)
    wrong, right = _misspelt(accepted)
    raw = {**BASE, "metrics": [{"name": name, "options": {wrong: 1}}]}
    code, err = run_cli(["run", write_config(tmp_path, raw)], capsys)
    line = one_line_error(err)
    assert code == 2 and f"metrics[0].options.{wrong}: unknown option" in line
    if right:
        assert f"did you mean '{right}'?" in line


def test_the_issue_examples():
    with pytest.raises(ConfigError, match=r"^codecs\[0\]\.options\.vbrr: unknown option; did you mean 'vbr'\?"):
        config.parse({**BASE, "codecs": [{"name": "opus", "options": {"vbrr": "on"}}]})
    with pytest.raises(ConfigError, match=r"^metrics\[0\]\.options\.max_lag: unknown option; did you mean 'max_lag_ms'"):
        config.parse({**BASE, "metrics": [{"name": "si_sdr", "options": {"max_lag": 5}}]})


def test_options_inherited_through_kwargs_are_accepted():
    from codecbench.bench.metrics.base import Metric

    accepted, _ = validate.accepted_options(metric_registry.get("fad_vggish"), Metric)
    assert {"postprocess", "bootstrap_resamples", "seed"} <= accepted  # declared by the class and its parents
    config.parse({**BASE, "metrics": [{"name": "fad_vggish", "options": {"bootstrap_resamples": 10}}]})


# -- named cases from the issue -------------------------------------------------------------------------------
CASES = [
    ({"dataset": {"path": "d", "segment_s": math.nan}}, r"^dataset\.segment_s: expected a finite number"),
    ({"dataset": {"path": "d", "segment_s": math.inf}}, r"^dataset\.segment_s: expected a finite number"),
    ({"dataset": {"path": "d", "segment_s": 1e9}}, r"^dataset\.segment_s: must be in \[0\.1, 3600\]"),
    ({"dataset": {"path": "d", "segment_s": 5 / 48000}}, r"^dataset\.segment_s: must be in \[0\.1, 3600\]"),
    ({"dataset": {"path": "d", "sample_rate_hz": 1}}, r"^dataset\.sample_rate_hz: must be in \[1000, 384000\]"),
    ({"dataset": {"path": "d", "sample_rate_hz": 1e30}}, r"^dataset\.sample_rate_hz: expected an integer"),
    ({"codecs": [{"name": "opus", "grid": {"bitrate_kbps": [math.nan]}}]}, r"^codecs\[0\]\.grid\.bitrate_kbps\[0\]: expected a finite"),
    ({"codecs": [{"name": 7}]}, r"^codecs\[0\]\.name: expected a string, got 7"),
    ({"codecs": [{"name": None}]}, r"^codecs\[0\]\.name: expected a string, got None"),
    ({"codecs": [{"name": ["opus"]}]}, r"^codecs\[0\]\.name: expected a string"),
    ({"metrics": [3]}, r"^metrics\[0\]: expected a mapping"),
    ({"metrics": [{"name": None}]}, r"^metrics\[0\]\.name: expected a string"),
    ({"codecs": [{"name": "opus", "options": [1, 2]}]}, r"^codecs\[0\]\.options: expected a mapping"),
    ({"codecs": [{"name": "opus", "options": {"device": "cpu"}}]}, r"^codecs\[0\]\.options\.device: set by the runner"),
    ({"name": "a\x00b"}, r"^name: contains a NUL character"),
    ({"name": "x" * 300}, r"^name: longer than 128 characters"),
    ({"name": "a\nb"}, r"^name: .* must be a plain folder name"),
    ({"metrics": ["si_sdr", "si_sdr"]}, r"^metrics: si_sdr appears twice"),
    ({"metrics": []}, r"^metrics: empty list"),
    ({"codecs": ["opus", "opus"]}, r"^codecs: opus appears twice"),
    ({"retries": -1}, r"^retries: must be in \[0, 100\], got -1"),
    ({"codecs": [{"name": "precomputed"}]}, r"^codecs\[0\]\.options: 'precomputed' needs the option 'folder'"),
    ({"seed": True}, r"^seed: expected an integer, got True"),
    ({"executor": {"name": 5}}, r"^executor\.name: expected a string"),
    ({"device": ["cpu"]}, r"^device: \['cpu'\] is not one of"),
    ({1: "x"}, r"^config \(top level\): keys must be strings"),
    ({"codecs": [{"name": "opus", "grid": {"bitrate_kbps": [[6]]}}]}, r"^codecs\[0\]\.grid\.bitrate_kbps\[0\]: expected a number"),
]


@pytest.mark.parametrize(("overrides", "message"), CASES)
def test_named_bad_values(overrides, message):
    raw = {**copy.deepcopy(BASE), **overrides}
    with pytest.raises(ConfigError, match=message) as info:
        config.parse(raw)
    assert "\n" not in str(info.value)


def test_deep_nesting_and_duplicate_keys_and_encoding(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("name: x\nextra: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match=r"nested deeper than 16 levels"):
        config.load(path)
    path.write_text("name: a\nname: b\n")
    with pytest.raises(ConfigError, match=r"line 2: duplicate key 'name' \(first at line 1\)"):
        config.load(path)
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text"):
        config.load(path)
    code, err = run_cli(["run", path], capsys)
    assert code == 2 and "not UTF-8" in one_line_error(err)


# -- command-line arguments and the files they read -------------------------------------------------------------
@pytest.fixture
def run_folder(tmp_path):
    """A minimal run folder the report and status commands can read."""
    from codecbench.bench import results

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"run": "r", "codec": "c", "point": "p", "item_id": f"i{i}", "level": "item", "metric": "si_sdr",
             "unit": "dB", "value": float(i), "status": "ok", "higher_is_better": True} for i in range(3)]
    results.write(results.to_table(rows), run)
    (run / "manifest.json").write_text(json.dumps({"run": "r"}))
    (run / "plan.json").write_text(json.dumps({"format": 1, "units": []}))
    return run


def test_cli_arguments_refused_before_work(tmp_path, run_folder, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    checks = [
        (["report", run_folder, "--resamples", "0"], "--resamples: must be in [1, 10000000], got 0"),
        (["report", run_folder, "--out", a_file / "sub"], f"is under {a_file}, which is a file"),
        (["score", tmp_path, tmp_path, "--out", a_file / "x.csv"], "which is a file"),
        (["score", tmp_path, tmp_path, "--cache-dir", a_file], "is a file, not a folder"),
        (["score", tmp_path, tmp_path, "--tolerance", "nan"], "--tolerance: expected a finite number"),
        (["score", tmp_path, tmp_path, "--device", "tpu"], "--device: 'tpu' is not one of"),
        (["status", tmp_path / "nope"], "no such folder"),
        (["report", a_file], "a file, not a folder"),
    ]
    import torch

    if not torch.cuda.is_available():
        checks.append((["score", tmp_path, tmp_path, "--device", "cuda"], "no CUDA device is available"))
    for argv, expected in checks:
        code, err = run_cli(argv, capsys)
        assert code == 2 and expected in one_line_error(err), (argv, err)


def test_damaged_tables_and_manifests_are_named(run_folder, capsys):
    parquet = run_folder / "results.parquet"
    good = parquet.read_bytes()
    for damage in (good[: len(good) // 2], b"garbage" * 10, b""):
        parquet.write_bytes(damage)
        code, err = run_cli(["report", run_folder, "--format", "png", "--resamples", "10"], capsys)
        assert code == 2 and "results.parquet" in one_line_error(err)
    parquet.write_bytes(good)
    table = pd.read_parquet(parquet)
    table.loc[0, "value"] = np.nan
    table.to_parquet(parquet)
    code, err = run_cli(["report", run_folder, "--format", "png", "--resamples", "10"], capsys)
    assert code == 2 and "NaN or infinite value" in one_line_error(err)
    parquet.write_bytes(good)
    (run_folder / "manifest.json").write_text("[1, 2]")
    code, err = run_cli(["report", run_folder, "--format", "png", "--resamples", "10"], capsys)
    assert code == 2 and "expected a JSON object" in one_line_error(err)
    for plan in ("[1]", '{"format": 1, "units": [3]}', "\x00\x01", '{"format": 1, "units": [{"unit_id": "../x", '
                 '"codec": "c", "point": "p", "items": []}]}'):
        (run_folder / "plan.json").write_text(plan)
        code, err = run_cli(["status", run_folder], capsys)
        assert code == 2 and "plan.json" in one_line_error(err), plan


# -- property tests: mutated configs and arguments -> success or one named line, never a traceback -------------
def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _paths(value, (*prefix, index))


PATHS = [p for p in _paths(BASE) if p]
NEW_KEYS = ["name", "grid", "options", "points", "segment_s", "vbrr", "bitrate_kbps", "max_lag_ms", "workers", "x"]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, -1, 1e30, -1e-30, 5, 48000, 0.1, 3600.5, "opus", "si_sdr", "", "\x00", "a" * 300,
                       "cpu", "cuda", "builtin:demo", "../x", "fad_logmel", "precomputed"])
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(NEW_KEYS) | st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


def _mutate(raw, path, value, mode):
    target = raw
    for step in path[:-1]:
        target = target[step]
    last = path[-1]
    if mode == "delete":
        del target[last]
    elif mode == "add_key" and isinstance(target[last], dict):
        target[last]["vbrr" if "name" in target[last] else "extra_key"] = value
    else:
        target[last] = value
    return raw


def _check_parse(raw, top_key):
    started = time.perf_counter()
    try:
        config.parse(raw)
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and message
        assert str(top_key) in message or message.startswith("config (top level)"), (top_key, message)
    assert time.perf_counter() - started < 5  # bounded: no giant grid, no huge allocation


@settings(max_examples=450, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(path=st.sampled_from(PATHS), value=VALUES, mode=st.sampled_from(["replace", "delete", "add_key"]))
def test_property_mutated_configs_never_traceback(path, value, mode):
    raw = _mutate(copy.deepcopy(BASE), path, value, mode)
    _check_parse(raw, path[0])


ARG_VALUES = st.sampled_from(["0", "-1", "nan", "inf", "1e30", "abc", "", "10", "cuda", "cpu", "/proc/x", "\x01"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          database=None)
@given(command=st.sampled_from(["report", "status", "score"]),
       flag=st.sampled_from(["--resamples", "--seed", "--audio-items", "--out", "--cache-dir", "--device",
                             "--tolerance", "--sample-rate-hz", "--format", "--metrics", None]),
       value=ARG_VALUES, target=st.sampled_from(["run", "missing", "file"]))
def test_property_cli_arguments_never_traceback(run_folder, tmp_path, capsys, monkeypatch, command, flag, value,
                                                target):
    monkeypatch.chdir(tmp_path)  # relative --out / --cache-dir values land in the test's folder
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    folder = {"run": run_folder, "missing": tmp_path / "missing", "file": a_file}[target]
    argv = {"report": ["report", folder, "--format", "png", "--resamples", "10", "--audio-items", "0",
                       "--out", tmp_path / "rep"],
            "status": ["status", folder], "score": ["score", folder, folder]}[command]
    if flag is not None:
        argv += [flag, value]
    code, err = run_cli(argv, capsys)
    assert "Traceback" not in err
    assert code in (0, 2), (argv, code, err)
    if code == 2 and "usage:" not in err:
        one_line_error(err)


def test_subprocess_exit_codes(tmp_path):
    """The real executable: exit 2 and one stderr line for a bad config and a bad argument."""
    bad = write_config(tmp_path, {**BASE, "codecs": [{"name": "opus", "options": {"vbrr": "on"}}]})
    for argv, expected in ((["run", str(bad)], "codecs[0].options.vbrr: unknown option; did you mean 'vbr'?"),
                           (["status", str(tmp_path / "none")], "no such folder")):
        proc = subprocess.run([sys.executable, "-m", "codecbench.bench.cli", *argv], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and expected in proc.stderr
