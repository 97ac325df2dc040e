"""Typed run records (bench/records.py): the results table's schema is ResultRow's fields; rows are checked."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
from codecbench.bench import records, results
from codecbench.bench.datasets import INPUT_COLUMNS
from codecbench.bench.pairing import PAIR_COLUMNS
from codecbench.bench.records import ResultRow, RunStats, UnitOutcome, UnitRecord


def test_the_table_schema_is_derived_from_the_dataclass():
    fields = [f.name for f in dataclasses.fields(ResultRow)]
    assert list(results.COLUMNS) == fields == list(records.COLUMNS)
    table = results.to_table([ResultRow(run="r", level="item", status="ok", value=1.5, codec="c", seed=3)])
    assert list(table.columns) == fields
    kinds = records.column_kinds()
    assert set(kinds.values()) == {"float", "int", "bool", "str"}
    for column, kind in kinds.items():
        expected = {"float": ("float64",), "int": ("int64",), "bool": ("bool",), "str": ("object", "str")}[kind]
        assert str(table[column].dtype) in expected, column
    # the per-item input and pairing records are columns of the row, in their order
    assert [c for c in fields if c in INPUT_COLUMNS] == list(INPUT_COLUMNS)
    assert [c for c in fields if c in PAIR_COLUMNS] == list(PAIR_COLUMNS)
    # units in the names of numeric columns
    numeric = [c for c, k in kinds.items() if k == "float" and c not in ("value", "compression_ratio",
                                                                         "params_count", "lag_peak_correlation",
                                                                         "lag_peak_z", "input_channels")]
    assert all(c.endswith(("_kbps", "_hz", "_ms", "_rtf", "_s", "_samples", "_frames")) for c in numeric), numeric


def test_a_row_missing_a_required_field_is_an_error():
    assert set(records.REQUIRED_COLUMNS) == {"run", "level", "status", "value"}
    with pytest.raises(TypeError):
        ResultRow(run="r", level="item", status="ok")  # no value
    with pytest.raises(ValueError, match="value"):
        ResultRow.from_mapping({"run": "r", "level": "item", "status": "ok"})
    with pytest.raises(ValueError, match="unknown column"):
        ResultRow.from_mapping({"run": "r", "level": "item", "status": "ok", "value": 1.0, "bitrate_kpbs": 6.0})
    with pytest.raises(ValueError, match="needs its error"):
        ResultRow(run="r", level="item", status="failed", value=math.nan)
    with pytest.raises(ValueError, match="level"):
        ResultRow(run="r", level="clip", status="ok", value=1.0)
    with pytest.raises(ValueError, match="unknown column"):
        results.to_table([{"run": "r", "level": "item", "status": "ok", "value": 1.0, "colour": "red"}])
    # older store records carried helper keys: read leniently there, never in tables
    row = ResultRow.from_mapping({"run": "r", "level": "item", "status": "ok", "value": 1.0,
                                  "decoded_padded_samples": 0}, strict=False)
    assert row.value == 1.0


def test_unit_records_round_trip_and_outcomes():
    row = ResultRow(run="r", level="item", status="failed", value=math.nan, stage="codec", error="boom")
    outcome = UnitOutcome.from_faults([records.CodecFault("boom"), records.CodecFault("gone", records.FAILED_ENVIRONMENT)], 4)
    assert outcome.kind == "failed-environment" and outcome.status == "failed" and outcome.reason == "boom (2 of 4 items)"
    record = UnitRecord(outcome, (row,), RunStats(codec_calls=2), attempts=1, weights="none")
    body = record.to_json()
    assert body["status"] == "failed" and body["outcome"] == "failed-environment" and body["attempts"] == 1
    back = UnitRecord.from_json(body)
    assert back.rows == (row,) and back.outcome.kind == outcome.kind and back.stats.codec_calls == 2
    assert UnitRecord(UnitOutcome()).to_json()["status"] == "done"
    assert records.fault_kind(ModuleNotFoundError("x")) == "failed-environment"
    assert records.fault_kind(RuntimeError("x")) == "failed-codec"
    with pytest.raises(ValueError):
        UnitOutcome("finished")


def test_run_stats_read_by_name_and_attribute():
    stats = RunStats(units=3)
    stats.add({"codec_calls": 2, "metric_computations": 5, "skipped": True})
    assert stats["units"] == stats.units == 3 and stats["codec_calls"] == 2 and stats.metric_computations == 5
    assert stats.get("nothing", 7) == 7 and "failures" not in stats.counts()
    with pytest.raises(KeyError):
        stats["nothing"]


def test_a_run_table_and_its_unit_records_have_exactly_the_row_columns(tmp_path):
    import numpy as np
    import soundfile as sf
    from codecbench.bench import api
    from codecbench.bench.store import RunStore
    from toy_codecs import register_all

    register_all()
    (tmp_path / "data").mkdir()
    t = np.arange(48_000) / 48_000
    sf.write(str(tmp_path / "data" / "a.wav"), (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 48_000)
    (tmp_path / "data" / "bad.wav").write_bytes(b"nope")
    result = api.run({"name": "r", "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
                      "dataset": {"path": str(tmp_path / "data"), "segment_s": 1.0},
                      "codecs": [{"name": "toy_quant", "grid": {"bits": [6]}}],
                      "metrics": ["si_sdr", "fad_logmel"], "report": False}, progress=False)
    assert list(result.table.columns) == list(records.COLUMNS)
    assert set(result.table.level) == {"item", "set"} and "load" in set(result.table.stage)
    assert isinstance(result.stats, RunStats) and result.stats["clips_failed"] == 1
    (body,) = RunStore(result.run_dir).records()
    assert all(set(row) == set(records.COLUMNS) for row in body["rows"])  # the store writes keys sorted
    pd.testing.assert_frame_equal(pd.read_parquet(result.run_dir / "results.parquet"), result.table)
