"""S-PRESSO at GPU scale, measured in one run: stage-1 training, decoding, QINCo2 fit and encode.

    python -m codecbench.bench.benchmarks.spresso_gpu [--device cuda] [--cpu-size]

On CUDA (default sizes, meant to finish in < 8 min on one H200): random-init **paper-size** S-PRESSO (231.7 M DiT),
stage-1 training steps/s and peak GPU memory in bf16 autocast (fp32 master weights, TF32) at ``--batch`` x 5 s
crops (default 16), fp32 for comparison; decode real-time factor of a 10-s clip at t = 4 / 9 / 100 (25 / 11.1 /
1 Hz) with the config's sampler steps; QINCo2 (preset M, K = 4096, M = 10 steps) fit on 100k random-Gaussian
64-dim vectors for 1 epoch and encode throughput (vectors/s) at A = 16, B = 32.

On CPU (``--device cpu``, the default without a GPU): the same measurements at CPU size: tiny config, batch 2 x
1 s, 2-s clip, QINCo2 K = 256 with 20k vectors and the tiny preset. Figures are what this machine measured; the
models are random-init (speed and memory only, no quality).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from codecbench.codecs.spresso import loop
from codecbench.codecs.spresso import qinco2 as q
from codecbench.codecs.spresso.audio_ae import AudioAE
from codecbench.codecs.spresso.config import load_config
from codecbench.codecs.spresso.data import Batch, ClipSource, demo_like_clips
from codecbench.codecs.spresso.dit import DiT
from codecbench.codecs.spresso.model import SPresso
from codecbench.codecs.spresso.train import _clip, _optimizer, _split, step_generator


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _peak_mib(device: str) -> float:
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB (process peak RSS)


def stage1_speed(preset: str, device: str, precision: str, batch: int, segment_s: float, steps: int) -> dict:
    overrides = {"latent_encoder.time_pool": 9, "stage1.precision": precision, "stage1.batch_size": batch,
                 "stage1.segment_s": segment_s}
    config = load_config(preset, overrides)
    torch.manual_seed(0)
    model = SPresso(config, AudioAE(config.audio_ae), DiT(config.dit)).to(device).train()
    params = model.stage1_parameters()
    opt = _optimizer(params, config.stage1)

    def loss_fn(b: Batch, g: torch.Generator):
        return model.stage1_loss(model.encode_latents(b.audio), g, None, 1.0, None), {}

    step = loop.make_step(loss_fn, params, opt, config.stage1, device, loop.Ranks(), None, _split, _clip)
    data = ClipSource.from_arrays(demo_like_clips(4, segment_s + 1.0, 0))
    segment = int(segment_s * 48000)
    batches = [data.batch(batch, segment, 0, i) for i in range(steps + 1)]
    batches = [Batch(b.audio.to(device), None, b.has_text) for b in batches]
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step(batches[0], step_generator(0, 0), 0)  # warm-up
    _sync(device)
    started = time.perf_counter()
    for i in range(1, steps + 1):
        step(batches[i], step_generator(0, i), i)
    _sync(device)
    elapsed = time.perf_counter() - started
    out = {"preset": preset, "precision": precision, "batch": batch, "segment_s": segment_s,
           "steps_per_s": steps / elapsed, "peak_mib": _peak_mib(device)}
    return out


@torch.no_grad()
def decode_rtf(preset: str, device: str, seconds: float) -> list[dict]:
    rows = []
    audio = torch.from_numpy(demo_like_clips(1, seconds, 1)[0])[None].to(device)
    for t in (4, 9, 100):
        config = load_config(preset, {"latent_encoder.time_pool": t})
        torch.manual_seed(0)
        model = SPresso(config, AudioAE(config.audio_ae), DiT(config.dit)).to(device).eval()
        z = model.encode(audio)
        model.decode(z, audio.shape[-1], seed=0, steps=1)  # warm-up
        _sync(device)
        started = time.perf_counter()
        model.decode(z, audio.shape[-1], seed=0)
        _sync(device)
        rows.append({"time_pool": t, "frame_rate_hz": model.z_frame_rate_hz, "sampler_steps": config.diffusion.sampler_steps,
                     "decode_rtf": (time.perf_counter() - started) / seconds})
        del model
    return rows


def qinco2_speed(device: str, k: int, preset: str, vectors: int, num_steps: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(vectors, 64, generator=gen) * torch.linspace(1.0, 0.1, 64)
    val = torch.randn(max(k, 2048), 64, generator=gen) * torch.linspace(1.0, 0.1, 64)
    config = q.QINCo2Config.preset(preset, dim=64, num_steps=num_steps, codebook_size=k)
    train = q.QINCo2TrainConfig(epochs=1, kmeans_iters=10, batch_size=1024)
    started = time.perf_counter()
    model, history = q.fit_qinco2(data, config, train, val_data=val, device=device)
    _sync(device)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    model.encode(val.to(device))
    _sync(device)
    encode_s = time.perf_counter() - started
    return {"K": k, "M": num_steps, "preset": preset, "train_vectors": vectors, "fit_s": fit_s,
            "train_vectors_per_s": history.vectors_per_s[0], "encode_vectors_per_s": len(val) / encode_s,
            "kept": history.selected, "A": config.num_candidates, "B": config.beam_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="stage-1 batch (default 16 on CUDA, 2 on CPU)")
    parser.add_argument("--cpu-size", action="store_true", help="CPU sizes on any device")
    args = parser.parse_args()
    gpu = torch.device(args.device).type == "cuda" and not args.cpu_size
    loop.enable_tf32(args.device)
    began = time.perf_counter()
    preset, batch = ("paper", args.batch or 16) if gpu else ("tiny", args.batch or 2)
    segment_s, steps = (5.0, 10) if gpu else (1.0, 3)
    print(f"device {args.device}; {'GPU' if gpu else 'CPU'} sizes; random-init models (speed and memory only)")
    for precision in ("bf16", "fp32"):
        if torch.device(args.device).type == "cuda":
            torch.cuda.empty_cache()
        r = stage1_speed(preset, args.device, precision, batch, segment_s, steps)
        print(f"stage 1 {r['preset']} {r['precision']}: batch {r['batch']} x {r['segment_s']:g} s: "
              f"{r['steps_per_s']:.3f} steps/s, peak memory {r['peak_mib']:.0f} MiB")
    for r in decode_rtf(preset, args.device, 10.0 if gpu else 2.0):
        print(f"decode t={r['time_pool']} ({r['frame_rate_hz']:.4g} Hz), {r['sampler_steps']} steps: "
              f"RTF {r['decode_rtf']:.4f}")
    r = qinco2_speed(args.device, *((4096, "M", 100_000, 10) if gpu else (256, "tiny", 20_000, 4)))
    print(f"QINCo2 {r['preset']} K={r['K']} M={r['M']}: fit 1 epoch of {r['train_vectors']} vectors in "
          f"{r['fit_s']:.1f} s ({r['train_vectors_per_s']:.0f} vectors/s training), encode "
          f"{r['encode_vectors_per_s']:.0f} vectors/s (A={r['A']}, B={r['B']}), kept {r['kept']}")
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
