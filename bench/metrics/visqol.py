"""ViSQOL v3 (Chinen et al. 2020) through ``visqol-python`` 3.8 (pure Python port of Google's C++ ViSQOL v3.3.3).

Two item metrics, MOS-LQO 1-5, higher is better:

- ``visqol_audio``: audio mode at 48 kHz (full band), the SVR similarity-to-quality model bundled in the wheel
  (``model/libsvm_nu_svr_model.txt``). Checked against the C++ reference's conformance values (v333, every audio
  case of ``conformance_test.cc`` whose files are in ``shared/data/metric-refs/visqol-conformance``) within 0.01.
- ``visqol_speech``: speech mode at 16 kHz with the exponential similarity-to-MOS fit (the C++ non-lattice mapping;
  ``lattice=True`` selects the deep-lattice model, which needs ``visqol-python[lattice]``).

What codecbench does around the library call (pure function :func:`visqol_mos`): channel mean (as ViSQOL's own
loader), soxr VHQ resampling to the working rate, float64; ViSQOL then aligns globally and per patch itself (no
trimming to a common length here). With numba (``visqol-python[accel]``) one 10 s pair takes 7-10 s on a CPU
core; without it 15-20x longer. numba's first call compiles (~35-130 s) and caches the machine code on disk
(``cache=True`` in the library: ``__pycache__`` beside the package, or ``NUMBA_CACHE_DIR``), so later processes
start warm.

Silence-aware option ``trim_silence_db`` (default None: off, the reference definition): before scoring, drop the
20 ms frames whose reference RMS is more than that many dB below the reference's loudest frame, from *both*
signals at the same positions (leading, trailing and, with ``trim_inner=True``, inner silence; the kept spans are
concatenated). Caveat: audio-mode ViSQOL pools similarity over all patches, so on sparse sound effects (8-10 % of
frames within 40 dB of the peak) silent patches dominate and the score barely reacts (a 2 kHz low-pass still scores
4.6-4.7); trimming makes it score the events, but it also ignores anything a codec adds inside the reference's
silences (noise, pre-echo), and the splices are scored as part of the signal. Values with trimming are a different
definition (the option is part of the cache key) and are not comparable with published ViSQOL numbers.

Parallel: ``workers`` > 1 scores the items of ``score_batch`` calls in a pool of that many spawned processes,
started on the first call and reused by every later call of the same instance (``close()`` or interpreter exit
ends it). Each worker keeps to ``cores // workers`` threads (numba, torch, BLAS: ``core.threads``), set inside the
worker as it starts, and loads numba's cached kernels before its first item. Values do not depend on the worker
count beyond ViSQOL's own last-digit jitter: the library gives the same pair values ~1e-14 MOS apart from one call
to the next, in one process and at one thread count (floating-point summation order depends on where numpy's
arrays lie in memory); the tests allow 1e-12.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from codecbench.bench.core.errors import MetricFailure, MissingDependencyError
from codecbench.bench.metrics.base import ItemMetric, MetricInfo, MetricValue

VISQOL_CITATION = ("Chinen et al., 'ViSQOL v3: An Open Source Production Ready Objective Speech and Audio Metric', "
                   "QoMEX 2020; visqol-python 3.8.0 (port of google/visqol v3.3.3, conformance 333)")
INSTALL = "pip install 'visqol-python[accel]==3.8.0'"
AUDIO_RATE_HZ = 48_000
SPEECH_RATE_HZ = 16_000
TRIM_FRAME_S = 0.02
MIN_DURATION_S = 1.0  # audio mode needs 45 spectrogram frames (~0.98 s at 48 kHz) for one patch


# ---- pure functions -------------------------------------------------------------------------------------------------

def active_mask(reference: np.ndarray, sample_rate_hz: int, threshold_db: float, inner: bool = True,
                frame_s: float = TRIM_FRAME_S) -> np.ndarray:
    """Boolean mask [T] of the samples kept by silence trimming: 20 ms frames whose RMS is within ``threshold_db``
    of the loudest frame's (``inner=False``: keep everything from the first to the last active frame)."""
    frame = max(1, int(round(frame_s * sample_rate_hz)))
    n_frames = -(-reference.shape[0] // frame)
    padded = np.zeros(n_frames * frame)
    padded[: reference.shape[0]] = reference
    rms = np.sqrt(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1))
    peak = rms.max()
    if peak == 0:
        return np.zeros(reference.shape[0], dtype=bool)
    active = 20.0 * np.log10(np.maximum(rms, 1e-300) / peak) > -abs(threshold_db)
    if not inner:
        idx = np.flatnonzero(active)
        active = np.zeros_like(active)
        active[idx[0] : idx[-1] + 1] = True
    return np.repeat(active, frame)[: reference.shape[0]]


