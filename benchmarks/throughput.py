"""Images per second of every training method's step and of the evaluation attacks, in one run.

    python benchmarks/throughput.py --model small_cnn --batch-size 128 --device cpu
    python benchmarks/throughput.py --methods pgd_at,uiat --no-eval          # training rows only
    python benchmarks/throughput.py --model resnet18 --device cuda --bf16 --compile --steps 20
    python benchmarks/throughput.py --threads 1 --clock cpu    # CPU time: robust to others' load

What is timed (each after ``--warmup`` untimed calls, in ``--rounds`` interleaved rounds of
``--steps`` calls: a change in machine load hits every row alike; the median round is kept):

* training rows: one FULL step of a method as the trainer runs it (attack + loss + backward +
  SGD step, bf16 autocast with ``--bf16``, the compiled model with ``--compile``, TF32 on
  CUDA) on one fixed batch. ``name@f`` sets the method to fraction ``f`` of a 100-epoch run
  (``set_epoch(int(f * 100))``; default ``--epoch 0.9``): UIAT's momentum starts at T = 0.75,
  the one-off target epoch is T' = 0.8, so ``uiat_oneoff@0.5`` / ``@0.8`` / ``@0.9`` are the
  before / at / after phases. ``fwd/bwd`` counts forward and backward passes through the
  network per step (counted once on the uncompiled model, not timed).
* evaluation rows: ``pgd20`` and ``cw30`` of the library (fp32, eval mode, uncompiled: the
  trainer's evaluation path) and ``torchattacks PGD-20`` (``pip install torchattacks
  --no-deps``; it imports without torchvision) on the same model and batch.

Then the two PGD-20 implementations attack the same test images (``--check-n``) and their
robust accuracies are printed: with ``--checkpoint RUN/best.pt`` on that trained model,
otherwise on the benchmark's model after ``--pretrain-steps`` PGD-AT steps (so that robust
accuracy is not trivially 0). Prints markdown tables and the ratios of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import statistics
import sys
import time

import torch
from torch import nn

from robustrain.artifacts import load_model
from robustrain.attacks import create_attack
from robustrain.data import Batch, DeviceLoader, get_dataset_info, load_split
from robustrain.eval import evaluate_robustness
from robustrain.methods import MethodContext, create_method
from robustrain.models import create_model

# benchmarks/ is sys.path[0] when run as a script
from _common import (Row, count_passes, cycle, machine_line, make_optimizer, parse_method, split_awp, time_rows,
                     train_step_fn)

EPOCHS = 100  # the run length methods are told (their phases are fractions of it)
DEFAULT_METHODS = (
    "pgd_at,trades,uiat,uiat_oneoff@0.5,uiat_oneoff@0.8,uiat_oneoff,"
    "n_fgsm,n_fgsm+uiat@0.5,n_fgsm+uiat@0.8,n_fgsm+uiat,pgd_at+awp,trades+awp"
)
#: (row, reference row, target ratio of their times): the speed targets of issue 6
TARGETS = (
    ("uiat", "pgd_at", 1.30),
    ("uiat_oneoff", "pgd_at", 1.05),
    ("n_fgsm+uiat", "n_fgsm", 1.25),
    ("pgd20", "torchattacks PGD-20", 1.00),
)
TORCHATTACKS = "torchattacks PGD-20"


# --------------------------------------------------------------------------- model
def load_or_pretrain(args, device: torch.device, loader: DeviceLoader) -> tuple[nn.Module, str]:
    """The model every row uses: a checkpoint's, or ``--model`` after a short PGD-AT."""
    if args.checkpoint:
        loaded = load_model(args.checkpoint, device)
        if loaded.dataset != args.dataset:
            raise SystemExit(f"--checkpoint was trained on {loaded.dataset}; pass --dataset {loaded.dataset}")
        name = loaded.spec.model
        return loaded.model.train(), f"{name} from {args.checkpoint} ({loaded.weights} weights)"
    info = get_dataset_info(args.dataset)
    torch.manual_seed(args.seed)
    model = create_model(args.model, info.num_classes, mean=info.mean, std=info.std,
                         in_channels=info.image_shape[0]).to(device).train()
    if args.pretrain_steps:
        ctx = MethodContext(info.num_classes, tuple(info.image_shape), loader.num_ids, EPOCHS)
        method = create_method("pgd_at", ctx).to(device)
        optimizer = make_optimizer(model, device, lr=0.05)
        batches = cycle(loader)
        for _ in range(args.pretrain_steps):
            train_step_fn(method, model, optimizer, next(batches), bf16=False, device=device)()
    return model, f"{args.model} after {args.pretrain_steps} PGD-AT steps (lr 0.05)"


