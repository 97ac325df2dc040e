"""Degenerate operating points (bench/degenerate.py): identical decoded output across points is flagged."""

from __future__ import annotations

import pandas as pd
from codecbench.bench import degenerate


def table(hashes: dict[tuple[str, str], list[str]]) -> pd.DataFrame:
    rows = []
    for (codec, point), per_item in hashes.items():
        for i, digest in enumerate(per_item):
            rows.append({"codec": codec, "point": point, "item_id": f"clip{i}#0", "decoded_hash": digest,
                         "level": "item"})
    return pd.DataFrame(rows)


def test_identical_points_are_flagged_and_distinct_ones_not():
    t = table({
        ("blind", "bw=1.5"): ["a", "b", "c"], ("blind", "bw=6"): ["a", "b", "c"], ("blind", "bw=24"): ["a", "b", "c"],
        ("fine", "bw=1.5"): ["a", "b", "c"], ("fine", "bw=6"): ["d", "e", "f"],
        ("half", "q=1"): ["x", "y", "z"], ("half", "q=2"): ["x", "y", "z"], ("half", "q=3"): ["x", "y", "w"],
        ("single", "q=1"): ["a", "b", "c"],
    })
    flagged = degenerate.degenerate_points(t)
    assert flagged == {("blind", "bw=1.5"): ("bw=6", "bw=24"), ("blind", "bw=6"): ("bw=1.5", "bw=24"),
                       ("blind", "bw=24"): ("bw=1.5", "bw=6"), ("half", "q=1"): ("q=2",), ("half", "q=2"): ("q=1",)}
    marked = degenerate.mark(t)
    flags = marked.groupby(["codec", "point"])["degenerate"].first().to_dict()
    assert flags[("blind", "bw=6")] == degenerate.FLAG == "degenerate: output does not depend on the operating point"
    assert flags[("fine", "bw=6")] == "" and flags[("half", "q=3")] == "" and flags[("single", "q=1")] == ""
    assert degenerate.note(marked)[0] == f"blind bw=1.5: {degenerate.FLAG}"


def test_missing_hashes_and_failed_items_do_not_flag():
    t = table({("c", "p1"): ["a", "", "c"], ("c", "p2"): ["z", "b", ""]})
    assert degenerate.degenerate_points(t) == {}  # the one item with two hashes differs
    assert degenerate.degenerate_points(t.drop(columns="decoded_hash")) == {}


def test_report_flags_name_run_codec_point():
    t = degenerate.mark(table({("blind", "a"): ["h"], ("blind", "b"): ["h"]})).assign(run="r1")
    assert degenerate.report_flags(t) == {("r1", "blind", "a"), ("r1", "blind", "b")}
