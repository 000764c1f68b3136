"""Decoded images/s of the streaming loader per worker, and the workers one GPU would need.

    python benchmarks/loader_throughput.py                        # a temporary folder of 320 JPEGs
    python benchmarks/loader_throughput.py --root /data/imagenet  # your ImageNet-layout folder
    python benchmarks/loader_throughput.py --step-rate 900        # a PGD-AT step rate you measured

What is timed: the training view of ``StreamingLoader`` (Pillow decode, RandomResizedCrop to
``--image-size`` + flip, collate; ``data.name=imagefolder``) over every image of the folder's
``train`` split, delivered as uint8 batches (``iter_uint8``: the float conversion runs on the GPU
in a real run), with ``--workers`` decoding processes (0 = in this process). Each worker runs one
torch thread, as the trainer's do. Every setting warms up one epoch (workers start, files enter
the page cache), then ``--rounds`` interleaved rounds of one epoch each; the median round is kept.
Wall-clock time: the work happens in other processes, so on a shared machine the numbers carry
its load (the load average is printed).

"Per worker" is images/s divided by the number of decoding processes (1 for ``workers=0``).
The workers one GPU needs are ``ceil(step_rate / per_worker)`` with the per-worker rate of ONE
worker process, where ``step_rate`` is the images/s of the PGD-AT training step of ResNet-50 at
224 px: from ``--step-rate``, else from the latest full report of ``benchmarks/gpu_suite.py`` in
``--results`` (its row ``resnet50 224px ... | pgd_at``), else not printed.

Without ``--root`` the folder is made in a temporary directory: cifar10-mini training images
upscaled (bilinear) to ``--size`` (500x375, about ImageNet's median), with mild Gaussian noise so
that the JPEGs (quality 90) are not unrealistically small; the mean file size is printed.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustrain.data import load_split
from robustrain.data.streaming import StreamingLoader, open_imagefolder
from robustrain.data.streaming.decode import require_pillow

# benchmarks/ is sys.path[0] when run as a script
from _common import machine_line

RESULTS = Path(__file__).resolve().parent / "results"
#: the GPU suite row whose images/s sizes the workers (ResNet-50 at 224 px, the preset's PGD-AT)
STEP_ROW = {"model": "resnet50", "image_px": 224, "method": "pgd_at"}


# ------------------------------------------------------------------ pure parts (tested)
def workers_needed(step_rate: float, per_worker: float) -> int:
    """Decoding workers that keep up with ``step_rate`` images/s when one decodes ``per_worker``.

    Example:
        >>> workers_needed(900.0, 120.0), workers_needed(240.0, 120.0)
        (8, 2)
    """
    if step_rate <= 0 or per_worker <= 0:
        raise ValueError(f"step_rate and per_worker must be > 0, got {step_rate} and {per_worker}")
    return math.ceil(step_rate / per_worker)


def default_workers(cpus: int) -> list[int]:
    """0, then powers of two up to the machine's cores: ``default_workers(2) == [0, 1, 2]``.

    Example:
        >>> default_workers(2), default_workers(12)
        ([0, 1, 2], [0, 1, 2, 4, 8])
    """
    out, w = [0], 1
    while w <= max(cpus, 1):
        out.append(w)
        w *= 2
    return out


def step_rate_from_reports(results: Path, row: dict[str, Any] = STEP_ROW) -> tuple[float, str] | None:
    """``(images/s, where it came from)`` of the GPU suite row ``row`` in the newest full report
    under ``results`` that has it (by file date), or None.

    Example:
        >>> step_rate_from_reports(Path("/nonexistent")) is None
        True
    """
    reports = sorted(glob.glob(str(results / "*.json")), key=os.path.getmtime, reverse=True)
    for path in reports:
        try:
            rep = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rep, dict) or rep.get("mode") != "full":
            continue
        rows = [r for r in rep.get("speed", {}).get("rows", []) if all(r.get(k) == v for k, v in row.items())]
        if rows:
            best = max(rows, key=lambda r: r["img_per_s"])
            return float(best["img_per_s"]), (f"{path}: row '{best['setting']} | {best['method']}' on "
                                               f"{rep.get('device', {}).get('name', '?')}, {rep.get('date', '?')}")
    return None


# ------------------------------------------------------------------ the folder
def make_folder(root: Path, n: int, size: tuple[int, int], seed: int = 0) -> float:
    """An ImageNet-layout ``root/train/<class>/*.JPEG`` of ``n`` upscaled cifar10-mini images;
    returns the mean file size in KB."""
    image = require_pillow()
    x, y = load_split("cifar10-mini", "train")
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        arr = x[i % x.shape[0]].permute(1, 2, 0).numpy()
        big = np.asarray(image.fromarray(arr).resize(size, image.BILINEAR), dtype=np.float32)
        big = np.clip(big + rng.normal(0, 10, big.shape), 0, 255).astype(np.uint8)
        path = root / "train" / f"n{int(y[i % x.shape[0]]):08d}" / f"img_{i:05d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.fromarray(big).save(path, format="JPEG", quality=90)
        total += path.stat().st_size
    return total / n / 1024


# ------------------------------------------------------------------ timing
def epoch_seconds(loader: StreamingLoader, epoch: int) -> tuple[float, int]:
    """Wall-clock seconds of one epoch of uint8 batches, and the images it delivered."""
    loader.set_epoch(epoch)
    n, t0 = 0, time.perf_counter()
    for x, _, _ in loader.iter_uint8():
        n += int(x.shape[0])
    return time.perf_counter() - t0, n


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="an ImageNet-layout folder (its train split is read); default: a temporary one")
    ap.add_argument("--images", type=int, default=320, help="images of the temporary folder (default 320)")
    ap.add_argument("--size", default="500x375", help="WxH of the temporary folder's JPEGs (default 500x375)")
    ap.add_argument("--image-size", type=int, default=224, help="training crop side, data.image_size (default 224)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", help="comma-separated worker counts (default: 0 and powers of two up to the cores)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process (default 1)")
    ap.add_argument("--step-rate", type=float, help="images/s of one GPU's PGD-AT step (default: from --results)")
    ap.add_argument("--results", default=str(RESULTS), help="folder of gpu_suite.py reports (default benchmarks/results)")
    args = ap.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size must be WxH, e.g. 500x375, got {args.size!r}")
    args.size = (w, h)
    try:
        args.workers = ([int(v) for v in args.workers.split(",")] if args.workers
                        else default_workers(os.cpu_count() or 1))
    except ValueError:
        ap.error(f"--workers must be comma-separated integers, e.g. 0,1,2, got {args.workers!r}")
    if min(args.workers) < 0 or args.rounds < 1 or args.images < 1 or (args.step_rate is not None
                                                                       and args.step_rate <= 0):
        ap.error("--workers must be >= 0, --rounds, --images and --step-rate > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        if args.root:
            root, what = Path(args.root), f"{args.root} (train split)"
        else:
            root = Path(tmp)
            kb = make_folder(root, args.images, args.size)
            what = (f"{args.images} JPEGs at {args.size[0]}x{args.size[1]} (cifar10-mini upscaled + noise, "
                    f"quality 90, mean {kb:.0f} KB) in a temporary folder")
        source = open_imagefolder(str(root), "train")
        print(f"# loader throughput: {machine_line(torch.device('cpu'))}")
        print(f"data: {what}; {len(source)} images, {len(source.classes)} classes; training view "
              f"{args.image_size} px (RandomResizedCrop + flip), batch {args.batch_size}, uint8 batches")
        loaders = {w: StreamingLoader(source, args.batch_size, image_size=args.image_size,
                                      resize=args.image_size, workers=w) for w in args.workers}
        for w, loader in loaders.items():  # warm-up epoch: workers start, files enter the page cache
            epoch_seconds(loader, 0)
        times: dict[int, list[float]] = {w: [] for w in loaders}
        images = 0
        for r in range(args.rounds):  # interleaved: a change of machine load hits every setting alike
            for w, loader in loaders.items():
                s, images = epoch_seconds(loader, r + 1)
                times[w].append(s)
            print(f"  round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
        del loaders, loader  # stops the persistent workers

    rate = {w: images / statistics.median(ts) for w, ts in times.items()}
    print(f"\nmedian of {args.rounds} interleaved rounds of one epoch ({images} images) each; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print("\n| workers | images/s | per worker | vs 1 worker | spread |\n|---:|---:|---:|---:|---:|")
    for w, ts in times.items():
        ref = f"{rate[w] / rate[1]:.2f}" if 1 in rate else ""
        spread = (max(ts) - min(ts)) / statistics.median(ts)
        print(f"| {w} | {rate[w]:.0f} | {rate[w] / max(w, 1):.0f} | {ref} | {100 * spread:.0f}% |")
    ones = [w for w in rate if w >= 1]
    one = min(ones) if ones else 0
    per_worker = rate[one] / max(one, 1)
    print(f"\nper worker: {per_worker:.0f} decoded images/s ({'workers=' + str(one)})")
    if args.step_rate is not None:
        step, where = args.step_rate, "--step-rate (given on the command line)"
    else:
        found = step_rate_from_reports(Path(args.results))
        if found is None:
            print(f"workers one GPU needs: not computed: no full gpu_suite.py report with a "
                  f"{STEP_ROW['model']} {STEP_ROW['image_px']}px {STEP_ROW['method']} row in {args.results}; "
                  "pass --step-rate IMAGES_PER_S")
            return 0
        step, where = found
    print(f"PGD-AT step rate, ResNet-50 at 224 px: {step:.0f} images/s, from {where}")
    print(f"workers one GPU needs at this machine's per-worker rate: ceil({step:.0f} / {per_worker:.0f}) = "
          f"{workers_needed(step, per_worker)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
