"""CDPAM speed: codecbench's ``cdpam_distance`` against the ``cdpam`` package called directly, on the same pairs.

Run: ``python -m codecbench.bench.benchmarks.cdpam_speed [--items 2] [--seconds 2] [--repeats 2]``
(~1.5 min on 2 idle CPU cores with the defaults).

All figures come from one run, on the same seeded 48 kHz pairs (``metrics_speed._items``):

- ``cold``: each side in a fresh process of its own, best of ``--repeats`` (imports untimed; in a shared process
  whichever side went first paid torch's first-forward set-up, 1.5-2 s here): a new codecbench metric (empty
  cache: checkpoint digest, unpickling, network built) scoring every pair, against ``cdpam.CDPAM(dev='cpu')``
  built and its ``forward`` run on every pair;
- ``warm``: in this process, both models built and run once (untimed), then every pair scored again (best of
  ``--repeats``, the two sides alternating, so load from other processes hits both alike);
- ``cached``: what a rerun costs through codecbench: the runner's metric-value cache lookups;
- the package gets its own input, prepared untimed beforehand as it expects it (mono, 22.05 kHz, 16-bit scale, as
  its ``load_audio``); codecbench's call includes its own preprocessing (downmix, soxr to 22.05 kHz, scaling).

Ratio = codecbench seconds / package seconds (issue 13 target: <= 1.1); the largest |difference| of the values is
printed as a check that both computed the same thing (tests: within 1e-5).
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

SAMPLE_RATE_HZ = 48_000
PACKAGE_RATE_HZ = 22_050


def _package_model():
    import cdpam
    import torch

    real_load = torch.load
    torch.load = functools.partial(real_load, weights_only=False)  # the package's own file (tests check its digest)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cdpam.CDPAM(dev="cpu")
    finally:
        torch.load = real_load


def _package_inputs(refs, degs) -> list[tuple[np.ndarray, np.ndarray]]:
    """[1, T] float32 at 22.05 kHz, 16-bit scale: what the package's ``load_audio`` would hand to ``forward``."""
    import torch
    from codecbench.bench.core import audio

    def convert(x: np.ndarray) -> np.ndarray:
        mono = torch.from_numpy(np.ascontiguousarray(x.mean(0)))
        return np.round(audio.resample(mono, SAMPLE_RATE_HZ, PACKAGE_RATE_HZ).numpy().astype(np.float64) * 32768)[
            None].astype(np.float32)

    return [(convert(r), convert(d)) for r, d in zip(refs, degs)]


def _package_scores(package, inputs) -> list[float]:
    import torch

    with torch.no_grad():
        return [float(package.forward(r, d)[0]) for r, d in inputs]


def _codecbench_scores(metric, refs, degs) -> list[float]:
    results = metric.score_batch(refs, degs, SAMPLE_RATE_HZ)
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise RuntimeError(f"cdpam_distance: {failed[0]}")
    return [r.value for r in results]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cold_side(side: str, items: int, seconds: float) -> dict[str, object]:
    """In a fresh process (imports untimed): build the model and score every pair once; seconds and values."""
    import cdpam  # noqa: F401 - imported untimed on both sides
    from codecbench.bench.benchmarks.metrics_speed import _items
    from codecbench.bench.metrics import registry

    refs, degs = _items(items, seconds)
    if side == "package":
        inputs = _package_inputs(refs, degs)
        elapsed_s, values = _timed(lambda: _package_scores(_package_model(), inputs))
    else:
        with tempfile.TemporaryDirectory() as cache_dir:
            elapsed_s, values = _timed(lambda: _codecbench_scores(registry.create("cdpam_distance", cache_dir=cache_dir),
                                                                  refs, degs))
    return {"side": side, "seconds": elapsed_s, "values": values}


