"""``robustrain reproduce TABLE``: re-run a paper table against its numbers
(:func:`robustrain.reproduce.build_plan` + :func:`robustrain.reproduce.run_plan`)."""

from __future__ import annotations

import argparse
import sys

from robustrain.utils.errors import UsageError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    rr = sub.add_parser(
        "reproduce", help="re-run a paper table (UIAT Tables 1-6, the LRAT cross-attack table) against its numbers",
        description="Train every row of TABLE (one YAML config per row under configs/) for each seed, evaluate "
                    "it under the table's attacks and write OUT/TABLE/results.md and results.json: our mean ± std "
                    "over seeds, the paper's number and the difference, every column on the same test images, the "
                    "per-image worst case over the attacks and, for each method row, the paired difference to "
                    "the table's PGD-AT / SAT row over the same seeds with a 95% t-interval. Finished runs are "
                    "reused and interrupted ones resumed, so rerunning the same command continues a long "
                    "reproduction.",
        epilog="Scales: full = each row's config as written (the paper's setting; dataset files and a GPU); "
               "mini = the same protocol with small_cnn on cifar10-mini, <= 4 epochs, a few CPU minutes per run "
               "(CIFAR-100 / SVHN / WRN rows become their cifar10-mini analogue, noted in the table). Examples:\n"
               "  robustrain reproduce --list\n"
               "  robustrain reproduce table6 --dry-run\n"
               "  robustrain reproduce table1 --only '*-cifar10' --seeds 3\n"
               "  robustrain reproduce table1 --scale full --data-root /data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rr.add_argument("table", nargs="?", help="table1 ... table6 or lrat (see --list)")
    rr.add_argument("--scale", default="mini", choices=["mini", "full"], help="default: %(default)s")
    rr.add_argument("--seeds", type=int, default=1, metavar="K", help="seeds 0..K-1 per row (default: %(default)s)")
    rr.add_argument("--only", action="append", metavar="ROW",
                    help="row ids or shell patterns, comma-separated or repeated (e.g. '*-cifar10')")
    rr.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/reproduce-SCALE)")
    rr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="config override applied last to every run (method.* ones not to HAT's standard-trained "
                         "helper), repeatable (e.g. --set train.epochs=2)")
    rr.add_argument("--attacks", default=None, help="evaluate only these of the table's attacks, e.g. natural,pgd20")
    rr.add_argument("--eval-n", type=int, default=None, metavar="N",
                    help="test images for EVERY column (natural, PGD-20, CW, AutoAttack, worst): the first N, "
                         "the same for all columns, named in the table (default: all; 0 = all)")
    rr.add_argument("--aa-n", type=int, default=None, metavar="N",
                    help="deprecated alias of --eval-n (every column now runs on the same images): used as "
                         "--eval-n N with a notice; an error with a different --eval-n")
    rr.add_argument("--eval-batch-size", type=int, default=None, metavar="B",
                    help="evaluation batch size (default: each run's data.eval_batch_size)")
    rr.add_argument("--data-root", default=None, metavar="DIR",
                    help="folder of the dataset files for --scale full (default: each config's data.root, "
                         "$ROBUSTRAIN_DATA or ./data)")
    rr.add_argument("--extra-data", action="append", metavar="DATASET=PATH",
                    help="generated-image file for Table 4, e.g. cifar10=/data/cifar10_ddpm.npz (default: "
                         "$ROBUSTRAIN_EXTRA_DATA)")
    rr.add_argument("--dry-run", action="store_true", help="print the plan (rows, configs, commands, runs) and exit")
    rr.add_argument("--list", action="store_true", help="list the tables and their rows with the paper's numbers")
    rr.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="live progress bars (default: when stderr is a terminal)")
    rr.set_defaults(func=run)
    return rr


def _split(items: list[str] | None) -> tuple[str, ...]:
    """``["a,b", "c"]`` -> ``("a", "b", "c")``."""
    return tuple(p.strip() for item in items or () for p in item.split(",") if p.strip())


def run(args: argparse.Namespace) -> int:
    from robustrain.reproduce import (
        ReproduceOptions,
        build_plan,
        format_plan,
        format_tables,
        parse_extra_data,
        render_markdown,
        run_plan,
    )

    if args.list:
        print(format_tables(), end="")
        return 0
    if not args.table:
        raise UsageError("reproduce needs a TABLE (see `robustrain reproduce --list`)")
    eval_n = args.eval_n
    if args.aa_n is not None:  # the deprecated alias: one image set for every column now
        if eval_n is not None and eval_n != args.aa_n:
            raise UsageError(f"--aa-n {args.aa_n} with --eval-n {eval_n}: every column is now evaluated on the "
                             "same images, so there is one size; drop the deprecated --aa-n")
        print(f"robustrain reproduce: --aa-n is deprecated (every column is evaluated on the same images); "
              f"using --eval-n {args.aa_n} for all columns", file=sys.stderr)
        eval_n = args.aa_n
    options = ReproduceOptions(
        scale=args.scale, seeds=args.seeds, only=_split(args.only), out=args.out, sets=tuple(args.set or ()),
        attacks=_split([args.attacks]) if args.attacks else None, eval_n=eval_n,
        eval_batch_size=args.eval_batch_size, data_root=args.data_root,
        extra_data=parse_extra_data(args.extra_data))
    plan = build_plan(args.table, options)
    if args.dry_run:
        print(format_plan(plan))
        return 0
    result = run_plan(plan, progress=args.progress)
    print(render_markdown(result), end="")
    return 1 if result["failed"] else 0
