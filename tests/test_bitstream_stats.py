"""Bitstream statistics: hand-computed utilisation, entropy, perplexity, tokens/s; pooling; a run writes them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from codecbench.codecs import bitstream_stats as bs
from codecbench.codecs.base import CodeStream


def test_codebook_stats_hand_computed():
    s = bs.codebook_stats(np.array([0, 0, 1, 3]), alphabet_size=8, frame_rate_hz=75.0, name="q0")
    assert (s.n_tokens, s.codewords_used, s.utilisation) == (4, 3, 3 / 8)
    assert s.entropy_bits == pytest.approx(1.5)  # p = 1/2, 1/4, 1/4
    assert s.perplexity == pytest.approx(2**1.5)


def test_uniform_codes_use_the_whole_codebook(rng):
    codes = rng.permutation(np.repeat(np.arange(16), 5))
    s = bs.codebook_stats(codes, 16, 50.0)
    assert s.utilisation == 1.0 and s.perplexity == pytest.approx(16.0) and s.entropy_bits == pytest.approx(4.0)


def test_point_pools_items_and_sums_token_rates():
    item1 = (CodeStream(np.array([0, 1]), 4, 75.0, "q0"), CodeStream(np.array([2, 2]), 4, 75.0, "q1"))
    item2 = (CodeStream(np.array([1, 1]), 4, 75.0, "q0"), CodeStream(np.array([2, 2]), 4, 75.0, "q1"))
    books, summary = bs.point_stats([item1, item2])
    q0, q1 = books
    assert q0.n_tokens == 4 and q0.codewords_used == 2  # codes 0, 1, 1, 1 pooled over both items
    assert q0.entropy_bits == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)))
    assert q1.utilisation == 0.25 and q1.perplexity == pytest.approx(1.0)
    assert summary["tokens_per_s"] == 150.0 and summary["n_codebooks"] == 2  # 75 Hz x 2 codebooks
    assert summary["nominal_kbps"] == pytest.approx(150 * 2 / 1000)
    assert summary["empirical_entropy_kbps"] == pytest.approx(75 * q0.entropy_bits / 1000)
    assert summary["utilisation_min"] == 0.25 and summary["perplexity_mean"] == pytest.approx((q0.perplexity + 1) / 2)


def test_layout_change_within_a_point_is_refused():
    a = (CodeStream(np.array([0, 1]), 4, 75.0, "q0"),)
    b = (CodeStream(np.array([0, 1]), 8, 75.0, "q0"),)
    with pytest.raises(ValueError, match="code stream 'q0': alphabet/frame rate"):
        bs.point_stats([a, b])


def test_run_writes_bitstream_stats_next_to_entropy_coded_rate(tmp_path):
    import pandas as pd
    from codecbench.bench import api
    from codecbench.bench.core.cache import Cache
    from codecbench.bench.runner import load_code_streams
    from test_runner import config, tone_folder

    data = tone_folder(tmp_path / "data", 4)
    result = api.run(config(tmp_path, data, codecs=[{"name": "toy_quant", "grid": {"bits": [6]}}],
                            metrics=["si_sdr"], entropy_fit_fraction=0.5), progress=False)
    stats = pd.read_csv(result.run_dir / "bitstream_stats.csv")
    items = result.table[result.table.level == "item"].sort_values("item_id")
    streams = [load_code_streams(Cache(tmp_path / "cache"), key) for key in items.decoded_key]
    books, summary = bs.point_stats(streams)
    assert len(stats) == len(books) and stats["point"].iloc[0] == "bits=6"
    assert stats["utilisation"].tolist() == pytest.approx([b.utilisation for b in books])
    assert stats["tokens_per_s"].iloc[0] == pytest.approx(summary["tokens_per_s"])
    assert stats["entropy_coded_kbps"].iloc[0] == pytest.approx(items.entropy_coded_kbps.mean())  # held-out items
    assert stats["bitrate_kbps"].iloc[0] == pytest.approx(items.bitrate_kbps.median())
