"""Command-line interface: ``robustrain train | eval | audit | export | analyze | report | reproduce | list | data``.

Run ``robustrain COMMAND --help`` for each command's options. Each command is one module here
with ``add_parser(sub)`` and ``run(args) -> int``: it parses, calls one library function and
prints. Errors in user input print one line and exit with code 2 (bad config or arguments) or
1 (missing data, corrupt checkpoint, diverged training): :func:`main` catches
:class:`~robustrain.utils.errors.RobustrainError` once and returns its ``exit_code``; nothing
is written before a config is validated.

Error handling lives here and only here: commands raise ``RobustrainError`` subclasses and
:func:`main` prints ``robustrain: error: MESSAGE`` (one line) and returns the exit code. Ctrl-C
prints one line saying what was kept (:func:`interrupted_message`) and returns 130, never a
traceback, also while the modules are still being imported. A full disk or ``ulimit -f`` is a
``DiskFullError`` (SIGXFSZ is ignored so the write fails with EFBIG instead of killing the process).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _started_as_command() -> bool:
    """True when this process is the ``robustrain`` command (console script or ``python -m robustrain``)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name in ("robustrain", "__main__.py") or name.startswith("robustrain-")


try:  # torch takes seconds to import: a Ctrl-C meanwhile is one line, not an import traceback
    from robustrain.cli import analyze, audit, data, export, list_cmd, report, reproduce, train
    from robustrain.cli import eval as eval_cmd
    from robustrain.utils.errors import RobustrainError
except KeyboardInterrupt:
    if not _started_as_command():
        raise
    print("robustrain: interrupted while starting; nothing was run or written", file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED) from None

__all__ = ["main", "build_parser"]

#: the command modules, in the order of ``robustrain --help``
COMMANDS = (train, eval_cmd, audit, export, analyze, report, reproduce, list_cmd, data)


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


def interrupted_message(args: argparse.Namespace | None) -> str:
    """The one line printed on Ctrl-C: what the interrupted command kept and how to go on.

    ``train`` names ``last.pt`` only when the run folder has one (commands record the folder
    as ``args.run_dir`` once it is known; ``--resume RUN`` names it too); ``eval`` names
    AutoAttack's resume state when it kept one (``args.aa_state_dir``).

    Example:
        >>> import tempfile
        >>> interrupted_message(argparse.Namespace(command="train", resume=None, run_dir=tempfile.mkdtemp()))
        'robustrain: interrupted before any epoch finished (no last.pt to resume); rerun the same command to start again'
    """
    command = getattr(args, "command", None)
    if command == "train":
        from robustrain.artifacts import RunDir

        folder = getattr(args, "run_dir", None) or getattr(args, "resume", None)
        if folder is None:  # interrupted before the run folder was known: say only what is sure
            return ("robustrain: interrupted; if the run folder holds a last.pt, continue with "
                    "`robustrain train --resume RUN_DIR`, else rerun the same command")
        rd = RunDir(folder)
        if rd.last.is_file():
            return (f"robustrain: interrupted; the completed epochs are in {rd.last} (continue with "
                    f"`robustrain train --resume {rd.path}`)")
        return ("robustrain: interrupted before any epoch finished (no last.pt to resume); rerun the same "
                "command to start again")
    if command == "eval":
        state = getattr(args, "aa_state_dir", None)
        if state is not None and Path(state).is_dir():
            return (f"robustrain: interrupted; AutoAttack's finished chunks are kept in {state}: rerun the same "
                    "command to continue")
        return "robustrain: interrupted; nothing was written: rerun the same command to evaluate again"
    if command == "reproduce":
        return ("robustrain: interrupted; finished runs, checkpoints and evaluations are kept: rerun the same "
                "command to continue")
    return "robustrain: interrupted; files written so far are complete (each is written atomically): rerun the command"


def _ignore_sigxfsz() -> None:
    """Under ``ulimit -f`` a write past the limit raises SIGXFSZ, which kills the process
    silently; ignored, the write fails with EFBIG and becomes a ``DiskFullError``."""
    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # not the main thread (main() called from a library user's thread)
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robustrain`` command; returns the exit code."""
    args = None
    try:
        _ignore_sigxfsz()
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return EXIT_USAGE
        return args.func(args)
    except RobustrainError as e:
        print(f"robustrain: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(interrupted_message(args), file=sys.stderr)
        return EXIT_INTERRUPTED


def _one_line(message: str, limit: int = 2000) -> str:
    """A message as one line (line breaks joined) of at most ``limit`` characters."""
    line = " ".join(part.strip() for part in message.splitlines()) if "\n" in message or "\r" in message else message
    return line if len(line) <= limit else line[: limit - 25] + f" ... ({len(line)} characters)"


if __name__ == "__main__":
    sys.exit(main())
