"""Discrete S-PRESSO: the paper's operating points, their bitrate arithmetic, QINCo2 codes as code streams, and
the discrete codec (stage-1 or stage-3 model + QINCo2).

Shapes: B batch, T samples (48 kHz), Dz z dims, Fz z frames, m QINCo2 steps used (<= M), K codebook size.

Bitrate = frame rate x m x log2 K, computed, never typed in:

- :class:`PaperPoint` holds the paper's *label* ("1.32") and the inferred geometry (t, M, K); its
  ``bitrate_kbps`` is computed from them (paper-notes section 5.1: 1.32 -> t = 9, M = 10, K = 4096 ->
  100/9 Hz x 120 bits = 1.333 kbps; 0.3 -> t = 100, M = 25; 0.096 -> t = 100, M = 8);
- a :class:`~codecbench.codecs.base.Bitstream` of the discrete codec carries one
  :class:`~codecbench.codecs.base.CodeStream` per QINCo2 step (alphabet K, frame rate 100/t Hz), so the results
  table's ``bitrate_kbps`` is computed from the codes actually sent (frames include the last, padded frame);
- using only the first m steps of a model gives the lower rates of the same model (QINCo2 is trained on every
  prefix).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.base import Bitstream, CodeBitstream, Codec, CodecInfo, CodeStream, OperatingPoint, ParamSpec

AE_FRAME_RATE_HZ = 100.0  # 48 kHz / hop 480 (paper-notes section 2)


def bitrate_kbps(frame_rate_hz: float, num_steps: int, codebook_size: int) -> float:
    """frame rate x m x log2 K, in kbps."""
    return frame_rate_hz * num_steps * math.log2(codebook_size) / 1000.0


@dataclass(frozen=True)
class PaperPoint:
    """One of the paper's discrete operating points: its published label and the inferred geometry."""

    label_kbps: str  # as printed in the paper
    time_pool: int  # t
    num_steps: int  # M
    codebook_size: int  # K
    ae_frame_rate_hz: float = AE_FRAME_RATE_HZ

    @property
    def frame_rate_hz(self) -> float:
        return self.ae_frame_rate_hz / self.time_pool

    @property
    def bits_per_frame(self) -> float:
        return self.num_steps * math.log2(self.codebook_size)

    @property
    def bitrate_kbps(self) -> float:
        return bitrate_kbps(self.frame_rate_hz, self.num_steps, self.codebook_size)

    def describe(self) -> str:
        return (f"paper '{self.label_kbps} kbps' = {self.frame_rate_hz:.4g} Hz x {self.num_steps} x "
                f"log2({self.codebook_size}) = {self.bits_per_frame:g} bits/frame -> {self.bitrate_kbps:.4g} kbps")


PAPER_POINTS: dict[str, PaperPoint] = {
    "1.32": PaperPoint("1.32", time_pool=9, num_steps=10, codebook_size=4096),
    "0.3": PaperPoint("0.3", time_pool=100, num_steps=25, codebook_size=4096),
    "0.096": PaperPoint("0.096", time_pool=100, num_steps=8, codebook_size=4096),
}


def paper_point(label: str) -> PaperPoint:
    if label not in PAPER_POINTS:
        raise ConfigError(f"unknown S-PRESSO paper bitrate label {label!r}; choices: {sorted(PAPER_POINTS)}")
    return PAPER_POINTS[label]


def prefix_rates_kbps(frame_rate_hz: float, max_steps: int, codebook_size: int) -> list[float]:
    """The rates of the same model using its first m = 1..M steps."""
    return [bitrate_kbps(frame_rate_hz, m, codebook_size) for m in range(1, max_steps + 1)]


# --------------------------------------------------------------------------------------------------------------
# Codes <-> bitstreams
# --------------------------------------------------------------------------------------------------------------


