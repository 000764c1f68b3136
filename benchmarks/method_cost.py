"""Training-step cost of every registered method, as a ratio to PGD-AT, measured in one run.

Each method runs full training steps (attack + loss + backward + SGD step) on the same model,
batch and device after a warm-up; methods are timed in interleaved rounds so that a change in
machine load hits them all alike, and the median per-step time is reported.

    python benchmarks/method_cost.py                       # small_cnn, cifar10-mini, batch 128, CPU
    python benchmarks/method_cost.py --model resnet18 --device cuda --steps 20

Prints a markdown table: seconds per step, images per second and the ratio to pgd_at.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from robustrain.data import DeviceLoader, get_dataset_info, load_split
from robustrain.methods import METHODS, MethodContext, create_method
from robustrain.models import create_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--dataset", default="cifar10-mini")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per method per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", default="", help="comma-separated (default: every registered method)")
    ap.add_argument("--epoch", type=float, default=0.9,
                    help="fraction of the run the methods are set to (0.9: after UIAT's T and T')")
    args = ap.parse_args()

    device = torch.device(args.device)
    info = get_dataset_info(args.dataset)
    images, labels = load_split(args.dataset, "train")
    loader = DeviceLoader(images, labels, args.batch_size, augment=False, drop_last=True, device=device)
    loader.set_epoch(0)
    batch = next(iter(loader))
    epochs = 100
    ctx = MethodContext(info.num_classes, tuple(info.image_shape), int(images.shape[0]), epochs)
    names = [m for m in args.methods.split(",") if m] or METHODS.names()
    if "pgd_at" not in names:
        names.insert(0, "pgd_at")

    torch.manual_seed(0)
    model = create_model(args.model, info.num_classes, mean=info.mean, std=info.std).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    methods = {}
    for name in names:
        m = create_method(name, ctx).to(device)
        m.set_epoch(int(args.epoch * epochs))
        methods[name] = m

    def step(method) -> None:
        out = method(model, batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    for m in methods.values():  # warm-up (also fills per-sample buffers where a method has them)
        step(m)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name, m in methods.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(m)
            _sync(device)
            times[name].append((time.perf_counter() - t0) / args.steps)

    base = statistics.median(times["pgd_at"])
    print(f"{args.model}, {args.dataset}, batch {args.batch_size}, {device}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"epoch set to {args.epoch:.0%} of the run")
    print("| method | s/step | img/s | ratio to pgd_at |")
    print("|---|---:|---:|---:|")
    for name in names:
        t = statistics.median(times[name])
        print(f"| {name} | {t:.3f} | {args.batch_size / t:.0f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
