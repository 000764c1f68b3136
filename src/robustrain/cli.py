"""Command-line interface: ``robustrain train | eval | analyze | list``.

Run ``robustrain COMMAND --help`` for each command's options. Errors in user input print
one line and exit with code 2 (bad config or arguments) or 1 (missing data, corrupt
checkpoint, diverged training); nothing is written before a config is validated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["main", "CONFIG_DIR"]

#: YAML presets shipped with the repository (each file's header gives its command)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _resolve_config_path(value: str) -> Path:
    p = Path(value)
    if p.is_file():
        return p
    for candidate in (CONFIG_DIR / value, CONFIG_DIR / f"{value}.yaml"):
        if candidate.is_file():
            return candidate
    return p  # load_config reports the missing file


# ---------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    from robustrain.config import dump_config, load_config
    from robustrain.train.trainer import fit

    if args.resume:
        if args.overrides or args.config:
            raise _UsageError("--resume continues a run with its saved config; drop --config and key=value overrides")
        from robustrain.config import config_from_dict
        from robustrain.train.checkpoint import load_checkpoint

        run_dir = Path(args.resume)
        cfg = config_from_dict(load_checkpoint(run_dir / "last.pt")["config"])
        fit(cfg, run_dir=run_dir, resume=True, progress=args.progress)
        return 0
    overrides = list(args.overrides) + (["data.download=true"] if args.download else [])
    cfg = load_config(_resolve_config_path(args.config) if args.config else None, overrides)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    fit(cfg, overwrite=args.overwrite, progress=args.progress)
    return 0


# ----------------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from robustrain.config import config_from_dict, parse_float
    from robustrain.data import load_split
    from robustrain.eval.robust import PROTOCOL, build_eval_attacks, evaluate_attacks, format_table
    from robustrain.train.checkpoint import load_checkpoint
    from robustrain.train.trainer import build_model, resolve_device

    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, map_location=device)
    cfg = config_from_dict(ckpt["config"])
    model = build_model(cfg, device)
    weights = "ema" if ckpt.get("ema") is not None and not args.no_ema else "model"
    model.load_state_dict(ckpt[weights])
    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    overrides = {"eps": parse_float(args.eps, "--eps")} if args.eps is not None else {}
    try:
        attacks = build_eval_attacks(names, **overrides)
    except KeyError as e:
        raise _UsageError(f"--attacks: {e.args[0]}") from None
    x, y = load_split(cfg.data.name, "test", root=args.data_root or cfg.data.root, download=args.download)
    n = x.shape[0] if args.n is None else min(args.n, x.shape[0])
    if n <= 0:
        raise _UsageError("--n must be positive")
    acc = evaluate_attacks(model, x[:n], y[:n], attacks, batch_size=args.batch_size, device=device,
                           seed=args.seed, progress=not args.no_progress and sys.stderr.isatty())
    protocol = PROTOCOL if not overrides else PROTOCOL.replace("eps=8/255", f"eps={args.eps}")
    print(f"{args.checkpoint} (epoch {ckpt['epoch']}, {weights} weights), {n} {cfg.data.name} test images")
    print(format_table({f"{cfg.method.name} / {cfg.model.name}": acc}, names))
    print(f"protocol: {protocol}")
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name(Path(args.checkpoint).stem + "-eval.json")
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "epoch": ckpt["epoch"], "weights": weights,
                               "dataset": cfg.data.name, "n": n, "protocol": protocol,
                               "eps": overrides.get("eps", 8 / 255), "accuracy": acc}, indent=2))
    print(f"wrote {out}")
    return 0


# -------------------------------------------------------------------------- analyze
def _cmd_analyze(args: argparse.Namespace) -> int:
    from robustrain.data import DatasetFileError
    from robustrain.eval.analyses import ANALYSES
    from robustrain.eval.plots import PlotDependencyError
    from robustrain.train.checkpoint import CheckpointError

    entry = ANALYSES.entry(args.kind)
    kwargs = {a.dest: getattr(args, a.dest) for a in entry.meta.get("args", ())}
    try:
        written = entry.obj(out=args.out, **kwargs)
    except PlotDependencyError as e:
        print(f"robustrain: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except (CheckpointError, DatasetFileError):
        raise  # exit 1 in main(), though they are ValueErrors too
    except ValueError as e:
        raise _UsageError(str(e)) from None
    for path in written:
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- report
def _cmd_report(args: argparse.Namespace) -> int:
    from robustrain.data import DatasetFileError
    from robustrain.eval.plots import PlotDependencyError
    from robustrain.eval.report import write_report
    from robustrain.train.checkpoint import CheckpointError

    try:
        path = write_report(args.run, args.out, figures=not args.no_figures)
    except PlotDependencyError as e:
        print(f"robustrain: error: {e} (or pass --no-figures)", file=sys.stderr)
        return EXIT_FAILURE
    except (CheckpointError, DatasetFileError):
        raise
    except ValueError as e:
        raise _UsageError(str(e)) from None
    print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- list
def _fmt(value: object) -> str:
    """Defaults as a user writes them: 8/255 rather than 0.03137254901960784."""
    if isinstance(value, float) and 0 < abs(value) < 1:
        k = value * 255
        if abs(k - round(k)) < 1e-9:
            return f"{round(k)}/255"
    return str(value)


def _list_entries(registry) -> list[tuple[str, str]]:
    return [(e.name, e.help) for e in registry]


def _cmd_list(args: argparse.Namespace) -> int:
    what = args.what
    if what == "configs":
        files = sorted(CONFIG_DIR.rglob("*.yaml")) if CONFIG_DIR.is_dir() else []
        if not files:
            print(f"no configs found in {CONFIG_DIR}")
        for f in files:
            header = next((ln[1:].strip() for ln in f.read_text().splitlines() if ln.startswith("#")), "")
            print(f"{str(f.relative_to(CONFIG_DIR)):<40} {header}")
        return 0
    rows = _LISTERS[what]()
    width = max(len(n) for n, _ in rows) if rows else 0
    for name, help_ in rows:
        print(f"{name:<{width}}  {help_}")
    return 0


def _datasets() -> list[tuple[str, str]]:
    from robustrain.data import DATASETS, get_dataset_info

    rows = []
    for e in DATASETS:
        info = get_dataset_info(e.name)
        c, h, w = info.image_shape
        rows.append((e.name, f"{info.num_classes} classes, {c}x{h}x{w}, "
                             f"{info.train_size}/{info.test_size} train/test"))
    return rows


def _models() -> list[tuple[str, str]]:
    from robustrain.models import MODELS, model_params

    return [(e.name, f"{e.help}  params: " + ", ".join(f"{k}={_fmt(v)}" for k, v in model_params(e.name).items()))
            for e in MODELS]


def _attacks() -> list[tuple[str, str]]:
    from robustrain.attacks import ATTACKS

    return _list_entries(ATTACKS)


def _methods() -> list[tuple[str, str]]:
    import dataclasses

    from robustrain.methods import METHODS, method_params

    rows = []
    for e in METHODS:
        params = ", ".join(f"{f.name}={_fmt(f.default)}" for f in dataclasses.fields(method_params(e.name)))
        rows.append((e.name, f"{e.help}  params: {params}"))
    return rows


def _schedules() -> list[tuple[str, str]]:
    from robustrain.train.schedules import SCHEDULES

    return _list_entries(SCHEDULES)


_LISTERS: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "datasets": _datasets,
    "models": _models,
    "attacks": _attacks,
    "methods": _methods,
    "schedules": _schedules,
}


# ----------------------------------------------------------------------------- main
class _UsageError(ValueError):
    pass


def build_parser() -> argparse.ArgumentParser:
    from robustrain import __version__

    parser = argparse.ArgumentParser(
        prog="robustrain",
        description="Adversarial training and honest robustness evaluation.",
        epilog="Examples:\n"
               "  robustrain train                          # the main job: robust small CNN on cifar10-mini\n"
               "  robustrain train --config configs/cifar10/trades_resnet18.yaml train.epochs=10\n"
               "  robustrain eval runs/pgd_at-small_cnn-cifar10-mini-s0/best.pt --n 500\n"
               "  robustrain list methods",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"robustrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "train", help="train a model (default: the main job, PGD-AT small CNN on cifar10-mini)",
        description="Train with one method and the shared trainer loop. Without arguments: the main job "
                    "(a robust small CNN on cifar10-mini, a few minutes on 2 CPU cores). The run folder "
                    "(out_dir/name) gets config.yaml, metrics.jsonl, last.pt, best.pt and summary.json.",
        epilog="Overrides are dotted key=value pairs, e.g. train.epochs=5 method=trades method.beta=6 "
               "method.eps=8/255 model=resnet18 data.name=cifar10 data.root=/data/cifar10. "
               "See `robustrain list methods|models|datasets|schedules|attacks|configs`.",
    )
    t.add_argument("--config", help="YAML config file, or the name of a preset under configs/")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    t.add_argument("--download", action="store_true",
                   help="fetch missing dataset files from the official source (needs internet); "
                        "same as data.download=true")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="live progress bar (default: when stderr is a terminal)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser(
        "eval", help="evaluate a checkpoint under PGD-20 / CW∞ (fp32, eval mode, EMA weights)",
        description="Robust accuracy of a checkpoint on the test split of its dataset, under the protocol "
                    "of DESIGN.md (stated in the output). Writes JSON next to the checkpoint.",
    )
    e.add_argument("checkpoint", help="a best.pt / last.pt written by `robustrain train`")
    e.add_argument("--attacks", default="natural,pgd20,cw30",
                   help="comma-separated: natural and names from `robustrain list attacks` (default: %(default)s)")
    e.add_argument("--n", type=int, default=None, help="evaluate the first N test images (default: all)")
    e.add_argument("--eps", default=None, help="attack radius, e.g. 8/255 or 0.0314 (default: each attack's own)")
    e.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default: %(default)s)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    e.add_argument("--data-root", default=None, help="dataset folder if it moved since training")
    e.add_argument("--download", action="store_true", help="fetch the test files if missing (needs internet)")
    e.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts (default: 0)")
    e.add_argument("--no-ema", action="store_true", help="evaluate the raw weights even when EMA weights exist")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--out", default=None, help="JSON output path (default: CHECKPOINT-eval.json)")
    e.set_defaults(func=_cmd_eval)

    from robustrain.eval.analyses import ANALYSES, analysis_description

    an = sub.add_parser(
        "analyze", help="the UIAT paper's figures as PNG + JSON series (Figures 1-7, Table 2)",
        description="Analyses behind the papers' figures; each writes a PNG and a JSON file with exactly the "
                    "plotted series (timing: also a markdown table).",
        epilog="Kinds:\n" + "\n".join(f"  {e.name:<14} {e.help}" for e in ANALYSES)
               + "\n\nRun `robustrain analyze KIND --help` for a kind's inputs and options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = an.add_subparsers(dest="kind", metavar="KIND", required=True)
    for entry in ANALYSES:
        k = kinds.add_parser(entry.name, help=entry.help, description=analysis_description(entry.name),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        for a in entry.meta.get("args", ()):
            k.add_argument(*a.flags, **a.options)
        k.add_argument("--out", default=None, metavar="DIR_OR_FILE",
                       help="a folder for KIND.png/.json, or a file name whose suffix (.png/.json/.md) is "
                            "replaced per file (default: the run's folder, or the runs' common parent)")
        k.set_defaults(func=_cmd_analyze)

    rp = sub.add_parser(
        "report", help="a markdown report of one run: config, final table, per-epoch metrics, figures",
        description="Write RUN_DIR/report.md: the resolved config, the final evaluation (summary.json), the "
                    "per-epoch metrics and the run's figures (learning curves; the universal perturbations "
                    "of UIAT methods), linked relative to the report.",
    )
    rp.add_argument("run", metavar="RUN_DIR", help="a run folder written by `robustrain train`")
    rp.add_argument("--out", default=None, help="report path (default: RUN_DIR/report.md); figures go next to it")
    rp.add_argument("--no-figures", action="store_true", help="tables only (no matplotlib needed)")
    rp.set_defaults(func=_cmd_report)

    ls = sub.add_parser("list", help="list registered datasets, models, attacks, methods, schedules or configs")
    ls.add_argument("what", choices=[*_LISTERS, "configs"])
    ls.set_defaults(func=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robustrain`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    from robustrain.config import ConfigError
    from robustrain.data import DatasetFileError
    from robustrain.train.checkpoint import CheckpointError
    from robustrain.train.trainer import NonFiniteLossError, RunExistsError

    try:
        return args.func(args)
    except (ConfigError, _UsageError) as e:
        print(f"robustrain: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (DatasetFileError, CheckpointError, RunExistsError, NonFiniteLossError) as e:
        print(f"robustrain: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("robustrain: interrupted; completed epochs are in last.pt (continue with --resume RUN_DIR)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
