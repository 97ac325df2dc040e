"""ITU-R BS.1534-3 (MUSHRA) anchors: the hidden reference and the 3.5 kHz / 7 kHz low-pass anchors.

Anchors are systems, not codecs (:class:`~codecbench.codecs.base.System`: no encoder, no decoder, no bitstream).
They work at whatever evaluation rate they are given (``info.sample_rate_hz`` None: no resampling) and on any
number of channels (``info.channels`` = :data:`ANY_CHANNELS`; each channel is processed alone, nothing is
downmixed). They have no bitrate: each item's record is a :class:`~codecbench.codecs.bitstream.NoBitstream` whose
rates are read from the output waveform itself (frame rate = the evaluation rate, one value per input sample:
compression ratio 1, ``rate_source`` "measured"), and reports draw them as labelled reference lines.

Low-pass anchors. BS.1534-3 asks of the 3.5 kHz anchor a pass-band ripple within +/-0.1 dB up to 3.5 kHz, at least
25 dB attenuation at 4 kHz and at least 50 dB at 4.5 kHz and beyond; the 7 kHz anchor is the same mask scaled by 2
(7 / 8 / 9 kHz). Each is one linear-phase FIR filter designed with a Kaiser window (:func:`design_lowpass`):

==================== =============== =============== ==================== =====================================
anchor               pass edge (Hz)  stop edge (Hz)  design attenuation   taps / delay at 48 kHz
==================== =============== =============== ==================== =====================================
``lowpass_3k5``      3500            4000            60 dB                351 taps, 175 samples (3.65 ms)
``lowpass_7k``       7000            8000            60 dB                177 taps, 88 samples (1.83 ms)
==================== =============== =============== ==================== =====================================

The number of taps follows Kaiser's formula (``scipy.signal.kaiserord``) at each rate and is made odd, so the
group delay ``(N - 1) / 2`` is a whole number of samples; the output is the full convolution with that many
samples dropped at the start (exact zero delay; the signal is taken as zero outside the clip). The response is
applied once (no forward-backward filtering, which would square it). 60 dB of design attenuation gives a
pass-band ripple of about +/-0.01 dB and a stop band 10 dB below the mask's 50 dB from the stop edge on.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from codecbench.bench.core.errors import CodecbenchError
from codecbench.codecs.base import CodecInfo, NoBitstream, OperatingPoint, Roundtrip, System

ANY_CHANNELS = 0
"""``CodecInfo.channels`` of the anchors: any channel count, each channel processed alone."""

_SOURCE = "ITU-R BS.1534-3 (2015), Method for the subjective assessment of intermediate quality level of audio"


@dataclass(frozen=True)
class LowPassDesign:
    """A Kaiser-window linear-phase FIR low-pass: pass-band edge, stop-band edge and design attenuation."""

    passband_edge_hz: float
    stopband_edge_hz: float
    attenuation_db: float = 60.0

    @property
    def cutoff_hz(self) -> float:
        """The -6 dB point of the windowed-sinc design, midway between the edges."""
        return 0.5 * (self.passband_edge_hz + self.stopband_edge_hz)


LOWPASS_3K5 = LowPassDesign(passband_edge_hz=3500.0, stopband_edge_hz=4000.0)
LOWPASS_7K = LowPassDesign(passband_edge_hz=7000.0, stopband_edge_hz=8000.0)


@functools.lru_cache(maxsize=32)
def design_lowpass(design: LowPassDesign, sample_rate_hz: int) -> np.ndarray:
    """Taps ``[N]`` (float64, N odd, symmetric) of ``design`` at ``sample_rate_hz``.

    Raises :class:`CodecbenchError` when the rate cannot hold the stop edge (the rate must be at least twice it).
    """
    from scipy import signal

    nyquist_hz = 0.5 * sample_rate_hz
    if design.stopband_edge_hz > nyquist_hz:
        raise CodecbenchError(
            f"the {design.passband_edge_hz / 1000:g} kHz low-pass anchor needs an evaluation rate of at least "
            f"{int(2 * design.stopband_edge_hz)} Hz (twice its {design.stopband_edge_hz:g} Hz stop edge); "
            f"got {sample_rate_hz} Hz"
        )
    width = (design.stopband_edge_hz - design.passband_edge_hz) / nyquist_hz
    numtaps, beta = signal.kaiserord(design.attenuation_db, width)
    numtaps += 1 - numtaps % 2  # odd: type-I linear phase, delay (N - 1) / 2 is a whole number of samples
    taps = signal.firwin(numtaps, design.cutoff_hz, window=("kaiser", beta), fs=sample_rate_hz)
    taps.setflags(write=False)
    return taps


def apply_zero_delay(audio: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Filter ``audio`` [..., T] with the odd symmetric ``taps`` [N], group delay removed exactly: same shape."""
    from scipy import signal

    assert taps.ndim == 1 and taps.size % 2 == 1, taps.shape
    delay = (taps.size - 1) // 2
    num_samples = audio.shape[-1]
    kernel = taps.reshape((1,) * (audio.ndim - 1) + (-1,))
    full = signal.oaconvolve(audio.astype(np.float64), kernel, mode="full", axes=-1)
    return full[..., delay : delay + num_samples]


