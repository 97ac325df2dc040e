"""Write ``demo_results_fixture.csv.gz``: the demo's results table with everything that is not a result left out.

Run once with the code the fixture should pin (``python tests/data/make_demo_results_fixture.py RUN_DIR``, where
RUN_DIR is a finished ``codecbench demo`` run); ``tests/test_demo_fixture.py`` then checks that later code gives the
same rows and values. Left out: timings (``encode_rtf``, ``decode_rtf``, the ``*_s`` timings inside
``extras_processing``) and paths or cache keys that name where the run happened rather than what it measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

TIMING_COLUMNS = ("encode_rtf", "decode_rtf")
PLACE_COLUMNS = ("clip_path", "decoded_key", "run")
TIMING_KEYS = ("encode_s", "decode_s")
ROW_KEY = ["codec", "point", "item_id", "level", "metric"]


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the fixture stores it: no timings or places, processing timings removed, rows sorted."""
    table = table.drop(columns=[c for c in TIMING_COLUMNS + PLACE_COLUMNS if c in table.columns])

    def without_timings(text: str) -> str:
        if not text:
            return text
        record = {k: v for k, v in json.loads(text).items() if k not in TIMING_KEYS}
        return json.dumps(record, sort_keys=True)

    table["extras_processing"] = table["extras_processing"].fillna("").map(without_timings)
    return table.sort_values(ROW_KEY, kind="stable").reset_index(drop=True)


def main(run_dir: str) -> None:
    table = comparable(pd.read_parquet(Path(run_dir) / "results.parquet"))
    out = Path(__file__).with_name("demo_results_fixture.csv.gz")
    table.to_csv(out, index=False)
    print(f"{out}: {len(table)} rows, {len(table.columns)} columns")


if __name__ == "__main__":
    main(sys.argv[1])
