"""Speed of the perceptual metrics whose models ship in their wheels: cold, cached, and codecbench vs the library.

Run: ``python bench/benchmarks/perceptual_speed.py [--items 4] [--seconds 5] [--metrics visqol_audio ...]``
(default: visqol_audio, aisfx_similarity, kad_aisfx; add cdpam_distance explicitly: ~1.2 s per audio second on 2 CPU cores).

All figures come from one process and one run, on the same seeded 48 kHz pairs (``metrics_speed._items``):

- ``cold``: a new metric instance, empty cache directory (model load included; ViSQOL's numba code is compiled
  beforehand by a warm-up call, since it is cached on disk after the very first run anyway);
- ``cached``: what a rerun costs: item metrics look their values up in the runner's metric-value cache
  (``runner.metric_key`` over the metric identity and both content hashes, as the runner does); set metrics
  (kad_aisfx) use a second instance on the same embedding cache;
- ``direct``: the library called directly on the same pairs, already downmixed and at its working rate
  (ViSQOL: ``VisqolApi.measure_from_arrays``; aiSFX: the package's model on codecbench's spectrogram blocks and a
  numpy cosine; CDPAM: the package's ``CDPAM(dev='cpu').forward``); ratio = codecbench cold (model already loaded,
  i.e. a second cold instance sharing nothing but the process) / direct: should be <= 1.1 (item metrics).

ViSQOL with worker processes: ``visqol_workers.py``; CDPAM against its package with each side cold in its own
process and warm: ``cdpam_speed.py`` (here CDPAM's codecbench time includes building its model, the direct
call's does not).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from typing import Any

import numpy as np

SAMPLE_RATE_HZ = 48_000
DEFAULT_METRICS = ("visqol_audio", "aisfx_similarity", "kad_aisfx")


def _timed(fn) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _codecbench(name: str, refs, degs, cache_dir: str, **options: Any):
    from codecbench.bench.metrics import registry

    metric = registry.create(name, cache_dir=cache_dir, **options)
    if metric.info.level == "set":
        return metric, metric.compute_set(refs, degs, SAMPLE_RATE_HZ)
    results = metric.score_batch(refs, degs, SAMPLE_RATE_HZ)
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise RuntimeError(f"{name}: {failed[0]}")
    return metric, results


def _store_and_lookup(metric, refs, degs, results, cache_dir: str) -> float:
    """Put the values in the runner's metric-value cache, then time the lookups a rerun makes."""
    from codecbench.bench.core import audio
    from codecbench.bench.core.cache import Cache
    from codecbench.bench.runner import metric_key

    cache = Cache(cache_dir)
    keys = [metric_key(metric.identity(), audio.content_hash(r, SAMPLE_RATE_HZ), audio.content_hash(d, SAMPLE_RATE_HZ),
                       SAMPLE_RATE_HZ) for r, d in zip(refs, degs)]
    for key, value in zip(keys, results):
        cache.put_json("metrics", key, {"value": value.value, "extras": value.extras})

    def lookup():
        return [cache.get_json("metrics", metric_key(metric.identity(), audio.content_hash(r, SAMPLE_RATE_HZ),
                                                     audio.content_hash(d, SAMPLE_RATE_HZ), SAMPLE_RATE_HZ))
                for r, d in zip(refs, degs)]

    elapsed, found = _timed(lookup)
    assert all(f is not None for f in found)
    return elapsed


