"""The ``codecbench`` command line. Each part of codecbench contributes its subcommands through a module in
:data:`COMMAND_MODULES` exposing ``add_commands(subparsers)``; heavy imports happen inside the commands.

Errors codecbench raises on purpose (:class:`~codecbench.bench.core.errors.CodecbenchError`) end the program with a
one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from codecbench.bench.core import weights
from codecbench.bench.core.errors import CodecbenchError

COMMAND_MODULES: tuple[str, ...] = (
    "codecbench.bench.commands",  # demo, run, codecs
    "codecbench.codecs.spresso.cli",  # spresso train-ae | pretrain-dit | train-stage1 | tiny-checkpoint | info
    "codecbench.codecs.spresso.cli_discrete",  # spresso-quant fit-qinco2 | finetune-stage3 | rates
    "codecbench.bench.score",  # score
    "codecbench.bench.metrics.commands",  # metrics
    "codecbench.bench.report.commands",  # report
    "codecbench.listening_test.commands",  # mushra build | serve | analyze
    "codecbench.bench.status",  # status
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codecbench",
        description="Evaluate and benchmark audio codecs at low and ultra-low bitrates.",
    )
    parser.add_argument(
        "--offline", action="store_true", help="forbid every download (same as CODECBENCH_OFFLINE=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.offline or weights.is_offline():
        weights.set_offline()
    try:
        return int(args.func(args) or 0)
    except CodecbenchError as error:
        print(f"codecbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codecbench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