def codes_to_bitstream(codes: np.ndarray, codebook_size: int, frame_rate_hz: float, sample_rate_hz: int,
                       num_samples: int) -> Bitstream:
    """codes [Fz, m] of one item -> a Bitstream with one CodeStream per QINCo2 step (alphabet K)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise ConfigError(f"QINCo2 codes of one item must be [Fz, m], got shape {codes.shape}")
    streams = tuple(
        CodeStream(codes[:, j].astype(np.int64), codebook_size, frame_rate_hz, name=f"qinco2_step{j + 1}")
        for j in range(codes.shape[1])
    )
    return CodeBitstream(sample_rate_hz=sample_rate_hz, num_samples=num_samples, channels=1, streams=streams)


def bitstream_codes(bitstream: Bitstream) -> np.ndarray:
    """The codes [Fz, m] carried by a discrete S-PRESSO bitstream."""
    if not isinstance(bitstream, CodeBitstream):
        raise ConfigError("a discrete S-PRESSO bitstream must carry QINCo2 code streams")
    return np.stack([np.asarray(s.codes) for s in bitstream.streams], axis=1)


# --------------------------------------------------------------------------------------------------------------
# The engine: stage-1/3 model + QINCo2
# --------------------------------------------------------------------------------------------------------------


class DiscreteSPresso:
    """Audio <-> QINCo2 codes through a frozen S-PRESSO model (stage 1, or stage 3 for its finetuned decoder).

    ``model`` is an :class:`~codecbench.codecs.spresso.model.SPresso`; ``quantizer`` a
    :class:`~codecbench.codecs.spresso.qinco2.QINCo2` fitted on that model's z (stage 2).
    """

    def __init__(self, model: Any, quantizer: Any, *, num_candidates: int | None = None, beam_size: int | None = None,
                 sampler_steps: int | None = None):
        if quantizer.config.dim != model.z_dim:
            raise ConfigError(f"QINCo2 dim {quantizer.config.dim} does not match the S-PRESSO z dim {model.z_dim}")
        self.model, self.quantizer = model.eval(), quantizer.eval()
        self.num_candidates, self.beam_size, self.sampler_steps = num_candidates, beam_size, sampler_steps

    @property
    def frame_rate_hz(self) -> float:
        return float(self.model.z_frame_rate_hz)

    @property
    def codebook_size(self) -> int:
        return int(self.quantizer.config.codebook_size)

    @property
    def max_steps(self) -> int:
        return int(self.quantizer.config.num_steps)

    def bitrate_kbps(self, num_steps: int) -> float:
        return bitrate_kbps(self.frame_rate_hz, num_steps, self.codebook_size)

    def _steps(self, num_steps: int | None) -> int:
        m = self.max_steps if not num_steps else num_steps
        if not 1 <= m <= self.max_steps:
            raise ConfigError(f"S-PRESSO discrete: num_steps {num_steps} is out of range [1, {self.max_steps}] "
                              f"(0 means all {self.max_steps})")
        return m

    @torch.no_grad()
    def encode_codes(self, audio: torch.Tensor, num_steps: int | None = None) -> list[np.ndarray]:
        """audio [B, T] at 48 kHz -> per item codes [Fz, m] (beam search over the first m steps)."""
        m = self._steps(num_steps)
        z = self.model.encode(audio.to(self.quantizer.data_mean.device))  # [B, Dz, Fz]
        frames = z.shape[-1]
        flat = z.transpose(1, 2).reshape(-1, z.shape[1])
        codes = self.quantizer.encode(flat, num_candidates=self.num_candidates, beam_size=self.beam_size, num_steps=m)
        return [c.cpu().numpy() for c in codes.reshape(z.shape[0], frames, m)]

    @torch.no_grad()
    def quantized_latents(self, codes: Sequence[np.ndarray]) -> torch.Tensor:
        """Per-item codes [Fz, m] (same shapes) -> z_q [B, Dz, Fz]."""
        stacked = torch.as_tensor(np.stack(codes), device=self.quantizer.data_mean.device)  # [B, Fz, m]
        b, f, m = stacked.shape
        zq = self.quantizer.decode(stacked.reshape(b * f, m))
        return zq.reshape(b, f, -1).transpose(1, 2)

    @torch.no_grad()
    def decode_codes(self, codes: Sequence[np.ndarray], num_samples: int, seed: int) -> torch.Tensor:
        """Per-item codes [Fz, m] -> audio [B, num_samples] (fresh diffusion noise from ``seed``, null text)."""
        return self.model.decode(self.quantized_latents(codes), num_samples, seed, self.sampler_steps)


# --------------------------------------------------------------------------------------------------------------
# Decoding variability
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variability:
    """A metric over several decodes of the same codes with different seeds: values [S] and their spread."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0

    @property
    def range(self) -> float:
        return float(np.max(self.values) - np.min(self.values))


