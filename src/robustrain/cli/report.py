"""``robustrain report RUN_DIR``: a markdown report of one run (:func:`robustrain.eval.report.write_report`)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    rp = sub.add_parser(
        "report", help="a markdown report of one run: config, final table, per-epoch metrics, figures",
        description="Write RUN_DIR/report.md: the resolved config, the final evaluation (summary.json), the "
                    "per-epoch metrics and the run's figures (learning curves; the universal perturbations "
                    "of UIAT methods), linked relative to the report.",
    )
    rp.add_argument("run", metavar="RUN_DIR", help="a run folder written by `robustrain train`")
    rp.add_argument("--out", default=None, help="report path (default: RUN_DIR/report.md); figures go next to it")
    rp.add_argument("--no-figures", action="store_true", help="tables only (no matplotlib needed)")
    rp.set_defaults(func=run)
    return rp


def run(args: argparse.Namespace) -> int:
    from robustrain.eval.report import write_report

    path = write_report(args.run, args.out, figures=not args.no_figures)  # errors: RobustrainErrors for main()
    print(f"wrote {path}")
    return 0
