"""The demo's results table is pinned: same rows and values as the table the fixture was made from.

The fixture (``tests/data/demo_results_fixture.csv.gz``) was written by ``tests/data/make_demo_results_fixture.py``
from a demo run of commit 7e6b260, before the run spine was restructured (issue 14). Timings, paths and cache keys
are not compared; a column added later is allowed, a fixture column that changes or disappears is not.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pandas as pd
import pytest

DATA = Path(__file__).parent / "data"


def _fixture_module():
    spec = importlib.util.spec_from_file_location("make_demo_results_fixture", DATA / "make_demo_results_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_demo_results_table_matches_the_pinned_fixture(tmp_path):
    from codecbench.bench import api

    fixture_module = _fixture_module()
    api.demo(out=tmp_path / "demo", progress=False, report=False)
    new = fixture_module.comparable(pd.read_parquet(tmp_path / "demo" / "results.parquet"))
    old = pd.read_csv(DATA / "demo_results_fixture.csv.gz", keep_default_na=False, na_values=[""])

    missing = [c for c in old.columns if c not in new.columns]
    assert not missing, f"columns of the pinned demo table are gone: {missing}"
    # The same text round trip for both, so dtypes compare alike.
    buffer = io.StringIO()
    new[list(old.columns)].to_csv(buffer, index=False)
    buffer.seek(0)
    new = pd.read_csv(buffer, keep_default_na=False, na_values=[""])
    assert len(new) == len(old), f"{len(new)} rows, the pinned table has {len(old)}"
    pd.testing.assert_frame_equal(new, old, check_exact=False, rtol=1e-9, atol=1e-12)
