"""The ``codecbench`` command line. Each part of codecbench contributes its subcommands through a module in
:data:`COMMAND_MODULES` exposing ``add_commands(subparsers)``; heavy imports happen inside the commands.

Exit codes: 0 success; 2 bad input (config, argument or input file: a one-line error naming the key, argument or
file; :class:`~codecbench.bench.core.errors.CodecbenchError`); 3 an environment fault (disk full, permission
denied, read-only folder, missing file: a one-line error saying what and where; partial work is kept, rerun to
resume); 4 ``run`` finished but something failed (a unit's codec or environment, or an input file; a summary is
printed; ``--allow-failures`` exits 0); 130 interrupted.
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
        from codecbench.bench import validate

        validate.arguments(args)  # every argument checked before work starts
        return int(args.func(args) or 0)
    except CodecbenchError as error:
        print(f"codecbench: error: {' '.join(str(error).splitlines())}", file=sys.stderr)
        return 2
    except OSError as error:  # disk full, permissions, read-only folders, files vanished
        from codecbench.bench.faults import describe_os_error

        print(f"codecbench: error: {describe_os_error(error)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("codecbench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