def _direct(name: str, refs, degs):
    """A callable running the library directly on pre-converted inputs (conversion done here, untimed)."""
    import torch
    from codecbench.bench.core import audio

    mono = [(r.mean(0).astype(np.float64), d.mean(0).astype(np.float64)) for r, d in zip(refs, degs)]
    if name == "visqol_audio":
        from visqol import VisqolApi

        api = VisqolApi()
        api.create(mode="audio")
        return lambda: [api.measure_from_arrays(r, d, SAMPLE_RATE_HZ).moslqo for r, d in mono]
    if name == "aisfx_similarity":
        from aisfx import preprocessing
        from codecbench.bench.metrics import aisfx as cb_aisfx

        model = cb_aisfx.load_aisfx_model(cb_aisfx.AisfxEmbedder().checkpoint())
        at_rate = [tuple(audio.resample(torch.from_numpy(x.astype(np.float32)), SAMPLE_RATE_HZ, 44_100) for x in p)
                   for p in mono]

        def run():
            out = []
            for pair in at_rate:
                emb = []
                for x in pair:
                    spec = cb_aisfx.aisfx_spectrogram(x).numpy()
                    blocks = preprocessing.blocking(spec, 100, 50, True)
                    with torch.no_grad():
                        emb.append(model.get_embedding(torch.Tensor(blocks)).numpy().mean(0))
                out.append(float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1])))
            return out

        return run
    if name == "cdpam_distance":
        import functools
        import warnings

        import cdpam

        real_load = torch.load
        torch.load = functools.partial(real_load, weights_only=False)  # the package's own file, as shipped
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                package = cdpam.CDPAM(dev="cpu")
        finally:
            torch.load = real_load
        at_rate = [tuple(np.round(audio.resample(torch.from_numpy(x.astype(np.float32)), SAMPLE_RATE_HZ, 22_050)
                                  .numpy() * 32768)[None].astype(np.float32) for x in p) for p in mono]

        def run():
            with torch.no_grad():
                return [float(package.forward(r, d)[0]) for r, d in at_rate]

        return run
    raise ValueError(f"no direct library call for {name}")


def measure(name: str, refs, degs) -> dict[str, float]:
    audio_s = sum(r.shape[-1] for r in refs) / SAMPLE_RATE_HZ
    row: dict[str, float] = {"audio_s": audio_s}
    if name == "visqol_audio":  # numba compilation (cached on disk after the first run ever) out of the timings
        _codecbench(name, refs[:1], degs[:1], tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as cache_dir:
        cold_s, (metric, results) = _timed(lambda: _codecbench(name, refs, degs, cache_dir))
        row["cold_audio_s_per_s"] = audio_s / cold_s
        if metric.info.level == "item":
            row["cached_audio_s_per_s"] = audio_s / _store_and_lookup(metric, refs, degs, results, cache_dir)
        else:
            cached_s, _ = _timed(lambda: _codecbench(name, refs, degs, cache_dir))
            row["cached_audio_s_per_s"] = audio_s / cached_s
    if metric.info.level != "item":
        return row  # set metrics: cold and cached only (no single library call computes them)
    direct = _direct(name, refs, degs)
    direct()  # warm (model loaded, first-call allocations)
    with tempfile.TemporaryDirectory() as cache_dir:
        ours_s, _ = _timed(lambda: _codecbench(name, refs, degs, cache_dir))
    direct_s, _ = _timed(direct)
    row["codecbench_over_direct"] = ours_s / direct_s
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--metrics", nargs="*", default=list(DEFAULT_METRICS))
    args = parser.parse_args(argv)
    from codecbench.bench.benchmarks.metrics_speed import _items
    from codecbench.bench.core import weights
    from codecbench.bench.metrics import registry

    weights.set_offline()
    refs, degs = _items(args.items, args.seconds)
    print(f"{args.items} items x {args.seconds:g} s at {SAMPLE_RATE_HZ} Hz, one process")
    print(f"{'metric':18} {'cold audio-s/s':>14} {'cached audio-s/s':>16} {'codecbench/direct':>17}")
    for name in args.metrics:
        reason = registry.create(name).availability()
        if reason:
            print(f"{name:18} unavailable: {reason}")
            continue
        row = measure(name, refs, degs)
        ratio = f"{row['codecbench_over_direct']:17.3f}" if "codecbench_over_direct" in row else f"{'-':>17}"
        print(f"{name:18} {row['cold_audio_s_per_s']:14.2f} {row['cached_audio_s_per_s']:16.1f} {ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
