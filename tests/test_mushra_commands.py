"""`codecbench mushra build | analyze` through the real command line (serve is driven in test_mushra_concurrency)."""

from __future__ import annotations

from codecbench.bench.cli import main
from codecbench.listening_test.store import Rating, RatingsStore
from mushra_support import write_run
from test_mushra_analysis import synthetic_ratings


def test_build_and_errors(tmp_path, capsys):
    run = write_run(tmp_path, n_items=1, duration_s=1.0)
    assert main(["mushra", "build", str(run), "--out", str(tmp_path / "b"), "--conditions", "toycodec"]) == 0
    assert "bundle written to" in capsys.readouterr().out
    assert (tmp_path / "b" / "bundle.json").is_file()
    assert main(["mushra", "build", str(tmp_path / "nope"), "--out", str(tmp_path / "c")]) == 2
    assert "nope: run folder does not exist" in capsys.readouterr().err


def test_analyze_a_server_database(tmp_path, capsys):
    store = RatingsStore(tmp_path / "ratings.sqlite")
    ratings = synthetic_ratings()
    for pid, mine in ratings.groupby("participant_id"):
        store.create_participant(f"{pid}-participant-id-xyz", 1, [])
        for page, (item, rows) in enumerate(mine.groupby("item_id"), start=1):
            grades = [Rating(f"s{k}", r.condition, "test", int(r.score), True, k) for k, r in
                      enumerate(rows.itertuples())]
            assert store.submit_page(f"{pid}-participant-id-xyz", page, item, False, grades, "d").status == "stored"
    code = main(["mushra", "analyze", str(tmp_path / "ratings.sqlite"), "--out", str(tmp_path / "out"),
                 "--n-resamples", "500"])
    out = capsys.readouterr().out
    assert code == 0
    assert "assessors: 8 before post-screening, 6 after" in out
    assert "| codec_x | 60 | 63.2 |" in out
    assert (tmp_path / "out" / "plots" / "mushra_means.png").is_file()
    assert "WARNING codec_x: CI over 6 assessor(s) < 10" in out  # 6 kept assessors, default minimum 10
    assert main(["mushra", "analyze", str(tmp_path / "ratings.sqlite"), "--out", str(tmp_path / "out2"),
                 "--n-resamples", "200", "--min-assessors", "6"]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_analyze_applies_the_attention_rule_and_its_options(tmp_path, capsys):
    from codecbench.listening_test.store import AttentionOutcome

    store = RatingsStore(tmp_path / "ratings.sqlite")
    ratings = synthetic_ratings()
    for pid, mine in ratings.groupby("participant_id"):
        store.create_participant(f"{pid}-participant-id-xyz", 1, [])
        for page, (item, rows) in enumerate(mine.groupby("item_id"), start=1):
            grades = [Rating(f"s{k}", r.condition, "test", int(r.score), True, k) for k, r in
                      enumerate(rows.itertuples())]
            store.submit_page(f"{pid}-participant-id-xyz", page, item, False, grades, "d")
        score = 90 if pid == "A0" else 10  # A0 grades the noise-degraded stimulus 90: fails its check
        assert store.submit_page(f"{pid}-participant-id-xyz", 99, "i0", False, [], "a",
                                 attention=AttentionOutcome(score, 30)).status == "stored"
    db, out = str(tmp_path / "ratings.sqlite"), str(tmp_path / "out")
    assert main(["mushra", "analyze", db, "--out", out, "--n-resamples", "200"]) == 0
    text = capsys.readouterr().out
    assert "excluded A0-participant-id-xyz: failed 1 of 1 attention checks" in text
    # the 25 % anchor exemption is decided among the 7 attentive assessors: i1 (A3, A4 at 95) is 2 of 7 > 25 % now,
    # so A4's high anchor there no longer counts against A4, who is kept; A5 fails the reference rule as before
    assert "assessors: 8 before post-screening, 6 after" in text and "excluded A5-participant-id-xyz" in text
    assert "excluded A4" not in text and "counts against no one): i0, i1" in text
    for option in (["--no-attention-rule"], ["--max-attention-failures", "1"]):
        assert main(["mushra", "analyze", db, "--out", out, "--n-resamples", "200", *option]) == 0
        text = capsys.readouterr().out
        assert "attention" not in text and "6 after" in text and "excluded A4" in text