def decoding_variability(decode: Callable[[int], torch.Tensor], reference: torch.Tensor,
                         metric: Callable[[torch.Tensor, torch.Tensor], float], seeds: Sequence[int]) -> Variability:
    """Spread of ``metric(reference, decode(seed))`` over ``seeds`` (>= 2): decode(seed) -> audio like reference."""
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"decoding variability needs at least 2 distinct seeds, got {list(seeds)}")
    values = tuple(float(metric(reference, decode(int(s)))) for s in seeds)
    return Variability(seeds=tuple(int(s) for s in seeds), values=values)


# --------------------------------------------------------------------------------------------------------------
# The codec plugin
# --------------------------------------------------------------------------------------------------------------


class SPressoDiscreteCodec(Codec):
    """Discrete S-PRESSO: one model per paper bitrate label.

    Options: ``models`` = {label: {"checkpoint": stage-1 or stage-3 file, "qinco2": stage-2 file}} with labels
    among ``1.32``, ``0.3``, ``0.096``; ``beam_size``/``num_candidates`` (QINCo2 encode search, default the
    model's), ``sampler_steps`` (default the checkpoint config's). Point parameters: ``paper_kbps`` (label),
    ``num_steps`` (m QINCo2 steps sent, 0 = all M) and ``seed`` (decoding noise; part of the cache key). The
    results table's ``bitrate_kbps`` is computed from the code streams. A point must send the geometry of its
    label (m = the paper's M, K = the paper's K; t checked at load): otherwise it is refused with the rate it
    would measure, unless option ``allow_nonpaper_geometry`` is true (lower m = lower rate of the same model).
    """

    info: ClassVar[CodecInfo] = CodecInfo(
        name="spresso_discrete", kind="neural", sample_rate_hz=48000, channels=1,
        description="S-PRESSO diffusion autoencoder + offline QINCo2 codes (1.32 / 0.3 / 0.096 kbps models)",
        version="1", source="codecbench (this repository); trained with codecbench spresso / spresso-quant",
        paper="https://arxiv.org/abs/2602.15082", needs_weights=True, dependencies=("torch",),
    )
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("paper_kbps", str, choices=tuple(PAPER_POINTS), help="the paper's bitrate label of the model"),
        ParamSpec("num_steps", int, low=0, high=64, help="QINCo2 steps sent (0 = all)"),
        ParamSpec("seed", int, low=0, help="diffusion decoding seed"),
    )
    default_points: ClassVar[tuple[Mapping[str, Any], ...]] = tuple(
        {"paper_kbps": label, "num_steps": 0, "seed": 0} for label in PAPER_POINTS
    )

    def __init__(self, device: str = "cpu", models: Mapping[str, Mapping[str, str]] | None = None,
                 beam_size: int | None = None, num_candidates: int | None = None, sampler_steps: int | None = None,
                 allow_nonpaper_geometry: bool = False):
        super().__init__(device=device)
        if not isinstance(allow_nonpaper_geometry, bool):
            raise ConfigError(f"codec '{self.info.name}' option allow_nonpaper_geometry: expected true or false, "
                              f"got {allow_nonpaper_geometry!r}")
        self.allow_nonpaper_geometry = allow_nonpaper_geometry
        self.models: dict[str, dict[str, str]] = {}
        for label, files in dict(models or {}).items():
            where = f"codec '{self.info.name}' option models.{label}"
            paper_point(str(label))
            if not isinstance(files, Mapping) or set(files) != {"checkpoint", "qinco2"}:
                raise ConfigError(f"{where}: expected a mapping with exactly the keys checkpoint and qinco2")
            for key, value in files.items():
                if not Path(value).is_file():
                    raise ConfigError(f"{where}.{key}: file {value} does not exist")
            self.models[str(label)] = {k: str(v) for k, v in files.items()}
        self.search = {"beam_size": beam_size, "num_candidates": num_candidates, "sampler_steps": sampler_steps}
        self._engines: dict[str, DiscreteSPresso] = {}
        self._last_label: str | None = None  # the runner asks num_parameters() after running a point

    # -- models -----------------------------------------------------------------------------------------------
    def engine(self, label: str) -> DiscreteSPresso:
        if label not in self.models:
            raise ConfigError(f"codec '{self.info.name}': no model for paper_kbps={label!r}; the option 'models' "
                              f"gives {sorted(self.models) or 'none'}")
        if label not in self._engines:
            from codecbench.codecs.spresso.model import load_stage1
            from codecbench.codecs.spresso.qinco2 import QINCo2

            files = self.models[label]
            model = load_stage1(files["checkpoint"], self.device)
            expected = paper_point(label).time_pool
            if model.time_pool != expected:
                raise ConfigError(
                    f"codec '{self.info.name}' option models.{label}.checkpoint: time pooling t = {model.time_pool}, "
                    f"but the paper's {label} kbps model has t = {expected}"
                )
            self._engines[label] = DiscreteSPresso(model, QINCo2.load(files["qinco2"], self.device), **self.search)
        return self._engines[label]

    def check_geometry(self, point: OperatingPoint) -> None:
        """Refuse a point whose loaded model sends another geometry than its paper label (t is checked at load):
        K must be the paper's and the m steps sent must be the paper's M, unless ``allow_nonpaper_geometry``."""
        label = point["paper_kbps"]
        engine, paper = self.engine(label), paper_point(label)
        m = engine._steps(point["num_steps"])
        if self.allow_nonpaper_geometry or (m == paper.num_steps and engine.codebook_size == paper.codebook_size):
            return
        hint = f"set num_steps: {paper.num_steps}" if engine.codebook_size == paper.codebook_size and \
            engine.max_steps >= paper.num_steps else f"use a QINCo2 with M >= {paper.num_steps}, K = {paper.codebook_size}"
        raise ConfigError(
            f"codec '{self.info.name}' point paper_kbps={label}, num_steps={point['num_steps']}: the model sends "
            f"m = {m} steps of K = {engine.codebook_size} ({engine.frame_rate_hz:.4g} Hz x {m} x "
            f"log2({engine.codebook_size}) = {engine.bitrate_kbps(m):.4g} kbps), not the paper's {label} kbps "
            f"(M = {paper.num_steps}, K = {paper.codebook_size}, {paper.bitrate_kbps:.4g} kbps); {hint}, or set "
            f"option allow_nonpaper_geometry: true (rows then carry the measured rate under this label)"
        )

    def identity(self) -> dict[str, Any]:
        """Name, version, weights label, the full sha256 of every stage-1/3 checkpoint and QINCo2 file (memoised per
        file) and the search / sampler options (they change the codes and the decoded audio)."""
        from codecbench.bench.core.weights import file_digest

        digests = {label: {kind: file_digest(path) for kind, path in sorted(files.items())}
                   for label, files in sorted(self.models.items())}
        return {**super().identity(), "weights_sha256": digests, "search": dict(self.search)}

    def weights_status(self) -> str:
        """``random-init`` only when every stage-1/3 checkpoint has 0 training steps; else ``trained here`` with
        the steps, the QINCo2 selection and the sha256 prefixes of both files, per label."""
        if not self.models:
            return "missing: option 'models' gives no S-PRESSO checkpoint (train one: codecbench spresso-quant)"
        from codecbench.bench.core.weights import file_digest
        from codecbench.codecs.spresso.model import load_checkpoint
        from codecbench.codecs.spresso.qinco2 import QINCo2

        parts, trained = [], False
        for label, files in sorted(self.models.items()):
            payload = load_checkpoint(files["checkpoint"], "stage1")
            stage = int(payload.get("extra", {}).get("stage", 1))
            trained = trained or int(payload["step"]) > 0
            quantizer, meta = QINCo2.load_with_metadata(files["qinco2"])
            geometry = f"M={quantizer.config.num_steps} K={quantizer.config.codebook_size}"
            if self.allow_nonpaper_geometry:
                paper = paper_point(label)
                if (quantizer.config.num_steps, quantizer.config.codebook_size) != (paper.num_steps, paper.codebook_size):
                    geometry += f", non-paper geometry (paper M={paper.num_steps} K={paper.codebook_size})"
            kept = f", kept {meta['selected']}" if "selected" in meta else ""
            parts.append(f"{label}: stage-{stage} {Path(files['checkpoint']).name} {payload['step']} steps "
                         f"sha256 {file_digest(files['checkpoint'])[:12]} + qinco2 {geometry}{kept} "
                         f"sha256 {file_digest(files['qinco2'])[:12]}")
        kind = "trained here (no published weights)" if trained else "random-init (0 training steps, QINCo2 fitted)"
        return f"{kind}; " + "; ".join(parts)

    # -- catalogue --------------------------------------------------------------------------------------------
    def nominal_bitrate_kbps(self, point: OperatingPoint) -> float:
        """Per-frame rate of the loaded model at ``point``; without one (catalogue), the paper geometry's."""
        if point["paper_kbps"] not in getattr(self, "models", {}):
            paper = paper_point(point["paper_kbps"])
            m = point["num_steps"] or paper.num_steps
            return bitrate_kbps(paper.frame_rate_hz, m, paper.codebook_size) if m <= paper.num_steps else math.nan
        self.check_geometry(point)
        engine = self.engine(point["paper_kbps"])
        return engine.bitrate_kbps(engine._steps(point["num_steps"]))

    def frame_rate_hz(self, point: OperatingPoint) -> float:
        if point["paper_kbps"] not in getattr(self, "models", {}):
            return paper_point(point["paper_kbps"]).frame_rate_hz
        return self.engine(point["paper_kbps"]).frame_rate_hz

    def num_parameters(self, point: OperatingPoint | None = None) -> int:
        """Parameters of the model + QINCo2 that run ``point`` (default: the point last encoded or decoded); 0
        before any model is loaded. Never a sum over the engines loaded so far."""
        label = point["paper_kbps"] if point is not None else self._last_label
        if label is None:
            return 0
        engine = self.engine(label)
        return sum(p.numel() for p in engine.model.parameters()) + engine.quantizer.num_parameters()

    # -- the work ---------------------------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor, point: OperatingPoint) -> list[Bitstream]:
        self.check_geometry(point)
        engine = self.engine(point["paper_kbps"])
        self._last_label = point["paper_kbps"]
        codes = engine.encode_codes(audio[:, 0].to(self.device), point["num_steps"])
        rate = self.info.sample_rate_hz
        return [codes_to_bitstream(c, engine.codebook_size, engine.frame_rate_hz, rate, audio.shape[-1]) for c in codes]

    def decode(self, bitstreams: Sequence[Bitstream], point: OperatingPoint) -> torch.Tensor:
        engine = self.engine(point["paper_kbps"])
        self._last_label = point["paper_kbps"]
        lengths = {b.num_samples for b in bitstreams}
        if len(lengths) != 1:  # one batch = one length (the runner batches equal-length segments)
            return torch.cat([self.decode([b], point) for b in bitstreams])
        audio = engine.decode_codes([bitstream_codes(b) for b in bitstreams], lengths.pop(), point["seed"])
        return audio.unsqueeze(1).cpu()
