"""``robustrain analyze KIND ...``: one of the papers' figures (the ``ANALYSES`` registry of
:mod:`robustrain.eval.figures`), PNG + JSON series."""

from __future__ import annotations

import argparse

from robustrain.utils.errors import RobustrainError, UsageError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from robustrain.eval.figures import ANALYSES, analysis_description

    an = sub.add_parser(
        "analyze", help="the UIAT paper's figures as PNG + JSON series (Figures 1-7, Table 2)",
        description="Analyses behind the papers' figures; each writes a PNG and a JSON file with exactly the "
                    "plotted series (timing: also a markdown table).",
        epilog="Run `robustrain analyze KIND --help` for a kind's inputs and options.",
    )
    kinds = an.add_subparsers(dest="kind", metavar="KIND", required=True)
    for entry in ANALYSES:
        k = kinds.add_parser(entry.name, help=entry.help, description=analysis_description(entry.name),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        for a in entry.meta.get("args", ()):
            k.add_argument(*a.flags, **a.options)
        k.add_argument("--out", default=None, metavar="DIR_OR_FILE",
                       help="a folder for KIND.png/.json, or a file name whose suffix (.png/.json/.md) is "
                            "replaced per file (default: the run's folder, or figures/ in the runs' common parent)")
        k.set_defaults(func=run)
    return an


def run(args: argparse.Namespace) -> int:
    from robustrain.eval.figures import ANALYSES

    entry = ANALYSES.entry(args.kind)
    kwargs = {a.dest: getattr(args, a.dest) for a in entry.meta.get("args", ())}
    try:
        written = entry.obj(out=args.out, **kwargs)
    except RobustrainError:
        raise  # missing matplotlib, data or checkpoint: their own exit code (1), though some are ValueErrors
    except ValueError as e:
        raise UsageError(str(e)) from None
    for path in written:
        print(f"wrote {path}")
    return 0
