"""Tests of codecs/entropy.py: model fitting (hand case), exact ANS round trip, coded size vs information content."""

from __future__ import annotations

import math

import numpy as np
import pytest
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs import entropy
from codecbench.codecs.base import CodeBitstream, CodeStream


def _bitstream(codes_by_name: dict[str, np.ndarray], alphabet: int = 16, seconds: float = 1.0) -> CodeBitstream:
    streams = tuple(CodeStream(codes=np.asarray(c), alphabet_size=alphabet, frame_rate_hz=50.0, name=n)
                    for n, c in codes_by_name.items())
    return CodeBitstream(sample_rate_hz=16000, num_samples=int(16000 * seconds), streams=streams)


def _skewed(rng, n=400, alphabet=16):
    probs = np.array([0.6, 0.2, 0.1] + [0.1 / (alphabet - 3)] * (alphabet - 3))
    return {"q0": rng.choice(alphabet, n, p=probs), "q1": rng.integers(0, alphabet, n)}


def test_fit_hand_case():
    model = entropy.fit([_bitstream({"q0": [0, 0, 1]}, alphabet=4)], smoothing=0.5)
    np.testing.assert_allclose(model.probabilities["q0"], np.array([2.5, 1.5, 0.5, 0.5]) / 5.0)
    assert model.num_fit_items == 1


def test_round_trip_is_exact(rng):
    model = entropy.fit([_bitstream(_skewed(rng)) for _ in range(3)])
    item = _bitstream(_skewed(rng))
    words = entropy.encode(model, item)
    decoded = entropy.decode(model, words, item)
    for stream, codes in zip(item.streams, decoded):
        np.testing.assert_array_equal(codes, stream.codes)


def test_coded_size_follows_information_content(rng):
    fit_split = [_bitstream(_skewed(rng)) for _ in range(4)]
    model = entropy.fit(fit_split)
    item = _bitstream(_skewed(rng))
    ideal = entropy.information_bits(model, item)
    coded = entropy.coded_bits(model, item)
    assert ideal <= coded <= ideal + 64 + 0.01 * ideal  # word padding + fixed-point model quantisation
    # the skewed stream costs much less than its 4 nominal bits per symbol, the uniform one about 4
    q0 = entropy.information_bits(model, _bitstream({"q0": item.streams[0].codes}))
    assert q0 / 400 < 2.0
    assert coded < item.nominal_bits


def test_with_entropy_size_fills_the_rate_column(rng):
    model = entropy.fit([_bitstream(_skewed(rng))])
    item = entropy.with_entropy_size(_bitstream(_skewed(rng), seconds=2.0), model)
    assert item.entropy_coded_bits == entropy.coded_bits(model, item)
    assert item.entropy_coded_kbps == pytest.approx(item.entropy_coded_bits / 2.0 / 1000.0)


def test_save_load_round_trip(tmp_path, rng):
    model = entropy.fit([_bitstream(_skewed(rng))])
    path = tmp_path / "model.npz"
    model.save(path)
    back = entropy.EntropyModel.load(path)
    assert sorted(back.probabilities) == ["q0", "q1"]
    np.testing.assert_array_equal(back.probabilities["q0"], model.probabilities["q0"])
    data = dict(np.load(path))
    data["version"] = np.array(7)
    np.savez(path, **data)
    with pytest.raises(entropy.EntropyModelError, match="format version 7 is unknown"):
        entropy.EntropyModel.load(path)


def test_errors_name_the_problem(rng):
    model = entropy.fit([_bitstream({"q0": [1, 2, 3]})])
    with pytest.raises(entropy.EntropyModelError, match="stream 'q9' has no entropy model"):
        entropy.coded_bits(model, _bitstream({"q9": [1]}))
    with pytest.raises(entropy.EntropyModelError, match="alphabet 32, model has 16"):
        entropy.coded_bits(model, _bitstream({"q0": [1]}, alphabet=32))
    with pytest.raises(ConfigError, match="smoothing must be > 0"):
        entropy.fit([_bitstream({"q0": [1]})], smoothing=0.0)
    with pytest.raises(entropy.EntropyModelError, match="empty fit split"):
        entropy.fit([])
    with pytest.raises(entropy.EntropyModelError, match="alphabet 32 here and 16"):
        entropy.fit([_bitstream({"q0": [1]}), _bitstream({"q0": [1]}, alphabet=32)])


def test_split_fit_eval():
    fit_split, eval_split = entropy.split_fit_eval(list(range(10)), 0.3)
    assert fit_split == [0, 1, 2] and eval_split == list(range(3, 10))
    with pytest.raises(ConfigError, match="fit_fraction"):
        entropy.split_fit_eval([1, 2], 1.0)
    assert math.isclose(sum(entropy.fit([_bitstream({"q0": [0]})]).probabilities["q0"]), 1.0)
