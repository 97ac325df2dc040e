"""Speed of every metric: seconds of audio scored per second of wall time, cold and cached, and peak memory.

Run: ``python bench/benchmarks/metrics_speed.py [--items 8] [--seconds 5] [--metrics ...] [--random-init-models]``

Each metric runs in its own fresh process (so peak memory is its own): seeded noise-plus-tone items at 48 kHz
mono, the degraded side with added noise and a 2 ms delay. "cold" = a new metric instance with an empty cache
directory; "cached" = a second new instance on the same cache directory (embedding metrics then load their
embeddings instead of computing them; item metrics without an embedding cache compute again, so cached ~ cold;
the runner's metric-value cache is not exercised here). Audio seconds count both sides of each pair once
(the degraded items). Peak memory = the process's peak resident set size and its growth over the baseline
after imports (``ru_maxrss``). Runs offline. Model metrics need their weights in the weights directory, or
``--random-init-models`` (same architecture and cost, meaningless values).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

SAMPLE_RATE_HZ = 48_000


def _items(count: int, seconds: float, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    refs, degs = [], []
    delay = int(0.002 * SAMPLE_RATE_HZ)
    for i in range(count):
        envelope = (np.sin(2 * np.pi * (1.5 + 0.3 * i) * t) > -0.3).astype(np.float64)
        ref = envelope * (0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.05 * rng.standard_normal(t.size))
        deg = np.concatenate([np.zeros(delay), ref[:-delay]]) + 0.02 * rng.standard_normal(t.size)
        refs.append(ref[None].astype(np.float32))
        degs.append(deg[None].astype(np.float32))
    return refs, degs


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def _run_once(name: str, refs, degs, cache_dir: str, random_init: bool) -> tuple[float, int]:
    from codecbench.bench.metrics import registry

    cls = registry.get(name)
    options = {"cache_dir": cache_dir}
    if cls.info.needs_weights and random_init:
        options["random_init"] = True
    metric = cls(**options)
    start = time.perf_counter()
    if cls.info.level == "set":
        metric.compute_set(refs, degs, SAMPLE_RATE_HZ)
        failures = 0
    else:
        results = metric.score_batch(refs, degs, SAMPLE_RATE_HZ)
        failures = sum(1 for r in results if isinstance(r, Exception))
    return time.perf_counter() - start, failures


def measure_one(name: str, items: int, seconds: float, random_init: bool) -> dict[str, object]:
    """Runs in the child process (offline: the Hugging Face variables are set before laion_clap is imported)."""
    from codecbench.bench.core import weights
    from codecbench.bench.metrics import registry

    weights.set_offline()

    cls = registry.get(name)
    options = {"random_init": True} if (cls.info.needs_weights and random_init) else {}
    reason = cls(**options).availability()
    if reason:
        return {"metric": name, "unavailable": reason}
    refs, degs = _items(items, seconds)
    baseline_mb = _rss_mb()
    with tempfile.TemporaryDirectory() as cache_dir:
        cold_s, failures = _run_once(name, refs, degs, cache_dir, random_init)
        cached_s, _ = _run_once(name, refs, degs, cache_dir, random_init)
    audio_s = items * seconds
    return {
        "metric": name,
        "level": cls.info.level,
        "audio_s": audio_s,
        "cold_s": cold_s,
        "cached_s": cached_s,
        "cold_audio_s_per_s": audio_s / cold_s,
        "cached_audio_s_per_s": audio_s / cached_s,
        "peak_rss_mb": _rss_mb(),
        "peak_growth_mb": _rss_mb() - baseline_mb,
        "failures": failures,
        "random_init": bool(cls.info.needs_weights and random_init),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--metrics", nargs="*", help="metric names (default: all registered)")
    parser.add_argument("--random-init-models", action="store_true", help="time model metrics at random init")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.items, args.seconds, args.random_init_models)))
        return 0
    from codecbench.bench.metrics import registry

    names = args.metrics or registry.names()
    print(f"{args.items} items x {args.seconds:g} s at {SAMPLE_RATE_HZ} Hz; each metric in a fresh process")
    header = f"{'metric':16} {'level':5} {'cold audio-s/s':>15} {'cached audio-s/s':>17} {'cached/cold':>11} " \
             f"{'peak RSS MB':>11} {'growth MB':>9}"
    print(header)
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--items", str(args.items), "--seconds", str(args.seconds)]
        if args.random_init_models:
            cmd.append("--random-init-models")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"{name:16} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}")
            continue
        row = json.loads(lines[-1])
        if "unavailable" in row:
            print(f"{name:16} unavailable: {row['unavailable']}")
            continue
        note = " (random-init)" if row["random_init"] else ""
        print(
            f"{name:16} {row['level']:5} {row['cold_audio_s_per_s']:15.1f} {row['cached_audio_s_per_s']:17.1f} "
            f"{row['cached_audio_s_per_s'] / row['cold_audio_s_per_s']:11.2f} {row['peak_rss_mb']:11.0f} "
            f"{row['peak_growth_mb']:9.0f}{note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
