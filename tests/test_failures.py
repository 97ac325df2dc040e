"""Failure semantics (issue 15 item 4): a unit with a codec or environment failure is failed, never done; it is
retried up to `retries` times and again on a rerun; input failures are recorded once and not retried; metric
failures stay failed rows of a done unit; `codecbench run` exits 4 when anything failed unless --allow-failures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from codecbench.bench import api, cli
from codecbench.bench.commands import EXIT_FAILURES
from codecbench.bench.core.errors import MetricFailure
from codecbench.bench.metrics.base import ItemMetric, MetricInfo, MetricValue
from codecbench.bench.store import RunStore
from codecbench.codecs import registry, semanticodec_codec
from codecbench.codecs.base import CodecInfo
from toy_codecs import UniformQuantiser, _log, register_all

register_all()


class RaisingCodec(UniformQuantiser):
    """A plugin whose encode raises (its model built lazily inside encode, say)."""

    info = CodecInfo("toy_raising_plugin", "classic", 16_000, 1, "raises in encode (tests)")

    def encode(self, audio, point):
        _log("encode")
        raise RuntimeError("plugin model failed to load inside encode")


class FlakyCodec(UniformQuantiser):
    """Fails once while its flag file exists (removing it), then works: a transient fault."""

    info = CodecInfo("toy_flaky", "classic", 16_000, 1, "fails once, then works (tests)")

    def __init__(self, device: str = "cpu", flag: str = ""):
        super().__init__(device)
        self.flag = flag

    def encode(self, audio, point):
        if self.flag and os.path.exists(self.flag):
            os.remove(self.flag)
            _log("encode")
            raise RuntimeError("transient fault")
        return super().encode(audio, point)


class NaNCodec(UniformQuantiser):
    """Decodes to NaN: a codec failure, not a metric one."""

    info = CodecInfo("toy_nan", "classic", 16_000, 1, "NaN output (tests)")

    def decode(self, bitstreams, point):
        return super().decode(bitstreams, point) * float("nan")


class PickyMetric(ItemMetric):
    """Fails on every item whose reference is loud: a metric failure (a done unit, failed rows, not cached)."""

    info = MetricInfo("toy_picky", "", True, True, "item", None, "1", "tests")

    def score(self, reference, degraded, sample_rate_hz):
        if np.max(np.abs(reference)) > 0.3:
            raise MetricFailure("too loud for this metric")
        return MetricValue(1.0)


for cls in (RaisingCodec, FlakyCodec, NaNCodec):
    if cls.info.name not in registry.names():
        registry.register(cls.info.name, cls)
from codecbench.bench.metrics import registry as metric_registry  # noqa: E402

if "toy_picky" not in metric_registry.names():
    metric_registry.register("toy_picky", PickyMetric)


def tone_folder(path: Path, count: int, amplitude: float = 0.4) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    t = np.arange(48_000) / 48_000
    for i in range(count):
        audio = amplitude * np.sin(2 * np.pi * (200 + 100 * i) * t)
        sf.write(str(path / f"clip{i:02d}.wav"), audio.astype(np.float32), 48_000, subtype="FLOAT")
    return path


def config(tmp_path: Path, codecs: list, **overrides) -> dict:
    data = tmp_path / "data"
    if not data.is_dir():
        tone_folder(data, 2)
    raw = {"name": "f", "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"), "seed": 0,
           "dataset": {"path": str(data), "segment_s": 1.0}, "codecs": codecs, "metrics": ["si_sdr"],
           "shard_size": 8, "retries": 0, "report": False}
    raw.update(overrides)
    return raw


def write_config(tmp_path: Path, raw: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def records(run_dir: Path) -> dict[str, dict]:
    return {r["unit_id"]: r for r in RunStore(run_dir).records()}


def test_a_codec_raising_in_encode_fails_its_unit_and_is_retried(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CODEC_LOG", str(log))
    raw = config(tmp_path, [{"name": "toy_quant", "grid": {"bits": [4]}}, {"name": "toy_raising_plugin",
                                                                         "grid": {"bits": [4]}}], retries=2)
    result = api.run(raw, progress=False)
    assert result.stats["units_failed"] == 1
    # toy_quant encodes once; the raising plugin 1 + 2 retries
    assert log.read_text().splitlines().count("encode") == 1 + 3
    by_codec = {r["rows"][0]["codec"]: r for r in records(result.run_dir).values()}
    failed = by_codec["toy_raising_plugin"]
    assert failed["status"] == "failed" and failed["outcome"] == "failed-codec" and failed["attempts"] == 3
    assert "plugin model failed to load inside encode" in failed["error"]
    assert by_codec["toy_quant"]["status"] == "done"
    # the failed unit's rows reach the table, with their reasons; nothing computed is lost
    table = result.table
    rows = table[table.codec == "toy_raising_plugin"]
    assert len(rows) == 2 and set(rows.status) == {"failed"} and set(rows.stage) == {"codec"}
    assert rows.error.str.contains("plugin model failed").all()
    assert set(table[table.codec == "toy_quant"].status) == {"ok"}
    assert api.status(result.run_dir) == {"units": 2, "done": 1, "running": 0, "failed": 1, "missing": 0,
                                          "inputs_failed": 0}
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert [u["codec"] for u in manifest["failures"]["units"]] == ["toy_raising_plugin"]
    # a rerun retries it (it is never served as done from the store)
    again = api.run(raw, progress=False)
    assert again.stats["units_failed"] == 1 and again.stats["units_cached"] == 1
    assert log.read_text().splitlines().count("encode") == 1 + 3 + 3
    assert records(result.run_dir)[failed["unit_id"]]["attempts"] == 6


def test_run_exits_4_with_a_summary_unless_allow_failures(tmp_path, capsys):
    raw = config(tmp_path, [{"name": "toy_raising_plugin", "grid": {"bits": [4, 6]}}])
    path = write_config(tmp_path, raw)
    assert cli.main(["run", path, "--quiet"]) == EXIT_FAILURES == 4
    err = capsys.readouterr().err
    assert "2 unit(s) failed" in err and "toy_raising_plugin [bits=4, bits=6]" in err
    assert "RuntimeError: plugin model failed to load inside encode" in err and "exit 4" in err
    assert cli.main(["run", path, "--quiet", "--allow-failures"]) == 0
    err = capsys.readouterr().err
    assert "2 unit(s) failed" in err and "--allow-failures: exit 0" in err
    assert cli.main(["status", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "0 done" in out and "2 failed" in out and "0 input file(s) failed" in out and "failed-codec" in out


def test_an_input_failure_is_recorded_once_not_retried_and_counted_apart(tmp_path, capsys, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CODEC_LOG", str(log))
    data = tone_folder(tmp_path / "data", 2)
    (data / "broken.wav").write_bytes(b"not audio")
    raw = config(tmp_path, [{"name": "toy_quant", "grid": {"bits": [4]}}], retries=3)
    path = write_config(tmp_path, raw)
    assert cli.main(["run", path, "--quiet"]) == EXIT_FAILURES
    err = capsys.readouterr().err
    assert "1 input file(s) failed to load" in err and "broken.wav" in err and "unit(s) failed" not in err
    assert log.read_text().count("encode") == 1  # the good unit ran once; nothing was retried
    assert api.status(tmp_path / "run") == {"units": 1, "done": 1, "running": 0, "failed": 0, "missing": 0,
                                            "inputs_failed": 1}
    table = api.run(raw, progress=False).table
    assert table[table.stage == "load"].item_id.tolist() == ["broken#0"]
    cli.main(["status", str(tmp_path / "run")])
    assert "1 input file(s) failed to load" in capsys.readouterr().out


def test_a_flaky_codec_is_fixed_by_a_rerun_and_the_failure_is_not_served(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CODEC_LOG", str(log))
    flag = tmp_path / "fail-once"
    flag.touch()
    raw = config(tmp_path, [{"name": "toy_flaky", "options": {"flag": str(flag)}, "grid": {"bits": [6]}}])
    first = api.run(raw, progress=False)
    assert first.stats["units_failed"] == 1 and set(first.table.status) == {"failed"}
    second = api.run(raw, progress=False)
    assert second.stats["units_failed"] == 0 and second.stats["units_cached"] == 0
    assert second.stats["codec_calls"] == 1 and set(second.table.status) == {"ok"}
    assert [r["status"] for r in records(second.run_dir).values()] == ["done"]
    # with retries, the same transient fault is fixed within the run
    flag.touch()
    retried = api.run(config(tmp_path, [{"name": "toy_flaky", "options": {"flag": str(flag)}, "grid": {"bits": [6]}}],
                             output=str(tmp_path / "run2"), cache_dir=str(tmp_path / "cache2"), retries=1),
                      progress=False)
    assert retried.stats["units_failed"] == 0 and set(retried.table.status) == {"ok"}


def test_nan_output_is_a_codec_failure(tmp_path):
    result = api.run(config(tmp_path, [{"name": "toy_nan", "grid": {"bits": [6]}}]), progress=False)
    assert result.stats["units_failed"] == 1
    (record,) = records(result.run_dir).values()
    assert record["status"] == "failed" and record["outcome"] == "failed-codec" and "NaN/Inf" in record["error"]


def test_metric_failures_stay_failed_rows_of_a_done_unit(tmp_path):
    tone_folder(tmp_path / "data", 1, amplitude=0.4)
    sf.write(str(tmp_path / "data" / "quiet.wav"),
             (0.1 * np.sin(np.arange(48_000) / 9.0)).astype(np.float32), 48_000, subtype="FLOAT")
    raw = config(tmp_path, [{"name": "toy_quant", "grid": {"bits": [6]}}], metrics=["toy_picky"])
    path = write_config(tmp_path, raw)
    assert cli.main(["run", path, "--quiet"]) == 0  # a metric that cannot score an item is not a run failure
    (record,) = records(tmp_path / "run").values()
    assert record["status"] == "done"
    table = api.run(raw, progress=False).table.set_index("item_id")
    assert table.loc["clip00#0", "status"] == "failed" and table.loc["clip00#0", "stage"] == "metric"
    assert table.loc["quiet#0", "status"] == "ok"


@pytest.mark.skipif(semanticodec_codec.is_available(), reason="the semanticodec package is installed here")
def test_semanticodec_without_its_package_is_a_failed_environment_unit(tmp_path, capsys):
    raw = config(tmp_path, [{"name": "semanticodec", "points": [{"token_rate": 25, "semantic_vocab_size": 4096}]}])
    path = write_config(tmp_path, raw)
    assert cli.main(["run", path, "--quiet"]) == EXIT_FAILURES
    err = capsys.readouterr().err
    assert "failed-environment" in err and "needs the package 'semanticodec'" in err
    (record,) = records(tmp_path / "run").values()
    assert record["status"] == "failed" and record["outcome"] == "failed-environment"
    assert "Install it with" in record["error"]
