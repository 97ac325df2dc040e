"""ViSQOL over many items with worker processes: ``visqol_audio`` with ``workers: 1`` and ``workers: 2``.

Run: ``python -m codecbench.bench.benchmarks.visqol_workers [--data DIR] [--items 8]
[--seconds 5] [--repeats 2]`` (under a minute on 2 idle cores; without ``--data`` the pairs are generated).

One run, the same pairs for every figure: ``--items`` references (the first clips of ``--data``, mono, resampled
to 48 kHz, cut to ``--seconds``; or seeded tones in noise) and degraded copies (8 kHz FFT low-pass, white noise
45 dB below the reference, 1 ms delay). numba's kernels are compiled or loaded in this process by an untimed
warm-up pair first. Times are the best of ``--repeats`` calls of ``score_batch`` over all pairs:

- ``workers: 1``: in this process, as a user runs it (numba's parallel kernels on every core);
- ``1 process, 1 thread``: the same with numba and BLAS held to one thread (what one pool worker does per item);
- ``workers: 2``, first call: the pool started (two spawned processes importing ViSQOL and loading numba's cached
  kernels), then the pairs;
- ``workers: 2``, pool warm: later calls on the same metric instance reuse the started pool (as the runner's
  units do: one metric instance per process).

Ratios: ``workers: 2`` (warm) over ``workers: 1`` (issue 13 target: >= 1.7 on 2 idle cores) and over one thread
(the pool's own scaling); the worker processes' thread counts (numba, BLAS) and the largest |MOS difference|
between the two settings are printed as checks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 48_000
LOWPASS_HZ = 8_000
NOISE_DB = -45.0
DELAY_S = 0.001


def degrade(reference: np.ndarray, seed: int) -> np.ndarray:
    """[T] float64 -> [T]: FFT low-pass at LOWPASS_HZ, white noise NOISE_DB below the reference RMS, DELAY_S."""
    spectrum = np.fft.rfft(reference)
    spectrum[int(LOWPASS_HZ * reference.size / SAMPLE_RATE_HZ):] = 0
    out = np.fft.irfft(spectrum, reference.size)
    rms = np.sqrt(np.mean(reference ** 2))
    out = out + rms * 10 ** (NOISE_DB / 20) * np.random.default_rng(seed).standard_normal(out.size)
    delay = int(DELAY_S * SAMPLE_RATE_HZ)
    return np.concatenate([np.zeros(delay), out[:-delay]])


def load_pairs(folder: Path | None, count: int, seconds: float) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """``count`` (reference, degraded) pairs, float32 [1, T] at 48 kHz, and where the references came from."""
    import soundfile as sf
    import torch
    from codecbench.bench.core import audio

    length = int(seconds * SAMPLE_RATE_HZ)
    references: list[np.ndarray] = []
    if folder is None:
        from codecbench.bench.benchmarks.metrics_speed import _items

        refs, _ = _items(count, seconds)
        references = [r[0].astype(np.float64) for r in refs]
        source = "generated (metrics_speed._items)"
    else:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac", ".ogg"))
        for path in paths:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
            mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
            x = audio.resample(mono, rate, SAMPLE_RATE_HZ).numpy().astype(np.float64)[:length]
            if x.size == length and np.sqrt(np.mean(x ** 2)) > 1e-4:  # full length, not (near) silent
                references.append(x)
            if len(references) == count:
                break
        if len(references) < count:
            raise SystemExit(f"--data {folder}: only {len(references)} clips of at least {seconds:g} s with sound "
                             f"(need --items {count})")
        source = str(folder)
    degraded = [degrade(x, seed) for seed, x in enumerate(references)]
    return [x[None].astype(np.float32) for x in references], [x[None].astype(np.float32) for x in degraded], source


def _scores(metric, refs, degs) -> list[float]:
    results = metric.score_batch(refs, degs, SAMPLE_RATE_HZ)
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise SystemExit(f"visqol_audio failed: {failed[0]}")
    return [r.value for r in results]


def _best(fn, repeats: int) -> tuple[float, list[float]]:
    times, values = [], []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        values = fn()
        times.append(time.perf_counter() - start)
    return min(times), values


def measure(refs, degs, repeats: int = 2, workers: int = 2) -> dict[str, object]:
    import numba
    from codecbench.bench.metrics import registry
    from threadpoolctl import threadpool_limits

    one = registry.create("visqol_audio")
    _scores(one, refs[:1], degs[:1])  # numba: compile (first run on this machine) or load the cached kernels
    default_s, values_one = _best(lambda: _scores(one, refs, degs), repeats)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            one_thread_s, _ = _best(lambda: _scores(one, refs, degs), repeats)
    finally:
        numba.set_num_threads(threads)
    pool = registry.create("visqol_audio", workers=workers)
    try:
        first_s, _ = _best(lambda: _scores(pool, refs, degs), 1)
        warm_s, values_pool = _best(lambda: _scores(pool, refs, degs), repeats)
        probes = pool.worker_thread_counts()
    finally:
        pool.close()
    return {
        "audio_s": sum(r.shape[-1] for r in refs) / SAMPLE_RATE_HZ, "numba_threads": threads,
        "default_s": default_s, "one_thread_s": one_thread_s, "first_s": first_s, "warm_s": warm_s,
        "speedup": default_s / warm_s, "pool_scaling": one_thread_s / warm_s, "first_speedup": default_s / first_s,
        "max_abs_difference": float(np.max(np.abs(np.asarray(values_one) - np.asarray(values_pool)))),
        "worker_threads": probes, "workers": workers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder of clips (e.g. ESC-50 sound effects)")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    import os

    from codecbench.bench.metrics import registry

    reason = registry.create("visqol_audio").availability()
    if reason:
        print(f"visqol_audio unavailable: {reason}")
        return 1
    if args.data is not None and not args.data.is_dir():
        print(f"--data {args.data}: not a folder")
        return 1
    refs, degs, source = load_pairs(args.data, args.items, args.seconds)
    print(f"{args.items} pairs x {args.seconds:g} s at {SAMPLE_RATE_HZ} Hz from {source}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    row = measure(refs, degs, args.repeats, args.workers)
    audio_s = row["audio_s"]
    w = row["workers"]
    print(f"{'setting':34} {'seconds':>8} {'audio-s/s':>9}")
    for label, key in ((f"workers: 1 (numba {row['numba_threads']} threads)", "default_s"),
                       ("1 process, 1 thread", "one_thread_s"),
                       (f"workers: {w}, first call (pool start)", "first_s"),
                       (f"workers: {w}, pool warm", "warm_s")):
        print(f"{label:34} {row[key]:8.2f} {audio_s / row[key]:9.2f}")
    print(f"workers: {w} (warm) / workers: 1 = {row['speedup']:.2f}x (target >= 1.7); / 1 thread = "
          f"{row['pool_scaling']:.2f}x; first call / workers: 1 = {row['first_speedup']:.2f}x")
    print(f"worker threads: {row['worker_threads']}; largest |MOS difference| workers 1 vs {w}: "
          f"{row['max_abs_difference']:.1e}; load average now {os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