def _cold_in_new_process(side: str, items: int, seconds: float) -> dict[str, object]:
    command = [sys.executable, "-m", "codecbench.bench.benchmarks.cdpam_speed", "--cold-side", side,
               "--items", str(items), "--seconds", str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cdpam_speed --cold-side {side} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


def measure(items: int, seconds: float, repeats: int = 2) -> dict[str, float]:
    from codecbench.bench.benchmarks.metrics_speed import _items
    from codecbench.bench.benchmarks.perceptual_speed import _store_and_lookup
    from codecbench.bench.metrics import registry

    refs, degs = _items(items, seconds)
    audio_s = sum(r.shape[-1] for r in refs) / SAMPLE_RATE_HZ
    cold: dict[str, dict[str, object]] = {}
    for _ in range(max(1, repeats)):  # best of repeats, the sides alternating
        for side in ("package", "codecbench"):
            run = _cold_in_new_process(side, items, seconds)
            if side not in cold or float(run["seconds"]) < float(cold[side]["seconds"]):
                cold[side] = run
    inputs = _package_inputs(refs, degs)
    package = _package_model()
    row: dict[str, float] = {"audio_s": audio_s}
    with tempfile.TemporaryDirectory() as cache_dir:
        metric = registry.create("cdpam_distance", cache_dir=cache_dir)
        ours = _codecbench_scores(metric, refs, degs)  # warm-up of both (first forward passes), untimed
        theirs = _package_scores(package, inputs)
        ours_warm, package_warm = [], []
        for _ in range(max(1, repeats)):
            ours_warm.append(_timed(lambda: _codecbench_scores(metric, refs, degs))[0])
            package_warm.append(_timed(lambda: _package_scores(package, inputs))[0])
        values = metric.score_batch(refs, degs, SAMPLE_RATE_HZ)
        row["cached_audio_s_per_s"] = audio_s / _store_and_lookup(metric, refs, degs, values, cache_dir)
    ours_cold_s, package_cold_s = float(cold["codecbench"]["seconds"]), float(cold["package"]["seconds"])
    row.update(
        cold_audio_s_per_s=audio_s / ours_cold_s, package_cold_audio_s_per_s=audio_s / package_cold_s,
        cold_ratio=ours_cold_s / package_cold_s,
        warm_audio_s_per_s=audio_s / min(ours_warm), package_warm_audio_s_per_s=audio_s / min(package_warm),
        warm_ratio=min(ours_warm) / min(package_warm),
        max_abs_difference=float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs)))),
        max_abs_difference_cold=float(np.max(np.abs(np.asarray(cold["codecbench"]["values"])
                                                    - np.asarray(cold["package"]["values"])))),
        batch_size=metric.batch_size,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cold-side", choices=("package", "codecbench"), help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    if args.cold_side:
        print(json.dumps(cold_side(args.cold_side, args.items, args.seconds)))
        return 0
    import torch
    from codecbench.bench.core import weights
    from codecbench.bench.metrics import registry

    weights.set_offline()
    reason = registry.create("cdpam_distance").availability()
    if reason:
        print(f"cdpam_distance unavailable: {reason}")
        return 1
    print(f"{args.items} pairs x {args.seconds:g} s at {SAMPLE_RATE_HZ} Hz, one process, CPU, torch threads "
          f"{torch.get_num_threads()}")
    row = measure(args.items, args.seconds, args.repeats)
    print(f"{'':10} {'codecbench audio-s/s':>20} {'package audio-s/s':>17} {'codecbench/package':>18}")
    print(f"{'cold':10} {row['cold_audio_s_per_s']:20.3f} {row['package_cold_audio_s_per_s']:17.3f} "
          f"{row['cold_ratio']:18.3f}")
    print(f"{'warm':10} {row['warm_audio_s_per_s']:20.3f} {row['package_warm_audio_s_per_s']:17.3f} "
          f"{row['warm_ratio']:18.3f}")
    print(f"{'cached':10} {row['cached_audio_s_per_s']:20.1f} {'-':>17} {'-':>18}")
    print(f"largest |codecbench - package| = {row['max_abs_difference']:.2e} (cold: "
          f"{row['max_abs_difference_cold']:.2e}); codecbench batch_size "
          f"{row['batch_size']}; target: ratio <= 1.1", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
