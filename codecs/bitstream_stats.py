"""Bitstream statistics of discrete codec points: codebook utilisation, code perplexity, tokens per second.

For each operating point the integer code streams of all its items are pooled per stream name (``q0`` .. ``qK-1``
for residual codebooks), as AudioCodecBench and codecscope report them:

- ``utilisation``: share of the codebook's codewords that occur at least once (used / alphabet size);
- ``entropy_bits``: plug-in entropy ``H = -sum p log2 p`` of the empirical codeword distribution (bits/token);
- ``perplexity``: ``2^H``, the effective number of equally likely codewords (at most the alphabet size);
- ``tokens_per_s``: tokens per second of audio, the sum of the streams' frame rates (frame rate x codebooks when
  they share one rate).

Per point: the mean of utilisation and perplexity over codebooks, ``tokens_per_s`` and
``empirical_entropy_kbps`` = sum over codebooks of frame rate x H / 1000: the rate an ideal static per-codebook
entropy coder fitted **on these same items** would reach (an in-sample bound; the results table's
``entropy_coded_kbps`` is the real ANS-coded size on held-out items, :mod:`codecbench.codecs.entropy`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from codecbench.codecs.base import CodeStream


@dataclass(frozen=True)
class CodebookStats:
    """One code stream (codebook) of one operating point, pooled over its items."""

    codebook: str
    alphabet_size: int
    frame_rate_hz: float
    n_tokens: int
    codewords_used: int
    utilisation: float
    entropy_bits: float
    perplexity: float


def codebook_stats(codes: np.ndarray, alphabet_size: int, frame_rate_hz: float, name: str = "") -> CodebookStats:
    """Statistics of the codes [F] (pooled frames) of one codebook with ``alphabet_size`` codewords."""
    codes = np.asarray(codes)
    counts = np.bincount(codes.astype(np.int64), minlength=alphabet_size) if codes.size else np.zeros(alphabet_size)
    n = int(counts.sum())
    used = int(np.count_nonzero(counts))
    if n:
        p = counts[counts > 0] / n
        entropy = float(-(p * np.log2(p)).sum())
    else:
        entropy = math.nan
    return CodebookStats(name, int(alphabet_size), float(frame_rate_hz), n, used, used / alphabet_size,
                         entropy, 2.0**entropy if n else math.nan)


def point_stats(items: Sequence[Sequence[CodeStream]]) -> tuple[list[CodebookStats], dict[str, float]]:
    """Per-codebook statistics and the point summary from the code streams of every item of one point.

    Streams are matched by name (by position where unnamed); a stream whose alphabet or frame rate differs between
    items is an error (one point has one bitstream layout).
    """
    pooled: dict[str, list[np.ndarray]] = {}
    layout: dict[str, tuple[int, float]] = {}
    for streams in items:
        for index, stream in enumerate(streams):
            name = stream.name or f"stream{index}"
            spec = (int(stream.alphabet_size), float(stream.frame_rate_hz))
            if layout.setdefault(name, spec) != spec:
                raise ValueError(f"code stream {name!r}: alphabet/frame rate {spec} differs from {layout[name]} "
                                 "in another item of the same point")
            pooled.setdefault(name, []).append(np.asarray(stream.codes))
    books = [codebook_stats(np.concatenate(pooled[name]), *layout[name], name) for name in pooled]
    summary = {
        "n_codebooks": len(books),
        "tokens_per_s": float(sum(b.frame_rate_hz for b in books)),
        "utilisation_mean": float(np.mean([b.utilisation for b in books])) if books else math.nan,
        "utilisation_min": float(min(b.utilisation for b in books)) if books else math.nan,
        "perplexity_mean": float(np.mean([b.perplexity for b in books])) if books else math.nan,
        "entropy_bits_per_token_mean": float(np.mean([b.entropy_bits for b in books])) if books else math.nan,
        "empirical_entropy_kbps": float(sum(b.frame_rate_hz * b.entropy_bits for b in books) / 1000.0),
        "nominal_kbps": float(sum(b.frame_rate_hz * math.log2(b.alphabet_size) for b in books) / 1000.0),
    }
    return books, summary


def rows(codec: str, point: str, items: Sequence[Sequence[CodeStream]]) -> list[dict]:
    """Rows of ``bitstream_stats.csv`` for one point: one per codebook, each with the point summary."""
    books, summary = point_stats(items)
    return [{"codec": codec, "point": point, "n_items": len(items), **asdict(b), **summary} for b in books]


__all__ = ["CodebookStats", "codebook_stats", "point_stats", "rows"]
