"""``robustrain audit CHECKPOINT``: is this robustness number real? Six checks for gradient
masking and attack failure, PASS / WARN / FAIL each and one verdict
(:func:`robustrain.eval.audit.run_audit`), written as markdown, JSON and a figure.

The transfer attack of check 3 needs a surrogate (``--surrogate``): the audit does not train
one, so that it stays an evaluation (train one with ``robustrain train method=standard ...``).
The exit code is 0 whatever the verdict (1 / 2 for errors, as every command); the verdict is
printed as ``verdict PASS|WARN|FAIL (...)`` before the written paths, and is ``verdict`` in the JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustrain.cli._options import device_option, require_writable
from robustrain.utils.errors import DatasetFileError, UsageError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    a = sub.add_parser(
        "audit", help="audit a model's robustness evaluation for gradient masking: six checks, one verdict",
        description="Run the known checks of a robustness evaluation (Athalye et al. 2018; Carlini et al. 2019; "
                    "Pintor et al. 2022) on a checkpoint, run folder or exported model, fp32 and eval mode, on the "
                    "first N test images: (1) accuracy vs eps falls and reaches ~0 unbounded, (2) more PGD steps "
                    "and restarts do not keep lowering accuracy, (3) white-box beats black-box (Square) and "
                    "transfer attacks, (4) CE / CW / DLR losses agree and PGD is not far above AutoAttack, "
                    "(5) input gradients are non-zero and finite, (6) AutoAttack's own flags. Each check is PASS, "
                    "WARN or FAIL with its numbers; the verdict is the worst. A random model (two passes of the "
                    "same input disagree) gets PGD rerun as EOT-PGD: 'reported X%, adaptive Y%'. Writes OUT.md, "
                    "OUT.json and OUT.png. See docs/audit.md for the thresholds.",
        epilog="Examples:\n"
               "  robustrain audit runs/pgd_at-small_cnn-cifar10-mini-s0            # a few minutes on 2 CPU cores\n"
               "  robustrain audit best.pt --quick --n 64                          # a cheaper subset\n"
               "  robustrain audit best.pt --eps 4/255 --surrogate runs/standard-small_cnn-cifar10-mini-s0/best.pt\n"
               "  robustrain audit model.pt --out audits/model --device cuda        # an exported model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("checkpoint",
                   help="a best.pt / last.pt written by `robustrain train`, a run folder (its best.pt, else "
                        "last.pt), or OUT.pt / OUT.safetensors of `robustrain export`")
    a.add_argument("--n", type=int, default=256, help="audit the first N test images (default: %(default)s; on an "
                   "image folder or shards only these are decoded)")
    a.add_argument("--eps", default="8/255", help="Linf radius under audit, e.g. 8/255 (default: %(default)s)")
    a.add_argument("--quick", action="store_true",
                   help="a cheaper subset: fewer radii, steps, restarts, APGD iterations and Square queries")
    a.add_argument("--surrogate", default=None, metavar="PATH",
                   help="a model of the same dataset (checkpoint, run folder or export; e.g. the same architecture "
                        "trained with `standard`) to craft transfer attacks on; without it check 3 uses Square only")
    a.add_argument("--no-autoattack", action="store_true",
                   help="skip APGD and Square (checks 3, 4 and 6 then WARN)")
    a.add_argument("--batch-size", type=int, default=256, help="attack batch size (default: %(default)s)")
    a.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    a.add_argument("--data-root", default=None, help="dataset folder if it moved since training")
    a.add_argument("--download", action="store_true", help="fetch the test files if missing (needs internet)")
    a.add_argument("--seed", type=int, default=0, help="seed of every random start (default: 0)")
    a.add_argument("--no-ema", action="store_true", help="audit the raw weights even when EMA weights exist")
    a.add_argument("--no-figure", action="store_true", help="do not draw OUT.png")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.add_argument("--out", default=None, metavar="OUT",
                   help="output path without suffix: writes OUT.md, OUT.json, OUT.png "
                        "(default: CHECKPOINT-audit beside the checkpoint)")
    a.set_defaults(func=run)
    return a


def _out_base(out: str | None, ckpt: Path) -> Path:
    if out is None:
        return ckpt.with_name(ckpt.stem + "-audit")
    base = Path(out)
    return base.with_suffix("") if base.suffix.lower() in (".md", ".json", ".png") else base


def run(args: argparse.Namespace) -> int:
    from robustrain.artifacts import check_dataset, eval_data, load_model
    from robustrain.artifacts.run_dir import existing_checkpoint
    from robustrain.data import load_eval_split
    from robustrain.eval.audit import AuditSettings, format_text, run_audit, write_report
    from robustrain.utils.units import format_eps, parse_number

    if args.n <= 0:
        raise UsageError("--n must be positive")
    if args.batch_size <= 0:
        raise UsageError("--batch-size must be positive")
    eps = parse_number(args.eps, "--eps")
    if not 0 < eps <= 1:
        raise UsageError(f"--eps must be in (0, 1] (an Linf radius in [0, 1] pixels), e.g. 8/255, got {args.eps}")
    device = device_option(args.device)
    ckpt = existing_checkpoint(args.checkpoint)
    surrogate_path = existing_checkpoint(args.surrogate, "--surrogate") if args.surrogate else None
    base = _out_base(args.out, ckpt)
    for suffix in (".md", ".json"):
        require_writable(base.with_name(base.name + suffix), "--out")

    info = load_model(ckpt, device, ema=not args.no_ema)
    # the saved config's test data (a streaming run's folder and evaluation view too); --data-root: it moved
    data = eval_data(info, data_root=args.data_root, download=args.download)
    surrogate = None
    if surrogate_path is not None:
        sur = load_model(surrogate_path, device)
        try:
            check_dataset(sur, data)
        except DatasetFileError:  # missing files: exit 1, not a usage error
            raise
        except ValueError as e:
            raise UsageError(f"--surrogate {surrogate_path} cannot attack {info.dataset}: {e}") from None
        surrogate = sur.model
    x, y, _ = load_eval_split(data, args.n)  # a streaming dataset: only these n images are decoded
    n = int(x.shape[0])
    settings = AuditSettings.for_mode(args.quick, eps=eps, seed=args.seed, batch_size=args.batch_size)
    print(f"auditing {ckpt} ({info.meta.get('method')} / {info.meta.get('model')}, {info.weights} weights) on "
          f"{n} {info.dataset} test images, Linf eps={format_eps(eps)}{', --quick' if args.quick else ''}",
          file=sys.stderr)
    report = run_audit(info.model, x[:n], y[:n], settings, surrogate=surrogate,
                       use_autoattack=not args.no_autoattack, device=device,
                       progress=not args.no_progress and sys.stderr.isatty())
    report.meta.update({"checkpoint": str(ckpt), "method": info.meta.get("method"), "model": info.meta.get("model"),
                        "dataset": info.dataset, "weights": info.weights, "epoch": info.epoch,
                        "surrogate": str(surrogate_path) if surrogate_path else None})
    paths = write_report(report, base, figure=not args.no_figure)
    print(format_text(report))
    written = [str(p) for p in paths.values() if p is not None]
    print(f"wrote {', '.join(written)}" + (f" ({report.meta['figure_note']})" if "figure_note" in report.meta else ""))
    return 0