# --------------------------------------------------------------------------- rows
def training_rows(args, model: nn.Module, batch: Batch, device: torch.device) -> list[Row]:
    info = get_dataset_info(args.dataset)
    ctx = MethodContext(info.num_classes, tuple(info.image_shape), args.num_train, EPOCHS)
    # as the trainer with train.compile=true: one compiled wrapper, static shapes
    step_model = torch.compile(model, dynamic=False) if args.compile else model
    optimizer = make_optimizer(model, device)
    specs = [s.strip() for s in args.methods.split(",") if s.strip()]
    if not any(parse_method(s, args.epoch)[0] == "pgd_at" for s in specs):
        specs.insert(0, "pgd_at")
    labels = {}
    for spec in specs:  # the plain name labels the --epoch row; name@f for the others
        name, frac = parse_method(spec, args.epoch)
        labels[spec] = name if frac == args.epoch else f"{name}@{frac:g}"
    rows = []
    for spec in specs:
        name, frac = parse_method(spec, args.epoch)
        base, awp = split_awp(name)  # name+awp: the base method's step with AWP around it
        method = create_method(base, ctx).to(device)
        method.set_epoch(int(frac * EPOCHS))
        fwd, bwd = count_passes(method, model, batch, awp)
        rows.append(Row(labels[spec], "train",
                        train_step_fn(method, step_model, optimizer, batch, bf16=args.bf16, device=device, awp=awp),
                        reference=name.split("+")[0] if "+" in name else None,  # a plug-in's base
                        passes=f"{fwd}/{bwd}", epoch=int(frac * EPOCHS)))
    return rows


def eval_rows(model: nn.Module, batch: Batch) -> list[Row]:
    """pgd20 / cw30 as the evaluation runs them (fp32, eval mode) and torchattacks' PGD-20."""
    rows = []
    for name, steps in (("pgd20", 20), ("cw30", 30)):
        attack = create_attack(name)
        rows.append(Row(name, "eval", lambda a=attack: a(model, batch.x, batch.y), passes=f"{steps}/{steps}",
                        reference=TORCHATTACKS if name == "pgd20" else None))
    ta = torchattacks_pgd20(model)
    if ta is not None:
        rows.append(Row(TORCHATTACKS, "eval", lambda: ta(batch.x, batch.y), passes="20/20"))
    return rows


def torchattacks_pgd20(model: nn.Module):
    try:
        import torchattacks
    except ImportError:
        print("torchattacks is not installed (pip install torchattacks --no-deps): its row is skipped",
              file=sys.stderr)
        return None
    return torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=20, random_start=True)


