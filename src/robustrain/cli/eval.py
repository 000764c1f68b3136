"""``robustrain eval CHECKPOINT``: robust accuracy under the DESIGN.md protocol
(:func:`robustrain.eval.evaluate_checkpoint`), one table on stdout and a JSON record."""

from __future__ import annotations

import argparse
import sys

from robustrain.cli._options import device_option, require_writable
from robustrain.utils.errors import UsageError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    e = sub.add_parser(
        "eval", help="evaluate a checkpoint or exported model: natural / PGD-20 / CW∞ / AutoAttack (fp32, eval mode)",
        description="Robust accuracy of a checkpoint (best.pt / last.pt) or of weights written by `robustrain export`, "
                    "on the test split of its dataset, under the protocol of DESIGN.md (the default; stated in the "
                    "output): natural, PGD-20 and CW30 (Linf 8/255, step 2/255, random start) and AutoAttack "
                    "standard (official pyautoattack), fp32, eval mode, EMA weights when the run kept them, a fixed "
                    "seed. Prints one table and AutoAttack's sanity flags, and writes JSON next to the checkpoint.",
        epilog="Attacks: natural, the names of `robustrain list attacks` (eot-pgdSTEPSxSAMPLES, e.g. eot-pgd20x16, "
               "for a randomized model), and AutoAttack: aa (standard), aa-plus, "
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
                   help="a best.pt / last.pt written by `robustrain train`, a run folder (its best.pt, else "
                        "last.pt), or OUT.pt / OUT.safetensors of `robustrain export`")
    e.add_argument("--attacks", default="natural,pgd20,cw30,aa",
                   help="comma-separated attack names (default: %(default)s, the DESIGN.md protocol)")
    e.add_argument("--n", type=int, default=None, help="evaluate the first N test images (default: all; on an image "
                   "folder or shards only these N are decoded)")
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
    e.add_argument("--data-root", default=None,
                   help="dataset folder (or shard pattern) if it moved since training; an export of a model trained "
                        "on imagefolder / webdataset needs it")
    e.add_argument("--download", action="store_true", help="fetch the test files if missing (needs internet)")
    e.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts (default: 0)")
    e.add_argument("--no-ema", action="store_true", help="evaluate the raw weights even when EMA weights exist")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--out", default=None, help="JSON output path (default: CHECKPOINT-eval.json for the default protocol, "
                        "CHECKPOINT-eval-TAG.json for others, e.g. best-eval-natural+pgd20-n1000.json: one "
                        "file per protocol, so evaluations do not overwrite each other)")
    e.set_defaults(func=run)
    return e


def run(args: argparse.Namespace) -> int:
    from robustrain.attacks.autoattack import AutoAttackSpec, require_pyautoattack
    from robustrain.eval import build_eval_attacks, eval_files, evaluate_saved, format_table
    from robustrain.utils.errors import RobustrainError

    names, eps = _attack_names(args), _eps(args)
    try:
        attacks = build_eval_attacks(names, eps=eps, norm=args.norm)
    except KeyError as e:
        raise UsageError(f"--attacks: {e.args[0]}") from None
    except ValueError as e:
        raise UsageError(f"--attacks: {e}") from None
    uses_aa = any(isinstance(a, AutoAttackSpec) for a in attacks.values())
    if uses_aa:
        try:
            require_pyautoattack()
        except ImportError as e:
            raise RobustrainError(str(e)) from None  # exit 1: a missing package
    device = device_option(args.device)
    files = eval_files(args.checkpoint, names, norm=args.norm, eps=eps, n=args.n, out=args.out,
                       aa_state=args.aa_state)
    # every file the evaluation writes must be writable before it starts (not after an hour of AutoAttack)
    require_writable(files.out, "--out")
    if files.aa_state is not None:
        require_writable(files.aa_log, "--out")
        require_writable(files.aa_state / "chunk", "--aa-state")
    args.aa_state_dir = files.aa_state  # named by main()'s Ctrl-C message
    saved = evaluate_saved(files, attacks, norm=args.norm, eps=eps, n=args.n, dataset=args.dataset,
                           data_root=args.data_root, download=args.download, device=device, ema=not args.no_ema,
                           batch_size=args.batch_size, seed=args.seed, aa_verbose=args.aa_verbose,
                           progress=not args.no_progress and sys.stderr.isatty(),
                           notify=lambda line: print(line, file=sys.stderr))
    loaded, res = saved.record.loaded, saved.record.result
    trained = "" if saved.dataset == loaded.dataset else f" (trained on {loaded.dataset})"
    print(f"{files.checkpoint} (epoch {loaded.epoch}, {loaded.weights} weights), {saved.n} {saved.dataset} "
          f"test images{trained}")
    print(format_table({f"{loaded.meta.get('method')} / {loaded.meta.get('model')}": res.accuracy}, names))
    print(f"protocol: {res.protocol}")
    for name, result in res.autoattack.items():
        print(f"AutoAttack flags ({name}): " + ("; ".join(result.flags) if result.flags else "none"))
    if res.flags:
        print(f"AutoAttack raised a flag: check the evaluation with `robustrain audit {files.checkpoint}` "
              "(docs/audit.md)")
    print(f"wrote {saved.out}")
    return 0


def _attack_names(args: argparse.Namespace) -> list[str]:
    """``--attacks`` (with ``--aa-version`` applied), checked with ``--n`` and ``--batch-size``."""
    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if not names:
        raise UsageError("--attacks is empty; give e.g. natural,pgd20,cw30,aa")
    if args.aa_version != "standard":
        if "aa" not in names:
            raise UsageError("--aa-version applies to the attack `aa`; add aa to --attacks")
        names = [f"aa-{args.aa_version}" if a == "aa" else a for a in names]
    if args.n is not None and args.n <= 0:
        raise UsageError("--n must be positive")
    if args.batch_size <= 0:
        raise UsageError("--batch-size must be positive")
    return names


def _eps(args: argparse.Namespace) -> float | None:
    """``--eps`` as a number (None: the norm's protocol radius)."""
    from robustrain.utils.units import parse_number

    eps = parse_number(args.eps, "--eps") if args.eps is not None else None
    if eps is not None and not 0 < eps < float("inf"):
        raise UsageError(f"--eps must be positive, e.g. 8/255 or 0.031, got {args.eps}")
    if eps is not None and args.norm.lower() == "linf" and eps > 1:
        # an Linf radius above 1 is no threat model for [0, 1] pixels (an L2 radius may exceed 1)
        raise UsageError(f"--eps {args.eps} is larger than the whole [0, 1] pixel range; an Linf radius is at "
                         "most 1, e.g. 8/255")
    return eps
