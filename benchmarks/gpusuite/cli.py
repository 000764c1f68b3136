"""The command line of the suite (``python benchmarks/gpu_suite.py ...``): parse, run the
parts in order into the budget, write ``<out>/<device-slug>-<date>.json`` and ``.md``.

Exit status: 0; 1 when a check failed or an item errored (the report is written either way);
2 without CUDA (full mode only).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from .budget import PARTS
from .checks import run_correctness
from .eval_speed import run_eval_speed
from .nccl import nccl_probe
from .report import build_report, markdown
from .result import run_result
from .speed import run_speed
from .suite import Suite

__all__ = ["main", "parse_args", "run_suite"]

#: what each part of :data:`gpusuite.budget.PARTS` runs
RUNNERS: dict[str, Callable[[Suite], None]] = {"correctness": run_correctness, "speed": run_speed,
                                               "result": run_result, "eval_speed": run_eval_speed}


def slug(text: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def parse_args(argv: list[str] | None, description: str | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description or __doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [p for p, _ in PARTS]
    ap.add_argument("--out", default="benchmarks/results", help="folder of the JSON and markdown report")
    ap.add_argument("--budget", type=float, default=480.0, help="wall-clock seconds to plan into (default 480)")
    ap.add_argument("--smoke", action="store_true", help="every part at toy size on the CPU (the test suite runs this)")
    ap.add_argument("--parts", default=",".join(names), help="comma-separated subset of: " + ", ".join(names))
    ap.add_argument("--seeds", type=int, default=0, help="seeds of part 3 (default 3; smoke 1)")
    ap.add_argument("--epochs", type=int, default=0, help="epochs of part 3 (default: as the budget allows)")
    ap.add_argument("--no-smoke-collect", dest="smoke_collect", action="store_false",
                    help="smoke: do not check the CUDA-test selection with pytest --collect-only")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (run folders, checkpoints)")
    ap.add_argument("--nccl-probe", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    bad = set(args.parts.split(",")) - set(names)
    if bad:
        ap.error(f"unknown part(s) {', '.join(sorted(bad))}")
    if args.budget <= 0:
        ap.error("--budget must be > 0")
    return args


def run_suite(suite: Suite) -> dict[str, Any]:
    """Every asked-for part in order, each opened in the budget; an error in one is recorded
    and the next one runs. Returns the report."""
    wanted = set(suite.args.parts.split(","))
    for part, _ in PARTS:
        suite.part = part
        left = suite.budget.open_part(part)
        if part not in wanted:
            suite.skip(part, "not asked for (--parts)")
            continue
        suite.log(f"== {part} ({left:.0f} s planned)")
        try:
            RUNNERS[part](suite)
        except Exception as e:
            suite.error(part, e)
    return build_report(suite)


def write_report(rep: dict[str, Any], out: Path, smoke: bool) -> Path:
    """``<out>/<stem>.json`` and ``.md``; returns ``out/stem``."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{'cpu-smoke' if smoke else slug(rep['device']['name'])}-{rep['date']}"
    Path(f"{stem}.json").write_text(json.dumps(rep, indent=1, default=str) + "\n")
    Path(f"{stem}.md").write_text(markdown(rep))
    return stem


def main(argv: list[str] | None = None, description: str | None = None) -> int:
    args = parse_args(argv, description)
    if args.nccl_probe:
        nccl_probe(args.nccl_probe)
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_suite: no CUDA device here (torch {torch.__version__}): the full suite needs one GPU; "
              "--smoke runs it at toy size on the CPU", file=sys.stderr)
        return 2
    suite = Suite(args)
    try:
        rep = run_suite(suite)
    finally:
        if not args.keep:
            shutil.rmtree(suite.work, ignore_errors=True)
    stem = write_report(rep, Path(args.out), args.smoke)
    s = rep["summary"]
    print(f"gpu_suite: {rep['mode']} run on {rep['device']['name']} in {rep['wall_s']:.0f} s: "
          + ", ".join(f"{v} {k}" for k, v in s.items() if v) + f"; wrote {stem}.json and .md")
    return 1 if s["fail"] or s["error"] else 0
