"""Command-line interface: ``robustrain train | eval | export | analyze | report | reproduce | list``.

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

from robustrain.config.load import CONFIG_DIR

__all__ = ["main", "CONFIG_DIR"]


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
    import shutil

    from robustrain.config import parse_float
    from robustrain.data import load_split
    from robustrain.attacks.autoattack import AutoAttackSpec, default_eps, require_pyautoattack
    from robustrain.eval.loading import check_dataset, load_model
    from robustrain.eval.robust import build_eval_attacks, evaluate_robustness, format_table
    from robustrain.export import write_json_atomic
    from robustrain.train.trainer import resolve_device

    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if not names:
        raise _UsageError("--attacks is empty; give e.g. natural,pgd20,cw30,aa")
    if args.aa_version != "standard":
        if "aa" not in names:
            raise _UsageError("--aa-version applies to the attack `aa`; add aa to --attacks")
        names = [f"aa-{args.aa_version}" if a == "aa" else a for a in names]
    if args.n is not None and args.n <= 0:
        raise _UsageError("--n must be positive")
    if args.batch_size <= 0:
        raise _UsageError("--batch-size must be positive")
    eps = parse_float(args.eps, "--eps") if args.eps is not None else None
    if eps is not None and not 0 < eps < float("inf"):
        raise _UsageError(f"--eps must be positive, e.g. 8/255 or 0.031, got {args.eps}")
    try:
        attacks = build_eval_attacks(names, eps=eps, norm=args.norm)
    except KeyError as e:
        raise _UsageError(f"--attacks: {e.args[0]}") from None
    except ValueError as e:
        raise _UsageError(f"--attacks: {e}") from None
    uses_aa = any(isinstance(a, AutoAttackSpec) for a in attacks.values())
    if uses_aa:
        try:
            require_pyautoattack()
        except ImportError as e:
            print(f"robustrain: error: {e}", file=sys.stderr)
            return EXIT_FAILURE

    device = resolve_device(args.device)
    loaded = load_model(args.checkpoint, device, ema=not args.no_ema)
    dataset = args.dataset or loaded.dataset
    try:
        check_dataset(loaded, dataset)
    except ValueError as e:
        raise _UsageError(f"--dataset {dataset}: {e}" if args.dataset else str(e)) from None
    root = args.data_root or (loaded.config.data.root if loaded.config is not None and dataset == loaded.dataset
                              else None)
    x, y = load_split(dataset, "test", root=root, download=args.download)
    n = x.shape[0] if args.n is None else min(args.n, x.shape[0])
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else ckpt.with_name(ckpt.stem + "-eval.json")
    # an interrupted AutoAttack continues from its state; the default state is removed once done
    aa_state = Path(args.aa_state) if args.aa_state else out.with_name(out.stem + ".aa-state")
    aa_log = out.with_name(out.stem + "-autoattack.log")
    if uses_aa:
        print(f"AutoAttack: state in {aa_state} (rerun the same command to continue an interrupted run), "
              f"log in {aa_log}", file=sys.stderr)
    try:
        res = evaluate_robustness(loaded.model, x[:n], y[:n], attacks, batch_size=args.batch_size, device=device,
                                  seed=args.seed, progress=not args.no_progress and sys.stderr.isatty(),
                                  aa_state=aa_state if uses_aa else None, aa_log=aa_log if uses_aa else None,
                                  aa_verbose=args.aa_verbose)
    except KeyboardInterrupt:
        kept = f"AutoAttack's finished chunks are kept in {aa_state}: " if uses_aa else ""
        print(f"robustrain: interrupted; {kept}rerun the same command to evaluate again", file=sys.stderr)
        return 130
    label = f"{loaded.meta.get('method')} / {loaded.meta.get('model')}"
    trained = "" if dataset == loaded.dataset else f" (trained on {loaded.dataset})"
    print(f"{args.checkpoint} (epoch {loaded.epoch}, {loaded.weights} weights), {n} {dataset} test images{trained}")
    print(format_table({label: res.accuracy}, names))
    print(f"protocol: {res.protocol}")
    for name, result in res.autoattack.items():
        print(f"AutoAttack flags ({name}): " + ("; ".join(result.flags) if result.flags else "none"))
    record = {
        "checkpoint": str(args.checkpoint), "source": loaded.meta.get("source"), "epoch": loaded.epoch,
        "weights": loaded.weights, "method": loaded.meta.get("method"), "model": loaded.meta.get("model"),
        "dataset": dataset, "trained_on": loaded.dataset, "n": n, "seed": args.seed,
        "norm": args.norm, "eps": eps if eps is not None else default_eps(args.norm),
        "attacks": names, "protocol": res.protocol, "accuracy": res.accuracy,
        "autoattack_flags": {k: list(r.flags) for k, r in res.autoattack.items()},
        "autoattack": {k: {"accuracy": r.accuracy, "clean_accuracy": r.clean_accuracy, "flags": list(r.flags),
                           "settings": r.settings, "resumed_chunks": r.resumed_chunks, "log": r.log_path}
                       for k, r in res.autoattack.items()},
    }
    write_json_atomic(record, out)
    if uses_aa and not args.aa_state and aa_state.is_dir():
        shutil.rmtree(aa_state, ignore_errors=True)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> int:
    from robustrain.export import export_model
    from robustrain.train.checkpoint import CheckpointError

    try:
        weights, card_path = export_model(args.checkpoint, args.out, ema=not args.no_ema, name=args.name)
    except CheckpointError:
        raise
    except ValueError as e:
        raise _UsageError(str(e)) from None
    card = json.loads(card_path.read_text())
    accs = ", ".join(f"{k} {v}%" for k, v in (("clean", card["clean_acc"]), ("AutoAttack", card["autoattack_acc"]))
                     if v is not None) or "no evaluation of these weights found beside the checkpoint"
    print(f"wrote {weights} ({card['weights']} weights, epoch {card['epoch']}; read with "
          f"torch.load(..., weights_only=True))")
    print(f"wrote {card_path} ({card['architecture']}, {card['dataset']}, {card['threat_model']} eps {card['eps']}; "
          f"{accs})")
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


# ------------------------------------------------------------------------ reproduce
def _cmd_reproduce(args: argparse.Namespace) -> int:
    from robustrain.reproduce import (
        ReproduceError,
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
        raise _UsageError("reproduce needs a TABLE (see `robustrain reproduce --list`)")
    split = lambda items: tuple(p.strip() for item in items or () for p in item.split(",") if p.strip())  # noqa: E731
    try:
        options = ReproduceOptions(
            scale=args.scale, seeds=args.seeds, only=split(args.only), out=args.out, sets=tuple(args.set or ()),
            attacks=split([args.attacks]) if args.attacks else None, eval_n=args.eval_n, aa_n=args.aa_n,
            eval_batch_size=args.eval_batch_size, data_root=args.data_root,
            extra_data=parse_extra_data(args.extra_data))
        plan = build_plan(args.table, options)
        if args.dry_run:
            print(format_plan(plan))
            return 0
        result = run_plan(plan, progress=args.progress)
    except ReproduceError as e:
        raise _UsageError(str(e)) from None
    except KeyboardInterrupt:
        print("robustrain: interrupted; finished runs, checkpoints and evaluations are kept: rerun the same "
              "command to continue", file=sys.stderr)
        return 130
    print(render_markdown(result), end="")
    return EXIT_FAILURE if result["failed"] else 0


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
    from robustrain.schedules import SCHEDULES

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
               "  robustrain export runs/pgd_at-small_cnn-cifar10-mini-s0/best.pt model.pt\n"
               "  robustrain analyze curves runs/pgd_at-small_cnn-cifar10-mini-s0\n"
               "  robustrain report runs/pgd_at-small_cnn-cifar10-mini-s0\n"
               "  robustrain reproduce table6 --dry-run\n"
               "  robustrain list methods",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"robustrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
        "eval", help="evaluate a checkpoint or exported model: natural / PGD-20 / CW∞ / AutoAttack (fp32, eval mode)",
        description="Robust accuracy of a checkpoint (best.pt / last.pt) or of weights written by `robustrain export`, "
                    "on the test split of its dataset, under the protocol of DESIGN.md (the default; stated in the "
                    "output): natural, PGD-20 and CW30 (Linf 8/255, step 2/255, random start) and AutoAttack "
                    "standard (official pyautoattack), fp32, eval mode, EMA weights when the run kept them, a fixed "
                    "seed. Prints one table and AutoAttack's sanity flags, and writes JSON next to the checkpoint.",
        epilog="Attacks: natural, the names of `robustrain list attacks`, and AutoAttack: aa (standard), aa-plus, "
               "aa-rand or a custom list aa:ATTACK+ATTACK (apgd-ce, apgd-dlr, fab, square, apgd-t, fab-t). "
               "An interrupted AutoAttack continues when the same command is run again. Examples:\n"
               "  robustrain eval runs/uiat-small_cnn-cifar10-mini-s0/best.pt\n"
               "  robustrain eval best.pt --attacks natural,pgd20,cw30 --n 1000        # quick, no AutoAttack\n"
               "  robustrain eval best.pt --attacks natural,aa:apgd-ce+apgd-t --eps 4/255\n"
               "  robustrain eval best.pt --norm L2 --attacks natural,pgd20,aa           # L2, eps 0.5\n"
               "  robustrain eval model.pt --dataset cifar10 --data-root /data         # an exported model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("checkpoint",
                   help="a best.pt / last.pt written by `robustrain train`, or OUT.pt of `robustrain export`")
    e.add_argument("--attacks", default="natural,pgd20,cw30,aa",
                   help="comma-separated attack names (default: %(default)s, the DESIGN.md protocol)")
    e.add_argument("--n", type=int, default=None, help="evaluate the first N test images (default: all)")
    e.add_argument("--eps", default=None,
                   help="threat-model radius, e.g. 8/255 or 0.031 (default: 8/255 for Linf, 0.5 for L2)")
    e.add_argument("--norm", default="Linf", choices=["Linf", "L2"],
                   help="threat model of PGD and AutoAttack (default: %(default)s; CW30 and FGSM are Linf only)")
    e.add_argument("--aa-version", default="standard", choices=["standard", "plus", "rand"],
                   help="AutoAttack version run by the attack `aa` (default: %(default)s)")
    e.add_argument("--aa-state", default=None, metavar="DIR",
                   help="keep AutoAttack's resume state in DIR (default: OUT.aa-state, removed when finished)")
    e.add_argument("--aa-verbose", action="store_true", help="also print AutoAttack's own log")
    e.add_argument("--dataset", default=None,
                   help="evaluate on this dataset's test split (default: the one it was trained on); the class "
                        "count and image shape must match, the model keeps its own normalisation")
    e.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default: %(default)s)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    e.add_argument("--data-root", default=None, help="dataset folder if it moved since training")
    e.add_argument("--download", action="store_true", help="fetch the test files if missing (needs internet)")
    e.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts (default: 0)")
    e.add_argument("--no-ema", action="store_true", help="evaluate the raw weights even when EMA weights exist")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--out", default=None, help="JSON output path (default: CHECKPOINT-eval.json)")
    e.set_defaults(func=_cmd_eval)

    ex = sub.add_parser(
        "export", help="write a checkpoint's weights as a plain state_dict plus a RobustBench-style JSON card",
        description="Write OUT.pt, the state_dict of the whole [0,1]-input model (normalisation included; EMA "
                    "weights when the run kept them), readable with torch.load(OUT.pt, weights_only=True), and "
                    "OUT.json: architecture and its parameters, dataset, class count, mean/std, threat model, eps, "
                    "method, epoch, and the accuracies of these weights found beside the checkpoint (summary.json, "
                    "CHECKPOINT-eval.json), with RobustBench's model_info field names. `robustrain eval OUT.pt` "
                    "reads it back.",
        epilog="Example:\n  robustrain export runs/uiat-small_cnn-cifar10-mini-s0/best.pt models/uiat_small_cnn.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("checkpoint", help="a best.pt / last.pt written by `robustrain train`")
    ex.add_argument("out", help="weights file to write, e.g. model.pt (the card goes to model.json)")
    ex.add_argument("--no-ema", action="store_true", help="export the raw weights even when EMA weights exist")
    ex.add_argument("--name", default=None, help="model name in the card (default: METHOD-MODEL-DATASET)")
    ex.set_defaults(func=_cmd_export)

    from robustrain.eval.analyses import ANALYSES, analysis_description

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

    rr = sub.add_parser(
        "reproduce", help="re-run a paper table (UIAT Tables 1-6, the LRAT cross-attack table) against its numbers",
        description="Train every row of TABLE (one YAML config per row under configs/) for each seed, evaluate "
                    "it under the table's attacks and write OUT/TABLE/results.md and results.json: our mean ± std "
                    "over seeds, the paper's number and the difference. Finished runs are reused and interrupted "
                    "ones resumed, so rerunning the same command continues a long reproduction.",
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
                    help="test images for natural / PGD-20 / CW (default: all; 0 = all)")
    rr.add_argument("--aa-n", type=int, default=None, metavar="N",
                    help="test images for AutoAttack (default: all at full scale, 256 at mini; 0 = all)")
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
    rr.set_defaults(func=_cmd_reproduce)

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
