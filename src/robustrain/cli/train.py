"""``robustrain train``: train one config with :func:`robustrain.train.fit` (or resume a run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from robustrain.utils.errors import UsageError

__all__ = ["add_parser", "run", "resolve_config_path"]


def resolve_config_path(value: str) -> Path:
    """A config file as given, else the preset of that name under the packaged ``configs/``.

    A preset may be named as in a source checkout (``configs/mini/hat_small_cnn.yaml``, the
    README's spelling) from any folder: ``configs/`` in a checkout links to the packaged presets.
    """
    from robustrain.config import CONFIG_DIR

    p = Path(value)
    if p.is_file():
        return p
    names = [value, f"{value}.yaml"]
    if p.parts[:1] == ("configs",) and len(p.parts) > 1:
        rest = Path(*p.parts[1:]).as_posix()
        names += [rest, f"{rest}.yaml"]
    for candidate in (CONFIG_DIR / name for name in names):
        if candidate.is_file():
            return candidate
    return p  # load_config reports the missing file


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    t = sub.add_parser(
        "train", help="train a model (default: the main job, a UIAT small CNN on cifar10-mini)",
        description="Train with one method and the shared trainer loop. Without arguments: the main job "
                    "(a robust small CNN on cifar10-mini, a few minutes on 2 CPU cores). The run folder "
                    "(out_dir/name) gets config.yaml, metrics.jsonl, last.pt, best.pt and summary.json.",
        epilog="Overrides are dotted key=value pairs, e.g. train.epochs=5 method=trades method.beta=6 "
               "method.eps=8/255 model=resnet18 data.name=cifar10 data.root=/data/cifar10. "
               "See `robustrain list methods|models|datasets|schedules|attacks|configs`.",
    )
    t.add_argument("--config", help="YAML config file, or the name of a preset under configs/")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last.pt with its saved config; only "
                        "optim.lr=, train.log_every= and eval.every= overrides are accepted (recorded in the run), "
                        "e.g. a lower learning rate after a NaN loss")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    t.add_argument("--download", action="store_true",
                   help="fetch missing dataset files from the official source (needs internet); "
                        "same as data.download=true")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="live progress bar (default: when stderr is a terminal)")
    t.set_defaults(func=run)
    return t


def run(args: argparse.Namespace) -> int:
    from robustrain.artifacts import RunDir, load_checkpoint
    from robustrain.config import config_from_dict, dump_config, load_config, upgrade_saved_config
    from robustrain.train import fit

    if args.resume:
        if args.config:
            raise UsageError("--resume continues a run with its saved config; drop --config")
        if args.overwrite:
            raise UsageError("--resume and --overwrite contradict each other: --resume continues the run in "
                             f"{args.resume}, --overwrite would replace it; pass one of them")
        if args.download or args.print_config:
            raise UsageError("--resume takes neither --download nor --print-config (the run's config is in "
                             f"{RunDir(args.resume).config})")
        run_dir = RunDir(args.resume)
        cfg = config_from_dict(upgrade_saved_config(load_checkpoint(run_dir.last)["config"]))
        fit(cfg, run_dir=run_dir.path, resume=True, progress=args.progress, resume_overrides=list(args.overrides))
        return 0
    overrides = list(args.overrides) + (["data.download=true"] if args.download else [])
    cfg = load_config(resolve_config_path(args.config) if args.config else None, overrides)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    args.run_dir = Path(cfg.out_dir) / cfg.run_name  # for the Ctrl-C message (cli.interrupted_message)
    fit(cfg, overwrite=args.overwrite, progress=args.progress)
    return 0
