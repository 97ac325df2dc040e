"""Entropy coding of code streams: per-stream static models fitted on a fit split, a real ANS coder.

The coder is ``constriction``'s ANS stack coder (``constriction.stream.stack.AnsCoder``) with one static
categorical model per code-stream name (e.g. ``q0`` .. ``q7`` for EnCodec's codebooks), fitted from symbol counts
on a **separate fit split** of bitstreams, with additive smoothing so that every symbol stays encodable.

    model = fit([bitstream, ...])                  # fit split
    bits = coded_bits(model, bitstream)            # size of the real compressed message, in bits
    words = encode(model, bitstream)               # uint32 words
    codes = decode(model, words, bitstream)        # exact round trip (stream lengths and names from the header)
    bitstream = with_entropy_size(bitstream, model)  # fills CodeBitstream.entropy_coded_bits

The coded size is the length of the compressed message constriction actually produced (32-bit words, so up to
31 bits of padding per item); the ideal information content ``-sum log2 p`` is available as
:func:`information_bits` for comparison. Models save to and load from ``.npz`` with a format version.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from codecbench.bench.core.errors import CodecbenchError, ConfigError, MissingDependencyError
from codecbench.codecs.base import Bitstream, CodeBitstream

MODEL_FORMAT_VERSION = 1


class EntropyModelError(CodecbenchError):
    """A bitstream does not fit the entropy model (unknown stream name, other alphabet) or a model file is bad."""


def _constriction():
    try:
        import constriction
    except ImportError as exc:  # pragma: no cover - installed with the codecs extra
        raise MissingDependencyError("entropy coding", "constriction", 'pip install "constriction>=0.3"') from exc
    return constriction


@dataclass(frozen=True)
class EntropyModel:
    """Static per-stream symbol distributions: ``probabilities[name]`` float64 [K], summing to 1."""

    probabilities: Mapping[str, np.ndarray]
    num_fit_items: int
    smoothing: float

    def alphabet_size(self, name: str) -> int:
        return int(self.probabilities[name].shape[0])

    def save(self, path: str | os.PathLike) -> None:
        names = sorted(self.probabilities)
        arrays = {f"p_{i}": self.probabilities[n] for i, n in enumerate(names)}
        np.savez(path, version=MODEL_FORMAT_VERSION, names=np.array(names), num_fit_items=self.num_fit_items,
                 smoothing=self.smoothing, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EntropyModel:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["version"])
            if version != MODEL_FORMAT_VERSION:
                raise EntropyModelError(f"{path}: entropy model format version {version} is unknown "
                                        f"(this codecbench reads {MODEL_FORMAT_VERSION})")
            names = [str(n) for n in data["names"]]
            probs = {n: data[f"p_{i}"] for i, n in enumerate(names)}
            return cls(probs, int(data["num_fit_items"]), float(data["smoothing"]))


def fit(bitstreams: Iterable[Bitstream], smoothing: float = 0.5) -> EntropyModel:
    """Fit one categorical model per stream name from symbol counts over ``bitstreams`` (the fit split).

    ``smoothing`` is added to every count (additive / Laplace smoothing) so unseen symbols stay codable.
    """
    if smoothing <= 0:
        raise ConfigError(f"entropy smoothing must be > 0 (unseen symbols must stay encodable), got {smoothing}")
    counts: dict[str, np.ndarray] = {}
    items = 0
    for bitstream in bitstreams:
        items += 1
        if not isinstance(bitstream, CodeBitstream):
            raise EntropyModelError(f"entropy models are fitted on code streams; a {type(bitstream).__name__} has "
                                    "none")
        for stream in bitstream.streams:
            have = counts.get(stream.name)
            if have is None:
                have = counts[stream.name] = np.zeros(stream.alphabet_size, dtype=np.float64)
            elif have.shape[0] != stream.alphabet_size:
                raise EntropyModelError(f"stream {stream.name!r} has alphabet {stream.alphabet_size} here and "
                                        f"{have.shape[0]} elsewhere in the fit split")
            have += np.bincount(np.asarray(stream.codes), minlength=stream.alphabet_size)
    if items == 0:
        raise EntropyModelError("cannot fit an entropy model on an empty fit split")
    probs = {name: (c + smoothing) / (c + smoothing).sum() for name, c in counts.items()}
    return EntropyModel(probs, items, smoothing)


def _check(model: EntropyModel, bitstream: CodeBitstream) -> None:
    if not isinstance(bitstream, CodeBitstream):
        raise EntropyModelError(f"entropy coding needs code streams; a {type(bitstream).__name__} has none")
    for stream in bitstream.streams:
        if stream.name not in model.probabilities:
            raise EntropyModelError(f"stream {stream.name!r} has no entropy model; modelled streams: "
                                    f"{sorted(model.probabilities)}")
        if model.alphabet_size(stream.name) != stream.alphabet_size:
            raise EntropyModelError(f"stream {stream.name!r}: alphabet {stream.alphabet_size}, model has "
                                    f"{model.alphabet_size(stream.name)}")


def _categorical(probabilities: np.ndarray):
    return _constriction().stream.model.Categorical(probabilities, perfect=False)


def encode(model: EntropyModel, bitstream: CodeBitstream) -> np.ndarray:
    """Entropy-code every stream of ``bitstream`` into one ANS message: uint32 words [W]."""
    _check(model, bitstream)
    coder = _constriction().stream.stack.AnsCoder()
    for stream in reversed(bitstream.streams):  # a stack: encode in reverse, decode forwards
        coder.encode_reverse(np.asarray(stream.codes, dtype=np.int32), _categorical(model.probabilities[stream.name]))
    return np.asarray(coder.get_compressed(), dtype=np.uint32)


def decode(model: EntropyModel, words: np.ndarray, layout: CodeBitstream) -> list[np.ndarray]:
    """Decode ``words`` back to the codes of each stream of ``layout`` (names and lengths from its header)."""
    _check(model, layout)
    coder = _constriction().stream.stack.AnsCoder(np.asarray(words, dtype=np.uint32))
    out = []
    for stream in layout.streams:
        symbols = coder.decode(_categorical(model.probabilities[stream.name]), stream.num_frames)
        out.append(np.asarray(symbols, dtype=np.int64))
    return out


def coded_bits(model: EntropyModel, bitstream: CodeBitstream) -> float:
    """Size in bits of the real compressed message for ``bitstream`` (32 bits per ANS word)."""
    return 32.0 * encode(model, bitstream).size


def information_bits(model: EntropyModel, bitstream: CodeBitstream) -> float:
    """Ideal code length ``-sum log2 p(symbol)`` under ``model`` (the bound the coder approaches)."""
    _check(model, bitstream)
    return float(sum(-np.log2(model.probabilities[s.name][np.asarray(s.codes)]).sum() for s in bitstream.streams))


def with_entropy_size(bitstream: CodeBitstream, model: EntropyModel) -> CodeBitstream:
    """``bitstream`` with ``entropy_coded_bits`` set from :func:`coded_bits`."""
    return dataclasses.replace(bitstream, entropy_coded_bits=coded_bits(model, bitstream))


def split_fit_eval(items: Sequence, fit_fraction: float = 0.5) -> tuple[list, list]:
    """Deterministic split of ``items`` into a fit split (first part) and an evaluation split (the rest)."""
    if not 0.0 < fit_fraction < 1.0:
        raise ConfigError(f"entropy fit_fraction must be in (0, 1), got {fit_fraction}")
    cut = max(1, min(len(items) - 1, round(len(items) * fit_fraction)))
    return list(items[:cut]), list(items[cut:])