@functools.lru_cache(maxsize=8)
def _api(mode: str, lattice: bool, search_window: int):
    """A created ``VisqolApi`` (loads the bundled model once per process and configuration)."""
    from visqol import VisqolApi

    api = VisqolApi()
    if mode == "speech":
        api.create(mode="speech", use_lattice_model=lattice, search_window=search_window)
    else:
        api.create(mode="audio", search_window=search_window)
    return api


def visqol_mos(reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int, *, mode: str = "audio",
               lattice: bool = False, search_window: int = 60) -> float:
    """ViSQOL MOS-LQO of mono ``reference`` [T_r] and ``degraded`` [T_d] (float64) at the mode's rate."""
    try:
        result = _api(mode, lattice, search_window).measure_from_arrays(
            np.ascontiguousarray(reference, dtype=np.float64), np.ascontiguousarray(degraded, dtype=np.float64),
            sample_rate_hz,
        )
    except (ValueError, RuntimeError, IndexError, ZeroDivisionError, FloatingPointError) as exc:
        raise MetricFailure(f"visqol_{mode}: ViSQOL could not score the pair: {exc}") from exc
    return float(result.moslqo)


def prepare_pair(reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int, working_rate_hz: int,
                 name: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """[C, T] float32 at ``sample_rate_hz`` -> mono float64 [T'] at ``working_rate_hz`` (channel mean, soxr VHQ)."""
    import torch
    from codecbench.bench.core import audio

    out = []
    for what, x in (("reference", reference), ("degraded", degraded)):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[-1] == 0:
            raise MetricFailure(f"{name}: {what} must be non-empty [C, T] audio, got shape {np.shape(x)}")
        if not np.all(np.isfinite(x)):
            raise MetricFailure(f"{name}: {what} contains NaN or Inf samples")
        mono = torch.from_numpy(np.ascontiguousarray(x.mean(axis=0)))
        out.append(audio.resample(mono, sample_rate_hz, working_rate_hz).numpy().astype(np.float64))
    extras: dict[str, Any] = {"working_rate_hz": working_rate_hz, "downmix": "mean"}
    if working_rate_hz != sample_rate_hz:
        extras["resampled_from_hz"] = sample_rate_hz
        extras["resampler"] = audio.RESAMPLER
    return out[0], out[1], extras


def _score_one(args: tuple) -> float | str:
    """Process-pool task: MOS or the failure's message (exceptions do not cross the pool boundary as such)."""
    reference, degraded, rate, kwargs = args
    try:
        return visqol_mos(reference, degraded, rate, **kwargs)
    except MetricFailure as failure:
        return f"failure: {failure}"


def _worker_init(threads: int, kwargs: dict[str, Any]) -> None:
    """Pool initializer, in the worker: thread limits first, then numba's cached kernels and the model loaded."""
    from codecbench.bench.core.threads import limit_worker_threads

    limit_worker_threads(threads)
    from visqol import numba_accel

    numba_accel.warmup()  # loads the kernels from numba's on-disk cache (compiles them if there is none yet)
    _api(kwargs["mode"], bool(kwargs.get("lattice", False)), kwargs["search_window"])


def _thread_counts(_slot: int = 0) -> dict[str, int]:
    """Thread counts of this process: numba, BLAS/OpenMP (largest pool), torch (if imported); and its pid."""
    import os

    counts = {"pid": os.getpid()}
    try:
        import numba
    except ImportError:  # visqol-python without [accel]: pure Python, no numba threads
        pass
    else:
        counts["numba"] = numba.get_num_threads()
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        counts["blas"] = max((pool["num_threads"] for pool in threadpool_info()), default=0)
    if "torch" in sys.modules:
        counts["torch"] = sys.modules["torch"].get_num_threads()
    return counts


# ---- metric classes -------------------------------------------------------------------------------------------------

class _Visqol(ItemMetric):
    mode: str
    working_rate_hz: int

    def __init__(self, *, trim_silence_db: float | None = None, trim_inner: bool = True, search_window: int = 60,
                 workers: int = 1, cache_dir: str | None = None, device: str = "cpu", **mode_options: Any):
        options: dict[str, Any] = {"search_window": int(search_window), **mode_options}
        if trim_silence_db is not None:
            if not float(trim_silence_db) > 0:
                raise ValueError(f"{self.info.name}: trim_silence_db must be a positive number of dB, got {trim_silence_db}")
            options.update(trim_silence_db=float(trim_silence_db), trim_inner=bool(trim_inner))
        if int(search_window) <= 0:
            raise ValueError(f"{self.info.name}: search_window must be positive, got {search_window}")
        if int(workers) < 1:
            raise ValueError(f"{self.info.name}: workers must be >= 1, got {workers}")
        super().__init__(cache_dir=cache_dir, device=device, **options)  # workers does not change values
        self.trim_silence_db = options.get("trim_silence_db")
        self.trim_inner = bool(trim_inner)
        self.workers = int(workers)
        self.kwargs = {"mode": self.mode, "search_window": int(search_window), **mode_options}
        self._pool: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pool": None}  # a copy in another process starts its own pool

    def _executor(self):
        """The worker pool, started on first use and kept for later calls."""
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from codecbench.bench.core.threads import worker_threads

            context = multiprocessing.get_context("spawn")  # no fork of a process holding torch/OpenMP threads
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_worker_init,
                                             initargs=(worker_threads(self.workers), self.kwargs))
            weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        return self._pool

    def _run_in_pool(self, tasks: dict[int, tuple]) -> dict[int, float | str | MetricFailure]:
        """``_score_one`` of every task in the pool. A pool whose worker died (killed, out of memory) is replaced
        and the items it did not score are tried once more in the new one; what still fails is a failure."""
        from concurrent.futures.process import BrokenProcessPool

        results: dict[int, float | str | MetricFailure] = {}
        pending, reason = dict(tasks), ""
        for _attempt in range(2):
            try:
                futures = {index: self._executor().submit(_score_one, task) for index, task in pending.items()}
            except BrokenProcessPool as error:  # broken between calls: start a fresh pool
                self._discard_pool()
                futures, reason = {}, str(error)
            for index, future in futures.items():
                try:
                    results[index] = future.result()
                    del pending[index]
                except BrokenProcessPool as error:
                    reason = str(error)
            if not pending:
                break
            self._discard_pool()
        for index in pending:
            results[index] = MetricFailure(f"{self.info.name}: a ViSQOL worker process ended abnormally, twice "
                                           f"({reason})")
        return results

    def _discard_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        """End the worker pool (a later ``score_batch`` starts a new one)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def worker_thread_counts(self) -> list[dict[str, int]]:
        """Thread counts (numba, BLAS, torch) where items are scored: one probe per worker slot (in the workers when
        ``workers`` > 1, else in this process)."""
        return list(self._executor().map(_thread_counts, range(self.workers))) if self.workers > 1 else [_thread_counts()]

    def availability(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("visqol") is None:
            return str(MissingDependencyError(f"ViSQOL ({self.info.name})", "visqol-python", INSTALL))
        return None

    def _prepare(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int):
        ref, deg, extras = prepare_pair(reference, degraded, sample_rate_hz, self.working_rate_hz, self.info.name)
        if self.trim_silence_db is not None:
            mask = active_mask(ref, self.working_rate_hz, self.trim_silence_db, self.trim_inner)
            length = min(ref.shape[0], deg.shape[0])
            ref, deg = ref[:length][mask[:length]], deg[:length][mask[:length]]
            extras.update(trim_silence_db=self.trim_silence_db, trim_inner=self.trim_inner,
                          kept_duration_s=ref.shape[0] / self.working_rate_hz)
        for what, x in (("reference", ref), ("degraded", deg)):
            if x.shape[0] < MIN_DURATION_S * self.working_rate_hz:
                raise MetricFailure(f"{self.info.name}: {what} too short for ViSQOL ({x.shape[0] / self.working_rate_hz:.3f} s"
                                    f" at {self.working_rate_hz} Hz{' after silence trimming' if self.trim_silence_db else ''};"
                                    f" needs {MIN_DURATION_S} s)")
        if not np.any(ref):
            raise MetricFailure(f"{self.info.name}: the reference is digital silence")
        return ref, deg, extras

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int) -> MetricValue:
        """``reference``, ``degraded``: float32 [C, T] at ``sample_rate_hz``."""
        if self.availability() is not None:
            raise MissingDependencyError(f"ViSQOL ({self.info.name})", "visqol-python", INSTALL)
        ref, deg, extras = self._prepare(reference, degraded, sample_rate_hz)
        return MetricValue(visqol_mos(ref, deg, self.working_rate_hz, **self.kwargs), extras)

    def score_batch(
        self, references: Sequence[np.ndarray], degraded: Sequence[np.ndarray], sample_rate_hz: int
    ) -> list[MetricValue | MetricFailure]:
        if self.workers == 1 or len(references) < 2:
            return super().score_batch(references, degraded, sample_rate_hz)
        out: list[MetricValue | MetricFailure | None] = [None] * len(references)
        tasks, extras = {}, {}
        for index, (ref, deg) in enumerate(zip(references, degraded)):
            try:
                r, d, extras[index] = self._prepare(ref, deg, sample_rate_hz)
                tasks[index] = (r, d, self.working_rate_hz, self.kwargs)
            except MetricFailure as failure:
                out[index] = failure
        for index, result in self._run_in_pool(tasks).items():
            out[index] = (result if isinstance(result, MetricFailure)
                          else MetricFailure(result[len("failure: "):]) if isinstance(result, str)
                          else MetricValue(result, extras[index]))
        return out  # type: ignore[return-value]


def _info(name: str, rate: int, description: str) -> MetricInfo:
    return MetricInfo(
        name=name, unit="MOS", higher_is_better=True, needs_reference=True, level="item", sample_rate_hz=rate,
        version="1", citation=f"{VISQOL_CITATION}; models bundled in the visqol-python wheel (Apache-2.0)",
        description=description, dependencies=("visqol-python", "numba"),
    )


class VisqolAudio(_Visqol):
    """ViSQOL v3 audio mode (48 kHz, SVR mapping): MOS-LQO 1-5, higher is better."""

    mode = "audio"
    working_rate_hz = AUDIO_RATE_HZ
    info = _info("visqol_audio", AUDIO_RATE_HZ,
                 "ViSQOL v3 audio mode MOS-LQO (gammatone NSIM patches, SVR model libsvm_nu_svr_model.txt); "
                 "barely reacts on sparse sound effects unless trim_silence_db is set")


class VisqolSpeech(_Visqol):
    """ViSQOL v3 speech mode (16 kHz, exponential mapping; ``lattice=True``: the deep-lattice model)."""

    mode = "speech"
    working_rate_hz = SPEECH_RATE_HZ
    info = _info("visqol_speech", SPEECH_RATE_HZ,
                 "ViSQOL v3 speech mode MOS-LQO (16 kHz, VAD patches, exponential fit; lattice=True: lattice model)")

    def __init__(self, *, lattice: bool = False, **kwargs: Any):
        super().__init__(lattice=bool(lattice), **kwargs)
