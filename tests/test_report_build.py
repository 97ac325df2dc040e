"""End to end: build_report and `codecbench report` on synthetic run folders with known values."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from codecbench.bench.cli import main
from codecbench.bench.report import build_report
from codecbench.bench.report.build import ReportOptions
from codecbench.bench.report.data import ReportInputError
from test_report_fixtures import write_synthetic_run

FAST = ReportOptions(n_resamples=200, n_audio_items=1, max_audio_s=0.25)


@pytest.mark.slow
def test_build_report_writes_a_self_contained_folder(tmp_path):
    run = write_synthetic_run(tmp_path, with_audio=True)
    result = build_report([run], tmp_path / "report", formats=("pdf", "svg"), options=FAST)
    out = result.out_dir
    assert {p.name for p in result.figures} >= {"si_sdr.png", "si_sdr.pdf", "si_sdr.svg", "frame_rate_sweep.pdf"}
    assert result.n_failed_rows == 1
    page = result.index_html.read_text()
    links = re.findall(r"(?:src|href)='([^'#]+)'", page)
    assert links and all((out / link).is_file() for link in links)  # every link resolves inside the folder
    assert not any(link.startswith(("/", "http")) for link in links)
    assert page.count("<audio") == 15  # original + 14 operating points (anchors included) for one item
    assert "Random-init weights" in page and "1 failed row(s) excluded" in page and "seed" in page
    bd = pd.read_csv(out / "tables" / "bd_rate.csv").set_index("metric")
    assert bd.loc["si_sdr", "bd_quality"] == pytest.approx(-3.0, abs=1e-9)  # opus vs neuralx: 3 dB worse
    assert bd.loc["si_sdr", "bd_rate_percent"] == pytest.approx((10**0.3 - 1) * 100, abs=1e-6)
    assert "booktabs" in (out / "tables" / "summary_discrete.tex").read_text()
    assert (out / "tables" / "summary_continuous.tex").is_file() and (out / "tables" / "tables.md").is_file()


@pytest.mark.slow
def test_cli_compares_two_runs(tmp_path, capsys):
    a = write_synthetic_run(tmp_path, "v1")
    b = write_synthetic_run(tmp_path, "v2")
    code = main(["report", str(a), str(b), "--out", str(tmp_path / "cmp"), "--metrics", "si_sdr",
                 "--resamples", "100", "--audio-items", "0", "--format", "png"])  # fmt: skip
    assert code == 0 and "report:" in capsys.readouterr().out
    tests = pd.read_csv(tmp_path / "cmp" / "tables" / "comparisons.csv")
    same = tests[(tests["system_a"] == "opus [v1]") & (tests["system_b"] == "opus [v2]")]
    assert len(same) == 4 and (same["mean_diff"] == 0).all() and (same["p_value"] == 1).all()
    assert (tmp_path / "cmp" / "figures" / "si_sdr.png").is_file()
    assert not (tmp_path / "cmp" / "figures" / "mel_distance.png").exists()


def test_bad_arguments_have_clear_errors(tmp_path, capsys):
    run = write_synthetic_run(tmp_path)
    with pytest.raises(ReportInputError, match=r"unknown figure format\(s\) \['jpg'\]; valid: png, pdf, svg"):
        build_report([run], tmp_path / "r", formats=("jpg",), options=FAST)
    with pytest.raises(ReportInputError, match="metric\\(s\\) \\['pesq'\\] not in the results of synth; known: si_sdr"):
        build_report([run], tmp_path / "r", metrics=["pesq"], options=FAST)
    assert main(["report", str(run), str(run)]) == 2
    assert "choose the report folder with --out" in capsys.readouterr().err


def test_degenerate_points_are_marked_and_not_drawn_and_dataset_mismatch_warns(tmp_path, monkeypatch):
    from codecbench.bench import degenerate
    from codecbench.bench.report import rate_quality

    a = write_synthetic_run(tmp_path, "v1")
    b = write_synthetic_run(tmp_path, "v2")
    table = pd.read_parquet(b / "results.parquet")
    table["degenerate"] = ""
    table.loc[table["codec"] == "neuralx", "degenerate"] = degenerate.FLAG
    table.loc[table["item_id"] == "clip0#0", "clip_hash"] = "other-content"  # v2 scored a different clip 0
    table.to_parquet(b / "results.parquet", index=False)
    drawn = []
    real = rate_quality.plot_rate_quality

    def spy(summary, metric, *args, **kwargs):
        drawn.append(set(zip(summary["run"], summary["codec"])))
        return real(summary, metric, *args, **kwargs)

    monkeypatch.setattr(rate_quality, "plot_rate_quality", spy)
    result = build_report([a, b], tmp_path / "r", metrics=["si_sdr"], formats=("png",),
                          options=ReportOptions(n_resamples=100, n_audio_items=0))
    page = result.index_html.read_text()
    assert degenerate.FLAG in page and "neuralx n_q=1 (v2)" in page
    assert drawn and ("v2", "neuralx") not in drawn[0] and ("v1", "neuralx") in drawn[0]
    assert "The runs used different datasets" in page
    from codecbench.bench.report.data import dataset_mismatch, load_run

    assert dataset_mismatch([load_run(a), load_run(write_synthetic_run(tmp_path, "v3"))]) is None
