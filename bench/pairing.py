"""Pairing a reference with its decoded signal before any item metric: length policy, then optional alignment.

Both steps are settings of a run (config keys ``length_policy`` and ``alignment``) and of ``codecbench score``
(``--length-policy``, ``--max-lag-ms``, ``--align-per``), and what they did is recorded per item
(:meth:`PairRecord.columns`).

**Length policy** (``trim`` by default): ``trim`` cuts both signals to their common length (the usual practice;
samples a decoder padded on are not scored); ``pad`` keeps the reference whole and zero-pads (or cuts) the decoded
signal to its length.

**Alignment** is off by default: the codec removes its own known delay, and item metrics do not search for a
better score. With ``alignment: {max_lag_ms: M, per: condition|item}`` a lag is *measured*:

1. per item, the cross-correlation of the channel means for lags ``|l| <= M`` (``l > 0``: the decoded signal is
   late), computed twice: plainly, ``c_i(l) = sum_n deg[n] ref[n - l]``, and partially whitened, ``w_i(l)`` (the
   cross-spectrum divided by the square root of its magnitude, :data:`WHITENING`; this sharpens the peak of
   low-pass or impulsive content, whose plain correlation is wide);
2. ``per: condition`` (default) sums ``c_i`` and ``w_i`` over all items of the condition (in a run: the items of
   one work unit, i.e. of one operating point and shard), so one lag is estimated for the whole condition;
   ``per: item`` uses each item alone;
3. the candidate is the lag of the largest ``w``; its *robust z* is ``(w_peak - median(off)) / (1.4826 MAD(off))``
   over the *off-peak* values ``off`` (the lags more than :data:`GUARD_MS` from the candidate); its normalised
   correlation is ``rho = c(candidate) / sqrt(sum_i |ref_i|^2 * sum_i |deg_i|^2)``;
4. the lag is **accepted only when** ``z >= Z_THRESHOLD`` (12) **and** ``rho >= MIN_PEAK_CORRELATION`` (0.3);
   otherwise lag 0 is used and the decision says why.

A rejected or accepted decision is recorded per item (``lag_decision``, ``lag_samples`` applied, the candidate,
``lag_peak_correlation``, ``lag_peak_z``). Thresholds were chosen from measurements (docs/precomputed-and-score.md):
on the spresso-demo folders, unrelated clip pairs reach z <= 8.4 (rho <= 0.01), generative conditions z <= 9.6 or
rho <= 0.27, and a clip delayed by 137 samples z 51-236 with rho 1.00.

Shapes: C channels, T samples; signals are float arrays [C, T] at the evaluation rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from codecbench.bench.core.errors import ConfigError

LENGTH_POLICIES = ("trim", "pad")
ALIGN_PER = ("condition", "item")
Z_THRESHOLD = 12.0
MIN_PEAK_CORRELATION = 0.3
GUARD_MS = 1.0
MIN_OFF_PEAK_VALUES = 20
WHITENING = 0.5  # exponent of the cross-spectrum magnitude divided out (0: plain, 1: PHAT)


@dataclass(frozen=True)
class AlignmentSpec:
    """Alignment setting: ``max_lag_ms`` 0 (default) switches it off; ``per`` is ``condition`` or ``item``."""

    max_lag_ms: float = 0.0
    per: str = "condition"

    def __post_init__(self) -> None:
        check_alignment(self.max_lag_ms, self.per, "alignment")

    @property
    def enabled(self) -> bool:
        return self.max_lag_ms > 0


def check_alignment(max_lag_ms: object, per: object, where: str) -> None:
    """Raise :class:`ConfigError` naming ``where`` for a bad ``max_lag_ms`` or ``per``."""
    if isinstance(max_lag_ms, bool) or not isinstance(max_lag_ms, (int, float)) or not np.isfinite(max_lag_ms) \
            or not 0 <= max_lag_ms <= 1000:
        raise ConfigError(f"{where}.max_lag_ms: expected a number of milliseconds in [0, 1000], got {max_lag_ms!r}")
    if per not in ALIGN_PER:
        raise ConfigError(f"{where}.per: '{per}' is not one of {', '.join(ALIGN_PER)}")


def check_length_policy(policy: object, where: str = "length_policy") -> str:
    if policy not in LENGTH_POLICIES:
        raise ConfigError(f"{where}: '{policy}' is not one of {', '.join(LENGTH_POLICIES)}")
    return str(policy)


@dataclass(frozen=True)
class LagDecision:
    """What the alignment step decided for one item (``lag_samples`` is what was applied)."""

    lag_decision: str  # "off", "accepted", or "rejected: <why>"
    lag_scope: str  # "none", "item" or "condition"
    lag_samples: int = 0
    lag_candidate_samples: int = 0
    lag_peak_correlation: float = float("nan")
    lag_peak_z: float = float("nan")


OFF = LagDecision("off", "none")


@dataclass(frozen=True)
class PairRecord:
    """Per item: the length policy and the alignment decision (columns with units in their names)."""

    length_policy: str
    length_trimmed_s: float  # removed from the end of the longer signal (trim) or of the decoded signal (pad)
    length_padded_s: float  # zeros appended to the decoded signal (pad) or counted in it by its reader
    lag: LagDecision
    sample_rate_hz: int

    def columns(self) -> dict[str, object]:
        lag = asdict(self.lag)
        lag["lag_ms"] = 1000.0 * self.lag.lag_samples / self.sample_rate_hz
        return {"length_policy": self.length_policy, "length_trimmed_s": self.length_trimmed_s,
                "length_padded_s": self.length_padded_s, **lag}


PAIR_COLUMNS = tuple(PairRecord("trim", 0.0, 0.0, OFF, 1).columns())


def apply_length_policy(reference: np.ndarray, degraded: np.ndarray, policy: str, padded_samples: int = 0
                        ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Bring [C, T1] and [C, T2] to one length. ``padded_samples``: zeros a reader already appended to the end of
    ``degraded`` (they are removed again under ``trim``). Returns (reference, degraded, trimmed, padded)."""
    if policy == "trim":
        deg_len = degraded.shape[-1] - int(padded_samples)
        length = min(reference.shape[-1], deg_len)
        trimmed = max(reference.shape[-1], deg_len) - length
        return reference[..., :length], degraded[..., :length], int(trimmed), 0
    if policy != "pad":
        raise ConfigError(f"length_policy: '{policy}' is not one of {', '.join(LENGTH_POLICIES)}")
    target = reference.shape[-1]
    have = degraded.shape[-1]
    if have >= target:
        return reference, degraded[..., :target], int(have - target), int(padded_samples)
    pad = [(0, 0)] * (degraded.ndim - 1) + [(0, target - have)]
    return reference, np.pad(degraded, pad), 0, int(padded_samples) + target - have


