"""Reading run folders: ok/failed split, normalisation, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest
from codecbench.bench.report.data import ReportInputError, combine, load_run
from test_report_fixtures import write_synthetic_run


def test_load_run_splits_ok_and_failed(tmp_path):
    run = load_run(write_synthetic_run(tmp_path))
    assert run.name == "synth"
    assert len(run.failed) == 1 and run.failed["stage"].iloc[0] == "codec"
    assert (run.ok["status"] == "ok").all() and run.ok["value"].notna().all()
    assert run.manifest["seed"] == 1234
    assert run.cache_dir is None  # no audio written: the cache folder does not exist


def test_csv_fallback_reads_the_same_rows(tmp_path):
    run_dir = write_synthetic_run(tmp_path)
    (run_dir / "results.parquet").unlink()
    run = load_run(run_dir)
    assert len(run.ok) == len(load_run(write_synthetic_run(tmp_path / "b")).ok)
    assert run.ok["is_anchor"].dtype == bool


def test_errors_name_the_folder_and_problem(tmp_path):
    with pytest.raises(ReportInputError, match="not a folder"):
        load_run(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match="no results table"):
        load_run(tmp_path / "empty")
    run_dir = write_synthetic_run(tmp_path)
    pd.read_parquet(run_dir / "results.parquet").drop(columns=["higher_is_better"]).to_parquet(
        run_dir / "results.parquet"
    )
    with pytest.raises(ReportInputError, match="lacks the column.*higher_is_better"):
        load_run(run_dir)


def test_combine_refuses_duplicate_run_names(tmp_path):
    a = load_run(write_synthetic_run(tmp_path / "x"))
    b = load_run(write_synthetic_run(tmp_path / "y"))
    with pytest.raises(ReportInputError, match="same run name"):
        combine([a, b])


def test_unreliable_set_values_are_set_aside_like_failures(tmp_path):
    run_dir = write_synthetic_run(tmp_path)
    table = pd.read_parquet(run_dir / "results.parquet")
    fad = (table["metric"] == "fad") & (table["codec"] == "opus")
    table.loc[fad, ["status", "error"]] = ["unreliable", "negative extrapolation -0.1"]
    table.to_parquet(run_dir / "results.parquet")
    run = load_run(run_dir)
    assert not ((run.ok["metric"] == "fad") & (run.ok["codec"] == "opus")).any()
    assert set(run.failed["status"]) == {"failed", "unreliable"} and (run.failed["status"] == "unreliable").sum() == fad.sum()
    table.loc[fad, "status"] = "maybe"
    table.to_parquet(run_dir / "results.parquet")
    with pytest.raises(ReportInputError, match=r"unknown status value\(s\) \['maybe'\]; valid: 'ok', 'failed', 'unreliable'"):
        load_run(run_dir)