class _Anchor(System):
    """Shared part of the anchors: evaluation-rate processing of every channel, no bitstream."""

    info: ClassVar[CodecInfo]

    def _process(self, audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        """Process ``audio`` [B, C, T] float32 at ``sample_rate_hz``; same shape."""
        raise NotImplementedError

    def roundtrip(
        self,
        audio: torch.Tensor,
        sample_rate_hz: int,
        point: OperatingPoint,
        item_ids: Sequence[str] | None = None,
    ) -> Roundtrip:
        """Process ``audio`` [B, C, T] at the evaluation rate ``sample_rate_hz``: no resampling, no downmix."""
        if audio.ndim != 3:
            raise CodecbenchError(f"anchor '{self.info.name}' expects audio [B, C, T], got shape {tuple(audio.shape)}")
        started = time.perf_counter()
        processed = self._process(audio.detach().cpu().numpy().astype(np.float32), int(sample_rate_hz))
        processed = np.ascontiguousarray(processed, dtype=np.float32)
        done = time.perf_counter()
        batch, channels, num_samples = processed.shape
        rates = {"frame_rate_hz": float(sample_rate_hz), "compression_ratio": 1.0}  # the waveform itself
        records = [NoBitstream(int(sample_rate_hz), num_samples, channels, rates=rates, source="measured")
                   for _ in range(batch)]
        processing = {
            "native_sample_rate_hz": sample_rate_hz,
            "resampler": "none",
            "channel_policy": "none (each channel processed alone)",
            "encode_s": done - started,  # the whole processing; nothing is decoded
            "decode_s": 0.0,
        }
        decoded = torch.from_numpy(processed).to(audio.device)
        return Roundtrip(decoded=decoded, bitstreams=records, processing=processing)


class HiddenReference(_Anchor):
    """The hidden reference: the input itself, bit for bit."""

    info = CodecInfo(
        name="reference",
        kind="anchor",
        sample_rate_hz=None,
        channels=ANY_CHANNELS,
        description="BS.1534-3 hidden reference (identity)",
        source=_SOURCE,
        is_anchor=True,
    )

    def _process(self, audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        return audio.copy()

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        return 0.0


class _LowPass(_Anchor):
    design: ClassVar[LowPassDesign]

    def _process(self, audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        return apply_zero_delay(audio, design_lowpass(self.design, sample_rate_hz))

    def taps(self, sample_rate_hz: int) -> np.ndarray:
        """The FIR taps ``[N]`` this anchor applies at ``sample_rate_hz``."""
        return design_lowpass(self.design, int(sample_rate_hz))

    def algorithmic_latency_ms(self, point: OperatingPoint) -> float:
        """Group delay of the filter at 48 kHz (removed from the output; a causal filter would need it)."""
        taps = design_lowpass(self.design, 48000)
        return 1000.0 * (taps.size - 1) / 2 / 48000

    def num_parameters(self) -> int:
        return 0


class LowPass3k5(_LowPass):
    """BS.1534-3 low-pass anchor at 3.5 kHz (the 'low anchor')."""

    design = LOWPASS_3K5
    info = CodecInfo(
        name="lowpass_3k5",
        kind="anchor",
        sample_rate_hz=None,
        channels=ANY_CHANNELS,
        description="BS.1534-3 low anchor: 3.5 kHz linear-phase FIR low-pass (Kaiser, 60 dB), zero delay",
        source=_SOURCE,
        is_anchor=True,
        dependencies=("scipy",),
    )


class LowPass7k(_LowPass):
    """BS.1534-3 low-pass anchor at 7 kHz (the 'mid anchor')."""

    design = LOWPASS_7K
    info = CodecInfo(
        name="lowpass_7k",
        kind="anchor",
        sample_rate_hz=None,
        channels=ANY_CHANNELS,
        description="BS.1534-3 mid anchor: 7 kHz linear-phase FIR low-pass (Kaiser, 60 dB), zero delay",
        source=_SOURCE,
        is_anchor=True,
        dependencies=("scipy",),
    )


__all__ = [
    "ANY_CHANNELS",
    "HiddenReference",
    "LOWPASS_3K5",
    "LOWPASS_7K",
    "LowPass3k5",
    "LowPass7k",
    "LowPassDesign",
    "apply_zero_delay",
    "design_lowpass",
]