# --------------------------------------------------------------------------- report
def report(rows: list[Row], times: dict[str, list[float]], batch_size: int) -> str:
    med = {label: statistics.median(ts) for label, ts in times.items()}
    base = med.get("pgd_at")
    lines = ["| task | epoch | fwd/bwd | ms/batch | img/s | vs pgd_at | vs reference | spread |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        t = med[row.label]
        spread = (max(times[row.label]) - min(times[row.label])) / t
        vs_pgd = f"{t / base:.2f}" if base and row.kind == "train" else ""
        vs_ref = f"{t / med[row.reference]:.2f} ({row.reference})" if row.reference in med else ""
        epoch = f"{row.epoch}/{EPOCHS}" if row.epoch is not None else "eval"
        lines.append(f"| {row.label} | {epoch} | {row.passes} | {1000 * t:.0f} | {batch_size / t:.0f} | "
                     f"{vs_pgd} | {vs_ref} | {100 * spread:.0f}% |")
    return "\n".join(lines)


#: one-off methods over a 100-epoch run: 80 epochs before T' (@0.5 row), 1 at T' (@0.8), 19 after
RUN_PHASES = ((0.5, 80), (0.8, 1), (None, 19))


def target_lines(times: dict[str, list[float]]) -> list[str]:
    med = {label: statistics.median(ts) for label, ts in times.items()}
    out = []
    for name, ref in (("uiat_oneoff", "pgd_at"), ("n_fgsm+uiat", "n_fgsm")):
        phases = [name if f is None else f"{name}@{f:g}" for f, _ in RUN_PHASES]
        if ref in med and all(p in med for p in phases):
            mean = sum(med[p] * w for p, (_, w) in zip(phases, RUN_PHASES)) / sum(w for _, w in RUN_PHASES)
            out.append(f"{name} / {ref} averaged over a 100-epoch run (80 epochs before T', 1 at, 19 after) "
                       f"= {mean / med[ref]:.2f}")
    for row, ref, target in TARGETS:
        if row in med and ref in med:
            ratio = med[row] / med[ref]
            out.append(f"{row} / {ref} = {ratio:.2f} (target <= {target:.2f}): "
                       + ("met" if ratio <= target else "NOT met"))
    return out


def robust_check(model: nn.Module, args, device: torch.device) -> str:
    """Robust accuracy of our PGD-20 and torchattacks' on the same test images."""
    images, labels = load_split(args.dataset, "test")
    n = min(args.check_n, int(images.shape[0]))
    attacks = {"natural": None, "pgd20": create_attack("pgd20")}
    ta = torchattacks_pgd20(model)
    if ta is not None:
        attacks[TORCHATTACKS] = lambda m, x, y: ta(x, y)
    acc = evaluate_robustness(model, images[:n], labels[:n], attacks, batch_size=args.batch_size,
                              device=device, seed=args.seed, progress=False).accuracy
    return f"accuracy on the first {n} {args.dataset} test images: " + ", ".join(
        f"{name} {100 * a:.2f}%" for name, a in acc.items())


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--dataset", default="cifar10-mini")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default=DEFAULT_METHODS,
                    help="comma-separated method names, name@f = at fraction f of the run (pgd_at always added)")
    ap.add_argument("--epoch", type=float, default=0.9, help="run fraction of rows without @ (default 0.9)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the training steps (eval stays fp32)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model for the training steps")
    ap.add_argument("--steps", type=int, default=2, help="timed calls per row per round")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per row first (compile happens here)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    ap.add_argument("--no-eval", action="store_true", help="training rows only (no attacks, no accuracy check)")
    ap.add_argument("--checkpoint", default=None, help="a run's best.pt: use its trained model")
    ap.add_argument("--pretrain-steps", type=int, default=30,
                    help="PGD-AT steps on a fresh model before timing when no --checkpoint (default 30)")
    ap.add_argument("--check-n", type=int, default=512, help="test images of the PGD-20 accuracy check")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0 = torch's default)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time; cpu: this process's CPU time (CPU device only; with "
                         "--threads 1 it measures work, not waiting, on a machine others load)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in ("batch_size", "steps", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.clock == "cpu" and args.device != "cpu":
        ap.error("--clock cpu measures CPU time: use it with --device cpu")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731 - progress to stderr
    images, labels = load_split(args.dataset, "train")
    loader = DeviceLoader(images, labels, args.batch_size, augment=False, drop_last=True, seed=args.seed,
                          device=device)
    args.num_train = loader.num_ids
    loader.set_epoch(0)
    batch = next(iter(loader))
    load_before = os.getloadavg()[0]
    model, model_desc = load_or_pretrain(args, device, loader)
    check = None
    if not args.no_eval:
        check = robust_check(copy.deepcopy(model), args, device)  # before timing trains it further
    rows = training_rows(args, model, batch, device)
    if not args.no_eval:
        rows += eval_rows(model, batch)
    log(f"timing {len(rows)} rows: {args.warmup} warm-up + {args.rounds} rounds x {args.steps} calls")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = time_rows(rows, steps=args.steps, warmup=args.warmup, rounds=args.rounds, device=device,
                      clock=clock, log=log)

    print(f"{model_desc}; {args.dataset}, batch {args.batch_size}, {device}, "
          f"train {'bf16' if args.bf16 else 'fp32'}{', compiled' if args.compile else ''}, eval fp32")
    print(f"{machine_line(device)}; {datetime.date.today()}; load average {load_before:.2f} -> "
          f"{os.getloadavg()[0]:.2f}; {args.clock}-clock median of {args.rounds} interleaved rounds x "
          f"{args.steps} calls")
    print(f"command: python benchmarks/throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print()
    print(report(rows, times, args.batch_size))
    print()
    for line in target_lines(times):
        print(line)
    if check:
        print(check)


if __name__ == "__main__":
    main()
