"""The state of one suite run and its record: :class:`Suite` holds the mode, device, budget
and scratch folder, and writes every item (a check, a timing, a training run) with its status,
seconds, note and details, so the report can list what ran, what was skipped and why.

Items have one of five statuses: ``pass`` / ``fail`` (a check), ``ran`` (a measurement),
``skipped`` (with the reason), ``error`` (an exception, with its traceback: a broken item must
not hide the others).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

import robustrain
from robustrain.data import get_dataset_info

from .budget import FULL, SMOKE, Budget

__all__ = ["BENCH", "REPO", "SRC", "DATASET", "Suite", "sub_env"]

BENCH = Path(__file__).resolve().parents[1]  # benchmarks/: _common and the gpu_suite.py entry script
REPO = BENCH.parent
SRC = Path(robustrain.__file__).resolve().parents[1]  # what subprocesses need on PYTHONPATH
DATASET = "cifar10-mini"


def sub_env() -> dict[str, str]:
    """The environment of a child process: robustrain's source and benchmarks/ importable (the
    pytest plugin is ``-p gpu_suite``, the NCCL probe runs ``gpu_suite.py``)."""
    env = dict(os.environ)
    paths = [str(SRC), str(BENCH)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class Suite:
    """One run of the suite: its settings, budget, items and the numbers each part leaves.

    Args:
        args: the parsed command line (:func:`gpusuite.cli.parse_args`).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.smoke: bool = args.smoke
        self.scale = SMOKE if args.smoke else FULL
        self.device = torch.device("cpu" if args.smoke else "cuda")
        self.cuda = self.device.type == "cuda"
        self.budget = Budget(args.budget)
        self.items: list[dict[str, Any]] = []
        self.commands: list[str] = []
        self.work = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
        self.info = get_dataset_info(DATASET)
        # what the parts leave for the report and for later parts
        self.speed: dict[str, Any] = {}
        self.result: dict[str, Any] = {}
        self.eval_speed: dict[str, Any] = {}
        self.sync_counts: dict[str, int] = {}
        self.part = ""
        self.no_cuda = "skipped: no CUDA" if not torch.cuda.is_available() else "skipped: --smoke runs on the CPU"

    def log(self, msg: str) -> None:
        """One progress line on stderr (through tqdm, so that bars are not torn)."""
        tqdm.write(f"[{self.budget.elapsed():6.1f}s] {msg}", file=sys.stderr)

    def record(self, name: str, status: str, seconds: float = 0.0, note: str = "", **details: Any) -> dict:
        """Add one item of the current part to the report."""
        item = {"part": self.part, "name": name, "status": status, "seconds": round(seconds, 2),
                "note": note, "details": details}
        self.items.append(item)
        self.log(f"{self.part}/{name}: {status}{' - ' + note if note else ''}")
        return item

    def skip(self, name: str, reason: str) -> dict:
        return self.record(name, "skipped", note=reason)

    def error(self, name: str, exc: Exception, seconds: float = 0.0) -> dict:
        """Record an exception as the item's error (with its traceback in the details)."""
        return self.record(name, "error", seconds, f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())

    def fits(self, name: str, estimate: float) -> bool:
        """Whether ``estimate`` seconds fit into the current part; if not, the item is skipped."""
        left = self.budget.left()
        if estimate > left:
            self.skip(name, f"budget: needs ~{estimate:.0f} s, {max(left, 0):.0f} s left in this part")
            return False
        return True

    def check(self, name: str, estimate: float, fn: Callable[[], tuple[str, str, dict]], *,
              cuda_only: bool = False) -> None:
        """Run one check ``fn() -> (status, note, details)`` if it fits; errors are recorded."""
        if cuda_only and not self.cuda:
            self.skip(name, self.no_cuda)
            return
        if not self.fits(name, estimate):
            return
        t0 = time.perf_counter()
        try:
            status, note, details = fn()
        except Exception as e:  # a broken check must not hide the others
            self.error(name, e, time.perf_counter() - t0)
            return
        self.record(name, status, time.perf_counter() - t0, note, **details)

    def run_cmd(self, cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run a child process from the repository root; the command goes into the report."""
        self.commands.append(" ".join(cmd))
        return subprocess.run(cmd, cwd=REPO, env=env or sub_env(), capture_output=True, text=True,
                              timeout=max(timeout, 10))
