"""``codecbench spresso ...``: train the AudioAE, pretrain the DiT, train stage 1, inspect a config.

    codecbench spresso train-ae CONFIG --data DIR --out DIR
    codecbench spresso pretrain-dit CONFIG --data DIR --ae AE.pt --out DIR
    codecbench spresso train-stage1 CONFIG --data DIR --ae AE.pt --dit DIT.pt --out DIR
    codecbench spresso prepare-data SRC_DIR --out DIR
    codecbench spresso embed-captions DATA_DIR --captions CAPTIONS.csv [--weights-dir DIR]
    codecbench spresso tiny-checkpoint OUT_DIR [--time-pool 4]
    codecbench spresso info CONFIG

CONFIG is a YAML file or a preset (``tiny``, ``paper``); ``--set section.key=value`` overrides a key. Rerunning
a training command with the same ``--out`` resumes from its ``checkpoint.pt``. ``--val-data DIR`` gives held-out
clips for the periodic validation (``val_every_steps``). Under ``torchrun`` every process runs the same command
(DDP; ``--device cuda`` picks ``cuda:<LOCAL_RANK>``).
"""

from __future__ import annotations

import argparse
from typing import Any

from codecbench.bench.core.errors import ConfigError


def _overrides(pairs: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected section.key=value")
        out[key] = yaml.safe_load(value)
    return out


def _config(args: argparse.Namespace):
    from codecbench.codecs.spresso.config import load_config

    return load_config(args.config, _overrides(args.set))


def _common(parser: argparse.ArgumentParser, data: bool = True) -> None:
    parser.add_argument("config", help="YAML config file or preset: tiny, paper")
    if data:
        parser.add_argument("--data", required=True, help="folder of training audio (any rate; used at 48 kHz mono)")
        parser.add_argument("--out", required=True, help="output folder (checkpoints, losses.csv); rerun to resume")
        parser.add_argument("--steps", type=int, default=None, help="train to this step (default: the config's)")
        parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument("--val-data", default=None, help="folder of held-out clips for validation")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a key")


def _train_ae(args: argparse.Namespace) -> int:
    from codecbench.codecs.spresso.train import train_audio_ae

    path = train_audio_ae(_config(args), args.data, args.out, args.device, args.steps, not args.no_progress,
                          args.val_data)
    print(f"AudioAE checkpoint: {path}")
    return 0


def _pretrain_dit(args: argparse.Namespace) -> int:
    from codecbench.codecs.spresso.train import pretrain_dit

    path = pretrain_dit(_config(args), args.data, args.out, args.ae, args.device, args.steps, not args.no_progress,
                        args.val_data)
    print(f"DiT checkpoint: {path}")
    return 0


def _train_stage1(args: argparse.Namespace) -> int:
    from codecbench.codecs.spresso.train import train_stage1

    path = train_stage1(_config(args), args.data, args.out, args.ae, args.dit, args.device, args.steps,
                        not args.no_progress, args.val_data)
    print(f"stage-1 checkpoint: {path}")
    return 0


def _prepare_data(args: argparse.Namespace) -> int:
    from codecbench.codecs.spresso.data import prepare_data

    manifest = prepare_data(args.source, args.out, progress=not args.no_progress)
    print(f"{len(manifest['files'])} files, {manifest['hours']:.3f} h at 48 kHz mono in {args.out} "
          f"(manifest.json); train with --data {args.out}")
    return 0


def _embed_captions(args: argparse.Namespace) -> int:
    from functools import partial

    from codecbench.codecs.spresso.text import embed_captions, write_caption_embeddings

    count = write_caption_embeddings(args.data, args.captions,
                                     partial(embed_captions, weights_dir=args.weights_dir, device=args.device))
    print(f"{count} LAION-CLAP text embeddings written as <stem>.text.npy in {args.data}")
    return 0


def _tiny(args: argparse.Namespace) -> int:
    from codecbench.codecs.spresso.train import make_tiny_checkpoint

    path = make_tiny_checkpoint(args.out_dir, time_pool=args.time_pool, progress=True)
    print(f"tiny stage-1 checkpoint (trained on synthetic clips, for tests/demos only): {path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from codecbench.codecs.spresso.model import parameter_counts

    config = _config(args)
    counts = parameter_counts(config)
    print(f"S-PRESSO config '{config.name}': parameters (built on the meta device)")
    for name, count in counts.items():
        print(f"  {name:<28} {count:>14,d}")
    enc, ae = config.latent_encoder, config.audio_ae
    frame_rate_hz = ae.sample_rate_hz / ae.hop / enc.time_pool
    z_dim = enc.in_dim // enc.channel_cut
    print(f"  z: {z_dim} dims at {frame_rate_hz:.4g} Hz -> compression {ae.sample_rate_hz / (frame_rate_hz * z_dim):.4g}x")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("spresso", help="train S-PRESSO (AudioAE, DiT, stage 1) and inspect configs")
    sub = parser.add_subparsers(dest="spresso_command", required=True, metavar="STAGE")
    p = sub.add_parser("train-ae", help="train the AudioAE (mel/STFT + adversarial + feature matching)")
    _common(p)
    p.set_defaults(func=_train_ae)
    p = sub.add_parser("pretrain-dit", help="pretrain the DiT denoiser on AudioAE latents")
    _common(p)
    p.add_argument("--ae", required=True, help="AudioAE checkpoint (audio_ae.pt)")
    p.set_defaults(func=_pretrain_dit)
    p = sub.add_parser("train-stage1", help="stage 1: g_psi, f_phi and LoRA with frozen AudioAE and base DiT")
    _common(p)
    p.add_argument("--ae", required=True, help="AudioAE checkpoint (audio_ae.pt)")
    p.add_argument("--dit", required=True, help="pretrained DiT checkpoint (dit.pt)")
    p.set_defaults(func=_train_stage1)
    p = sub.add_parser("prepare-data", help="write a folder of audio as 48 kHz mono float WAV (fast crops; resumable)")
    p.add_argument("source", help="folder of audio files (any rate, channels, format)")
    p.add_argument("--out", required=True, help="output folder (same relative paths, .wav; manifest.json)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_prepare_data)
    p = sub.add_parser("embed-captions", help="LAION-CLAP text embeddings of captions -> <stem>.text.npy")
    p.add_argument("data", help="data folder (e.g. written by prepare-data)")
    p.add_argument("--captions", required=True, help="CSV with columns file, caption")
    p.add_argument("--weights-dir", default=None, help="folder with laion_clap/630k-audioset-best.pt")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_embed_captions)
    p = sub.add_parser("tiny-checkpoint", help="train a tiny stage-1 checkpoint on synthetic clips (tests, demos)")
    p.add_argument("out_dir")
    p.add_argument("--time-pool", type=int, default=4, choices=(4, 9, 100))
    p.set_defaults(func=_tiny)
    p = sub.add_parser("info", help="parameter counts and rates of a config")
    _common(p, data=False)
    p.set_defaults(func=_info)
