"""``codecbench spresso-quant ...``: S-PRESSO stage 2 (QINCo2 on z), stage 3 (decoder finetuning on z_q), rates.

    codecbench spresso-quant fit-qinco2 STAGE1.pt --data DIR --out DIR [--steps 10 --codebook-size 4096 --preset M]
    codecbench spresso-quant finetune-stage3 STAGE1.pt --qinco2 QINCO2.pt --data DIR --out DIR [--steps N --val-data DIR]
    codecbench spresso-quant rates

``fit-qinco2`` extracts z with the frozen stage-1 encoder (cached), fits QINCo2, writes ``qinco2.pt`` and
``report.json`` and ``MODEL_CARD.md`` and prints the held-out MSE per number of steps m with the rate each m
gives; the best epoch on held-out clips is kept, and plain RQ if training did not beat it; rerun to resume.
``finetune-stage3`` finetunes f_phi and the LoRA adapters on z_q (the training loop of the other stages); rerun the
same command to resume.
``rates`` prints the paper's discrete operating points with their computed bitrates.
"""

from __future__ import annotations

import argparse

from codecbench.bench.core.errors import ConfigError


def _fit_qinco2(args: argparse.Namespace) -> int:
    from codecbench.codecs.spresso import qinco2 as q
    from codecbench.codecs.spresso.stage2 import fit_stage2, format_report

    train = q.QINCo2TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                vectors_per_epoch=args.vectors_per_epoch, seed=args.seed,
                                patience=args.patience)
    report = fit_stage2(
        args.checkpoint, args.data, args.out, None, train, num_steps=args.steps, codebook_size=args.codebook_size,
        preset=args.preset, val_fraction=args.val_fraction, cache_dir=args.cache_dir, device=args.device,
        log=None if args.quiet else print,
    )
    print(format_report(report))
    print(f"QINCo2: {args.out}/qinco2.pt; report: {args.out}/report.json; model card: {args.out}/MODEL_CARD.md")
    return 0


def _finetune_stage3(args: argparse.Namespace) -> int:
    import yaml
    from codecbench.codecs.spresso.stage3 import finetune_stage3

    overrides = {}
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected key=value (a key of the checkpoint's stage1 section)")
        overrides[key] = yaml.safe_load(value)
    path = finetune_stage3(args.checkpoint, args.qinco2, args.data, args.out, steps=args.steps,
                           num_steps=args.num_steps, overrides=overrides, device=args.device,
                           progress=not args.no_progress, val_data=args.val_data)
    print(f"stage-3 model: {path}")
    return 0


def _rates(args: argparse.Namespace) -> int:
    from codecbench.codecs.spresso.discrete import PAPER_POINTS

    for point in PAPER_POINTS.values():
        print(point.describe())
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("spresso-quant", help="S-PRESSO stages 2-3: QINCo2 on z, decoder finetuning on z_q")
    sub = parser.add_subparsers(dest="spresso_quant_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("fit-qinco2", help="stage 2: extract z (cached) and fit QINCo2; report MSE per step count")
    p.add_argument("checkpoint", help="stage-1 checkpoint (stage1.pt)")
    p.add_argument("--data", required=True, help="folder of audio (whole clips; any rate, used at 48 kHz mono)")
    p.add_argument("--out", required=True, help="output folder (qinco2.pt, report.json, z_train.npy, z_val.npy)")
    p.add_argument("--steps", type=int, default=10, help="M, QINCo2 steps (paper, inferred: 10 at 11 Hz, 25 at 1 Hz)")
    p.add_argument("--codebook-size", type=int, default=4096, help="K (paper, inferred: 4096)")
    p.add_argument("--preset", default="M", choices=("tiny", "S", "M", "L"), help="QINCo2 size (default M: L=4, 384)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--vectors-per-epoch", type=int, default=None, help="sampled vectors per epoch (default: all)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=8e-4)
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share of the frames (whole clips)")
    p.add_argument("--patience", type=int, default=10, help="stop after this many epochs without held-out gain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default="results/.cache", help="z cache (spresso-z/ inside)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no per-epoch log")
    p.set_defaults(func=_fit_qinco2)

    p = sub.add_parser("finetune-stage3", help="stage 3: finetune f_phi and LoRA on QINCo2-quantised z_q (resumable)")
    p.add_argument("checkpoint", help="stage-1 checkpoint (stage1.pt)")
    p.add_argument("--qinco2", required=True, help="stage-2 quantiser (qinco2.pt)")
    p.add_argument("--data", required=True, help="folder of audio (whole clips)")
    p.add_argument("--out", required=True, help="output folder (checkpoint.pt, stage3.pt, losses.csv); rerun to resume")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: 15%% of the stage-1 steps)")
    p.add_argument("--num-steps", type=int, default=None, help="QINCo2 steps used for z_q (default: all M)")
    p.add_argument("--val-data", default=None,
                   help="folder of held-out clips: loss and mel distance every val_every_steps (val.csv)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the checkpoint's stage1 training section (lr, batch_size, segment_s, ...)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_finetune_stage3)

    p = sub.add_parser("rates", help="the paper's discrete operating points and their computed bitrates")
    p.set_defaults(func=_rates)
