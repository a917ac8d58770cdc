"""The ``benco`` command.

Each sub-command lives in a module of this package that defines ``add_parser(subparsers)``
and ``run(args) -> int``; a command that passes its arguments on to a script's own parser
(``benco predict``, ``benco cam``: model options, any order) defines ``run_argv(argv) -> int``
instead, and ``main`` hands it everything after the command name. Those modules import only the standard library at top level, so
``benco --help`` stays fast; heavy packages are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ..version import __version__

#: sub-command modules, in the order ``benco --help`` lists them
COMMAND_MODULES = ["init", "data", "demo", "predict", "cam", "report", "compare", "bench", "leaderboard", "env"]


def _load_commands() -> list[object]:
    modules = []
    for name in COMMAND_MODULES:
        dotted = f"{__name__}.{name}"
        try:
            modules.append(importlib.import_module(dotted))
        except ModuleNotFoundError as err:
            if err.name != dotted:
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benco",
        description=f"IMDLBenCo {__version__}: image manipulation detection and localization benchmark and codebase.",
    )
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _load_commands():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP threads that wait passively: on a shared machine, spinning threads stall PyTorch's many
    # small operations 5-40x (benchmarks/bench_predict.py); set before anything imports torch
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMAND_MODULES:
        module = next((m for m in _load_commands() if m.__name__.rsplit(".", 1)[1] == argv[0]), None)
        if hasattr(module, "run_argv"):
            return int(module.run_argv(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"IMDLBenCo codebase version: {__version__}")
        if args.command is None:
            return 0
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.run(args) or 0)


if __name__ == "__main__":  # python -m IMDLBenCo.cli
    sys.exit(main())
