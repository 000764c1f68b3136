"""Command-line interface: ``robustrain train | eval | export | analyze | report | reproduce | list``.

Run ``robustrain COMMAND --help`` for each command's options. Each command is one module here
with ``add_parser(sub)`` and ``run(args) -> int``: it parses, calls one library function and
prints. Errors in user input print one line and exit with code 2 (bad config or arguments) or
1 (missing data, corrupt checkpoint, diverged training): :func:`main` catches
:class:`~robustrain.utils.errors.RobustrainError` once and returns its ``exit_code``; nothing
is written before a config is validated.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from robustrain.cli import analyze, export, list_cmd, report, reproduce, train
from robustrain.cli import eval as eval_cmd
from robustrain.config import CONFIG_DIR
from robustrain.utils.errors import RobustrainError

__all__ = ["main", "build_parser", "CONFIG_DIR", "COMMANDS"]

EXIT_USAGE = 2

#: the command modules, in the order of ``robustrain --help``
COMMANDS = (train, eval_cmd, export, analyze, report, reproduce, list_cmd)


def build_parser() -> argparse.ArgumentParser:
    """The ``robustrain`` parser: one sub-parser per command module of :data:`COMMANDS`."""
    from robustrain import __version__

    parser = argparse.ArgumentParser(
        prog="robustrain",
        description="Adversarial training and honest robustness evaluation.",
        epilog="Examples:\n"
               "  robustrain train                          # the main job: robust small CNN on cifar10-mini\n"
               "  robustrain train --config configs/cifar10/trades_resnet18.yaml train.epochs=10\n"
               "  robustrain eval runs/pgd_at-small_cnn-cifar10-mini-s0/best.pt --n 500\n"
               "  robustrain export runs/pgd_at-small_cnn-cifar10-mini-s0/best.pt model.pt\n"
               "  robustrain analyze curves runs/pgd_at-small_cnn-cifar10-mini-s0\n"
               "  robustrain report runs/pgd_at-small_cnn-cifar10-mini-s0\n"
               "  robustrain reproduce table6 --dry-run\n"
               "  robustrain list methods",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"robustrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robustrain`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except RobustrainError as e:
        print(f"robustrain: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("robustrain: interrupted; completed epochs are in last.pt (continue with --resume RUN_DIR)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