def _correlation(reference: np.ndarray, degraded: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Cross-correlation windows [2 max_lag + 1] of the channel means: plain, and partially whitened (the
    cross-spectrum divided by its magnitude to the power :data:`WHITENING`, so a true delay gives a sharp peak even
    for low-pass content); and both energies."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, reference.shape[-1]).mean(axis=0)
    deg = np.asarray(degraded, dtype=np.float64).reshape(-1, degraded.shape[-1]).mean(axis=0)
    length = min(ref.shape[-1], deg.shape[-1])
    ref, deg = ref[:length], deg[:length]
    size = 1 << int(np.ceil(np.log2(2 * length)))
    cross = np.fft.rfft(deg, size) * np.conj(np.fft.rfft(ref, size))
    magnitude = np.abs(cross)
    floor = 1e-12 * max(float(magnitude.max()), 1e-30)
    lags = np.arange(-max_lag, max_lag + 1) % size
    plain = np.fft.irfft(cross, size)[lags]
    phat = np.fft.irfft(cross / np.maximum(magnitude, floor) ** WHITENING, size)[lags]
    return plain, phat, float(np.sum(ref**2)), float(np.sum(deg**2))


def decide(plain: np.ndarray, phat: np.ndarray, energy_ref: float, energy_deg: float, sample_rate_hz: int,
           scope: str) -> LagDecision:
    """Apply the significance rule (module docstring) to summed correlation windows [2 L + 1]."""
    max_lag = (plain.shape[0] - 1) // 2
    norm = np.sqrt(energy_ref * energy_deg)
    if not np.isfinite(norm) or norm <= 0:
        return LagDecision("rejected: silent signal", scope)
    lags = np.arange(-max_lag, max_lag + 1)
    best = int(np.argmax(phat))
    candidate, peak = int(lags[best]), float(plain[best] / norm)
    guard = max(1, int(round(GUARD_MS * sample_rate_hz / 1000.0)))
    off = phat[np.abs(lags - candidate) > guard]
    if off.shape[0] < MIN_OFF_PEAK_VALUES:
        return LagDecision(f"rejected: window too small to test ({off.shape[0]} off-peak values)", scope, 0,
                           candidate, peak)
    spread = 1.4826 * float(np.median(np.abs(off - np.median(off))))
    z = (float(phat[best]) - float(np.median(off))) / max(spread, 1e-300)
    if z >= Z_THRESHOLD and peak >= MIN_PEAK_CORRELATION:
        return LagDecision("accepted", scope, candidate, candidate, peak, z)
    why = []
    if z < Z_THRESHOLD:
        why.append(f"peak z {z:.1f} < {Z_THRESHOLD:g}")
    if peak < MIN_PEAK_CORRELATION:
        why.append(f"peak correlation {peak:.3f} < {MIN_PEAK_CORRELATION:g}")
    return LagDecision("rejected: " + ", ".join(why), scope, 0, candidate, peak, z)


def estimate_lags(references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int,
                  spec: AlignmentSpec) -> list[LagDecision]:
    """One decision per item (the same one for every item when ``spec.per == "condition"``)."""
    if not spec.enabled or not references:
        return [OFF] * len(references)
    max_lag = max(1, int(round(spec.max_lag_ms * sample_rate_hz / 1000.0)))
    parts = [_correlation(r, d, max_lag) for r, d in zip(references, degraded)]
    if spec.per == "item":
        return [decide(*part, sample_rate_hz, "item") for part in parts]
    total = decide(*(sum(p[k] for p in parts) for k in range(4)), sample_rate_hz, "condition")
    return [total] * len(references)


def shift(reference: np.ndarray, degraded: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Undo ``lag`` (``> 0``: degraded late): keep the overlapping part of both; 0 is a no-op."""
    if lag == 0:
        return reference, degraded
    if lag > 0:
        return reference[..., :-lag], degraded[..., lag:]
    return reference[..., -lag:], degraded[..., :lag]


def prepare(references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int, *,
            alignment: AlignmentSpec = AlignmentSpec(), length_policy: str = "trim",
            padded_samples: Sequence[int] | None = None) -> tuple[list[np.ndarray], list[np.ndarray], list[PairRecord]]:
    """Length policy, then alignment, for the items of one condition. Returns new lists and one record per item."""
    padded_samples = list(padded_samples) if padded_samples is not None else [0] * len(references)
    refs, degs, lengths = [], [], []
    for ref, deg, padded in zip(references, degraded, padded_samples):
        ref, deg, trimmed, pad = apply_length_policy(np.asarray(ref), np.asarray(deg), length_policy, padded)
        refs.append(ref)
        degs.append(deg)
        lengths.append((trimmed, pad))
    decisions = estimate_lags(refs, degs, sample_rate_hz, alignment)
    records = []
    for i, decision in enumerate(decisions):
        refs[i], degs[i] = shift(refs[i], degs[i], decision.lag_samples)
        trimmed, pad = lengths[i]
        records.append(PairRecord(length_policy, trimmed / sample_rate_hz, pad / sample_rate_hz, decision,
                                  sample_rate_hz))
    return refs, degs, records


def identity(alignment: AlignmentSpec, length_policy: str) -> dict[str, object]:
    """The settings as plain data (part of unit ids)."""
    return {"alignment": asdict(alignment), "length_policy": length_policy}
