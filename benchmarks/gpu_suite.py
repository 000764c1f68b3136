"""The GPU proof (issue 14): ONE prepared command that checks correctness, measures speed and
trains a small multi-seed result on one CUDA device, within a wall-clock budget.

    python benchmarks/gpu_suite.py --out benchmarks/results/                 # one GPU, 480 s
    python benchmarks/gpu_suite.py --budget 330 --out benchmarks/results/    # a shorter slot
    python benchmarks/gpu_suite.py --smoke --out /tmp/gs                     # CPU, toy size (tests)

Writes ``<out>/<device-slug>-<date>.json`` (everything: commands, device, torch, what ran, what
was skipped and why, every number) and ``.md`` (the tables). Parts, in order:

1. correctness: the CUDA-only tests of tests/ (those whose ``skipif`` reason names CUDA, or
   marked ``cuda``); evaluation really runs without TF32 (clean logits and PGD-20 under
   ``fp32_eval`` against an fp64 copy of the model; TF32 shown as the contrast); bf16 keeps
   input gradients non-zero (fp16 tried too, without loss scaling); compiled and eager training
   steps agree; no host sync inside a training step (``torch.cuda.set_sync_debug_mode``); a
   one-process ``torchrun`` run of the trainer ends with the same weights as the plain run,
   plus an NCCL probe (process group, all-reduce, DDP step) under torchrun.
2. speed: full training steps of every method, interleaved rounds, medians, images/s and
   seconds per 50,000-image epoch, ratios to ``pgd_at``, for several settings (model, batch,
   fp32/bf16, channels_last, compile) in priority order; where a target is missed, a profile
   (top kernels, data-loading share, host syncs). Targets are reported, never asserted.
3. result: ResNet-18 on cifar10-mini, seeds x (pgd_at, trades, uiat, uiat_oneoff, uiat with
   detach_target=false) for as many epochs as the budget allows, natural / PGD-20 / CW30 on
   all 1,017 test images, mean +- std and paired differences to pgd_at (95% t-interval over
   seeds), plus one paired fp32 vs bf16 run.
4. evaluation speed: PGD-20, CW30 and standard AutoAttack seconds per 1,000 images on the
   part-3 pgd_at model, and torchattacks' PGD-20 when it is importable (not a dependency).

A planner gives every part a share of the budget; items that would not fit are skipped and
listed with the reason. ``--smoke`` runs every part at toy size on the CPU (small_cnn width 4,
2 batches, 1 seed; compile with Dynamo's ``eager`` backend; AutoAttack with cut iterations) so
the test suite keeps this file from rotting; the CUDA-only checks say "skipped: no CUDA" there
(on a CUDA machine the smoke run stays on the CPU and says so).
Without ``--smoke`` on a machine without CUDA it stops with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when imported as a module
from _common import (Row, count_passes, machine_line, make_optimizer, parse_method, split_awp, sync,  # noqa: E402
                     time_rows, train_step_fn)

import robustrain  # noqa: E402
from robustrain.attacks import create_attack  # noqa: E402
from robustrain.config import load_config  # noqa: E402
from robustrain.data import DeviceLoader, get_dataset_info, load_split  # noqa: E402
from robustrain.eval import AutoAttackSpec, evaluate_attacks, load_model  # noqa: E402
from robustrain.methods import MethodContext, create_method  # noqa: E402
from robustrain.models import create_model  # noqa: E402
from robustrain.train import fit  # noqa: E402
from robustrain.train.loop import COMPILE_OPTIONS  # noqa: E402
from robustrain.utils.runtime import fast_math, fp32_eval, no_tf32, seed_everything  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = Path(robustrain.__file__).resolve().parents[1]  # what subprocesses need on PYTHONPATH
DATASET = "cifar10-mini"
EPOCHS = 100  # the run length methods are told in the speed rows (phases are fractions of it)
EPOCH_IMAGES = 50_000
#: speed rows: name@f = the method at fraction f of a 100-epoch run (T = 0.75, T' = 0.8)
METHOD_ROWS = ("pgd_at", "trades", "uiat", "uiat_oneoff@0.5", "uiat_oneoff@0.9", "n_fgsm",
               "n_fgsm+uiat@0.5", "n_fgsm+uiat@0.9", "pgd_at+awp", "trades+awp")
#: (row, seconds per 50,000-image epoch on one H100) and (row, reference, ratio): issue 14
EPOCH_TARGETS = (("uiat", 10.0), ("pgd_at", 8.0))
RATIO_TARGETS = (("uiat", "pgd_at", 1.30),)
#: part-3 runs: label -> (mini preset, extra overrides)
RESULT_RUNS = {
    "pgd_at": ("pgd_at", []),
    "trades": ("trades", []),
    "uiat": ("uiat", []),
    "uiat_oneoff": ("uiat_oneoff", []),
    "uiat detach_target=false": ("uiat", ["method.detach_target=false"]),
}
METRICS = ("natural", "pgd20", "cw30")
#: (part, share of the budget); a part may also use what earlier parts left
PARTS = (("correctness", 0.22), ("speed", 0.28), ("result", 0.38), ("eval_speed", 0.09))
RESERVE = 0.03  # of the budget, kept for writing the report
#: two-sided 95% Student t quantiles by degrees of freedom
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


# --------------------------------------------------------------------------- pytest plugin
# `pytest -p gpu_suite` with GPU_SUITE_CUDA_ONLY=1 keeps only the tests that skip without CUDA:
# marked `cuda`, or with a `skipif` whose reason names CUDA and whose (boolean) condition is
# true exactly when CUDA is missing (`not torch.cuda.is_available()`; tests that skip WHEN CUDA
# is there, such as "CUDA is not available" error-message tests, are left out)
def _needs_cuda(item) -> bool:
    if item.get_closest_marker("cuda") is not None:
        return True
    missing = not torch.cuda.is_available()
    for m in item.iter_markers("skipif"):
        cond = m.args[0] if m.args else m.kwargs.get("condition")
        if "cuda" in str(m.kwargs.get("reason", "")).lower() and isinstance(cond, bool) and cond == missing:
            return True
    return False


def pytest_collection_modifyitems(config, items):  # pragma: no cover - runs inside pytest
    if os.environ.get("GPU_SUITE_CUDA_ONLY") != "1":
        return
    keep = [it for it in items if _needs_cuda(it)]
    dropped = [it for it in items if not _needs_cuda(it)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


# --------------------------------------------------------------------------- scale
@dataclass(frozen=True)
class Scale:
    """Sizes of one mode: the GPU run, or the CPU smoke run (toy size)."""

    model: str
    model_kwargs: dict
    wrn: str
    wrn_kwargs: dict
    batches: tuple[int, int]
    check_n: int  # images of the precision checks
    seeds: int
    compile_backend: str
    eval_n: int  # test images of the result's final table (0 = all)
    result_overrides: tuple[str, ...]
    aa_options: dict = field(default_factory=dict)


FULL = Scale("resnet18", {}, "wrn28_10", {}, (128, 512), 16, 3, "inductor", 0,
             ("eval.n=256",))
SMOKE = Scale("small_cnn", {"width": 4}, "small_cnn", {"width": 4}, (8, 16), 4, 1, "eager", 16,
              # synthetic data (512 training images): 2 batches of 256 (cifar10-mini would need
              # batches of 2,542 for 2 batches, ~10 s per run on one CPU thread)
              ("data.name=synthetic", "model=small_cnn", "model.width=4", "data.batch_size=256", "data.drop_last=true",
               "method.steps=2", "eval.n=16", "guard.n=16"),
              {"apgd.n_iter": 2, "apgd_targeted.n_iter": 2, "apgd_targeted.n_target_classes": 1,
               "fab.n_iter": 2, "fab.n_target_classes": 1, "square.n_queries": 5})


# --------------------------------------------------------------------------- small helpers
def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def t_interval(values: list[float]) -> dict[str, Any]:
    """Mean, sample std and the 95% t-interval of the mean (None where n < 2)."""
    n = len(values)
    mean = statistics.fmean(values) if n else None
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "ci95": None}
    sd = statistics.stdev(values)
    df = n - 1
    t = T975.get(df) or T975[max(k for k in T975 if k <= df)]
    half = t * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "std": sd, "ci95": [mean - half, mean + half]}


def state_diff(a: dict, b: dict) -> dict[str, float]:
    """Largest absolute difference of two state dicts' float tensors, and relative to max |a|."""
    diff, scale = 0.0, 0.0
    for k, v in a.items():
        if torch.is_tensor(v) and v.is_floating_point():
            diff = max(diff, float((v.double() - b[k].double()).abs().max()))
            scale = max(scale, float(v.double().abs().max()))
    return {"max_abs": diff, "max_rel": diff / scale if scale else 0.0}


def sub_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(SRC), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class Budget:
    """Wall-clock plan: part k may run until start + budget * (share_1 + ... + share_k)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.t0 = seconds, time.perf_counter()
        self.deadline = self.t0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def open_part(self, name: str) -> float:
        done = 0.0
        for part, share in PARTS:
            done += share
            if part == name:
                break
        self.deadline = self.t0 + self.seconds * min(done, 1 - RESERVE)
        return self.left()

    def left(self) -> float:
        return self.deadline - time.perf_counter()


# --------------------------------------------------------------------------- the suite
class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.smoke = args.smoke
        self.scale = SMOKE if args.smoke else FULL
        self.device = torch.device("cpu" if args.smoke else "cuda")
        self.cuda = self.device.type == "cuda"
        self.budget = Budget(args.budget)
        self.items: list[dict[str, Any]] = []
        self.commands: list[str] = []
        self.work = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
        self.info = get_dataset_info(DATASET)
        self.speed: dict[str, Any] = {}
        self.result: dict[str, Any] = {}
        self.eval_speed: dict[str, Any] = {}
        self.sync_counts: dict[str, int] = {}
        self.part = ""
        self.no_cuda = "skipped: no CUDA" if not torch.cuda.is_available() else "skipped: --smoke runs on the CPU"

    # ----------------------------------------------------------------- bookkeeping
    def log(self, msg: str) -> None:
        tqdm.write(f"[{self.budget.elapsed():6.1f}s] {msg}", file=sys.stderr)

    def record(self, name: str, status: str, seconds: float = 0.0, note: str = "", **details: Any) -> dict:
        item = {"part": self.part, "name": name, "status": status, "seconds": round(seconds, 2),
                "note": note, "details": details}
        self.items.append(item)
        self.log(f"{self.part}/{name}: {status}{' - ' + note if note else ''}")
        return item

    def skip(self, name: str, reason: str) -> dict:
        return self.record(name, "skipped", note=reason)

    def fits(self, name: str, estimate: float) -> bool:
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
            status, note, details = "error", f"{type(e).__name__}: {e}", {"traceback": traceback.format_exc()}
        self.record(name, status, time.perf_counter() - t0, note, **details)

    def run_cmd(self, cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
        self.commands.append(" ".join(cmd))
        return subprocess.run(cmd, cwd=REPO, env=env or sub_env(), capture_output=True, text=True,
                              timeout=max(timeout, 10))

    # ----------------------------------------------------------------- common objects
    def new_model(self, name: str | None = None, kwargs: dict | None = None, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        name = name or self.scale.model
        kw = self.scale.model_kwargs if kwargs is None else kwargs
        return create_model(name, self.info.num_classes, mean=self.info.mean, std=self.info.std,
                            in_channels=self.info.image_shape[0], **kw).to(self.device)

    def batch(self, batch_size: int, seed: int = 0):
        images, labels = load_split(DATASET, "train")
        loader = DeviceLoader(images, labels, batch_size, augment=False, drop_last=True, seed=seed,
                              device=self.device)
        loader.set_epoch(0)
        return next(iter(loader)), loader.num_ids

    def ctx(self, num_ids: int) -> MethodContext:
        return MethodContext(self.info.num_classes, tuple(self.info.image_shape), num_ids, EPOCHS)

    def compile(self, model: nn.Module) -> nn.Module:
        # Dynamo's recompile limit (8) counts the graphs of every model instance sharing one
        # forward code object: the suite compiles several models in one process (the trainer
        # compiles one), so raise it, or later settings would silently fall back to eager
        import torch._dynamo

        for key, value in (("recompile_limit", 64), ("cache_size_limit", 64), ("accumulated_recompile_limit", 1024)):
            if hasattr(torch._dynamo.config, key):
                setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), value))
        return torch.compile(model, backend=self.scale.compile_backend, **COMPILE_OPTIONS)

    def test_images(self, n: int):
        x, y = load_split(DATASET, "test")
        n = n or int(x.shape[0])
        return x[:n], y[:n]

    # ================================================================= part 1: correctness
    def part_correctness(self) -> None:
        self.check("eval without TF32 (fp32_eval vs fp64)", 15, self.check_fp32_eval)
        self.check("bf16 input gradients", 10, self.check_bf16_grads)
        self.check("no host sync in a training step", 25, self.check_no_sync, cuda_only=True)
        self.check("torchrun world size 1 = plain run", 75, self.check_torchrun, cuda_only=True)
        self.check("NCCL probe under torchrun", 25, self.check_nccl, cuda_only=True)
        self.check_cuda_tests()
        self.check("compiled vs eager training step", 4 if self.smoke else 100, self.check_compile)

    def check_cuda_tests(self) -> None:
        name = "CUDA-only tests (pytest)"
        env = {**sub_env(), "GPU_SUITE_CUDA_ONLY": "1"}
        base = [sys.executable, "-m", "pytest", "-p", "gpu_suite", "-p", "no:cacheprovider", "-q"]
        try:
            import pytest  # noqa: F401
        except ImportError:
            self.skip(name, "pytest is not installed here")
            return
        if not self.cuda:
            # the selection itself is exercised (one file) so that it cannot rot unseen
            if self.args.smoke_collect:
                proc = self.run_cmd(base + ["--collect-only", "tests/test_data.py"], 120, env)
                ids = [ln for ln in proc.stdout.splitlines() if "::" in ln]
                self.record(name, "skipped", note=f"{self.no_cuda} (selection checked on tests/test_data.py: "
                            f"{len(ids)} CUDA test(s) found)", selected=ids, rc=proc.returncode)
            else:
                self.skip(name, self.no_cuda)
            return
        if not self.fits(name, 60):
            return
        t0 = time.perf_counter()
        proc = self.run_cmd(base + ["-rs", "tests"], self.budget.left(), env)
        tail = proc.stdout.strip().splitlines()[-15:]
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", tail[-1] if tail else "")}
        status = "pass" if proc.returncode == 0 else "fail"
        self.record(name, status, time.perf_counter() - t0, tail[-1] if tail else "no output",
                    counts=counts, rc=proc.returncode, output_tail=tail + proc.stderr.strip().splitlines()[-5:])

    def check_fp32_eval(self):
        """Clean logits and PGD-20 of the fp32 model under fp32_eval vs an fp64 copy."""
        model = self.new_model()
        self._pretrain(model, steps=2 if self.smoke else 20)
        x8, y = self.test_images(self.scale.check_n)
        x = x8.to(self.device).float() / 255
        y = y.to(self.device)
        ref = copy.deepcopy(model).double()
        with fp32_eval(ref), torch.no_grad():
            logits64 = ref(x.double())
        with fp32_eval(model), torch.no_grad():
            logits32 = model(x)
        scale = float(logits64.abs().max())
        err_eval = float((logits32.double() - logits64).abs().max()) / scale
        with fast_math(self.device), torch.no_grad():  # the training context: TF32 on CUDA
            was = model.training
            model.eval()
            err_tf32 = float((model(x).double() - logits64).abs().max()) / scale
            model.train(was)
        attack = create_attack("pgd20", start="zero")  # no random start: both see the same path
        with fp32_eval(model):
            adv32 = attack(model, x, y)
        with fp32_eval(ref):
            adv64 = attack(ref, x.double(), y)
        with fp32_eval(ref), torch.no_grad():
            p32, p64 = ref(adv32.double()).argmax(1), ref(adv64).argmax(1)
        same_px = float(((adv32.double() - adv64).abs() <= 1e-6).float().mean())
        details = {"images": int(x.shape[0]), "clean_logits_rel_err_fp32_eval": err_eval,
                   "clean_logits_rel_err_tf32": err_tf32, "pgd20_pixels_equal": same_px,
                   "pgd20_robust_acc_fp32": float((p32 == y).float().mean()),
                   "pgd20_robust_acc_fp64": float((p64 == y).float().mean()),
                   "pgd20_prediction_agreement": float((p32 == p64).float().mean())}
        ok = err_eval < 1e-4
        note = (f"logits rel. err {err_eval:.1e} under fp32_eval vs {err_tf32:.1e} with TF32 on; PGD-20 "
                f"pixels equal {100 * same_px:.1f}%, predictions agree {100 * details['pgd20_prediction_agreement']:.0f}%")
        if self.cuda and err_tf32 < 10 * err_eval:
            note += " (TF32 error not larger: this GPU may not use TF32, the contrast shows nothing)"
        if not self.cuda:
            note += " (CPU: no TF32 exists here, the code path only)"
        return ("pass" if ok else "fail"), note, details

    def check_bf16_grads(self):
        """Fraction of exactly-zero input-gradient entries under fp32, bf16 and fp16 autocast."""
        model = self.new_model()
        batch, _ = self.batch(self.scale.batches[0])
        x0 = batch.x.float() / 255 if batch.x.dtype == torch.uint8 else batch.x
        fractions: dict[str, Any] = {}
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16 (no loss scaling)", torch.float16)):
            x = x0.clone().requires_grad_(True)
            try:
                with fp32_eval(model) if dtype is None else contextlib.nullcontext():
                    model.eval()  # the attacks' BatchNorm mode
                    with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                        loss = F.cross_entropy(model(x), batch.y)
                    (g,) = torch.autograd.grad(loss.float(), x)
                fractions[name] = float((g == 0).float().mean())
                fractions[name + " non-finite"] = float((~torch.isfinite(g)).float().mean())
            except RuntimeError as e:
                fractions[name] = f"not run: {str(e).splitlines()[0]}"
        model.train()
        # the library's own training attack under bf16 autocast: how many pixels does it move?
        attack = create_attack("pgd")
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            adv = attack(model, x0, batch.y)
        fractions["pgd10 under bf16: pixels moved"] = float(((adv - x0).abs() > 0).float().mean())
        ok = isinstance(fractions["bf16"], float) and fractions["bf16"] <= fractions["fp32"] + 0.01
        fp16 = fractions["fp16 (no loss scaling)"]
        note = (f"zero input-gradient entries: fp32 {100 * fractions['fp32']:.2f}%, bf16 {100 * fractions['bf16']:.2f}%, "
                + (f"fp16 {100 * fp16:.2f}% (tried, without loss scaling)" if isinstance(fp16, float) else f"fp16 {fp16}"))
        return ("pass" if ok else "fail"), note, {"batch": int(x0.shape[0]), **fractions}

    def check_compile(self):
        """One pgd_at training step, eager vs compiled, same seed, strict fp32 (no TF32)."""
        batch, num_ids = self.batch(self.scale.batches[0])
        eager = self.new_model()
        compiled_base = copy.deepcopy(eager)
        compiled = self.compile(compiled_base)
        out = {}
        for label, net, base in (("eager", eager, eager), ("compiled", compiled, compiled_base)):
            method = create_method("pgd_at", self.ctx(num_ids)).to(self.device)
            opt = make_optimizer(base, self.device)
            losses = []
            with no_tf32():
                for step in range(2):  # the second step reuses the graphs of the first
                    seed_everything(step)
                    res = method(net, batch)
                    opt.zero_grad(set_to_none=True)
                    res.loss.backward()
                    opt.step()
                    losses.append(float(res.loss.detach()))
            out[label] = (losses, base.state_dict())
        loss_rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(out["eager"][0], out["compiled"][0]))
        diff = state_diff(out["eager"][1], out["compiled"][1])
        ok = loss_rel < 1e-3 and diff["max_rel"] < 1e-3
        backend = self.scale.compile_backend
        note = (f"2 pgd_at steps, backend {backend}: loss rel. diff {loss_rel:.1e}, weights max rel. diff "
                f"{diff['max_rel']:.1e}" + (" (smoke: Dynamo tracing only, no Inductor code)" if backend == "eager" else ""))
        return ("pass" if ok else "fail"), note, {"losses_eager": out["eager"][0], "losses_compiled": out["compiled"][0],
                                                  "loss_max_rel_diff": loss_rel, "weights": diff, "backend": backend}

    def check_no_sync(self):
        """Implicit host syncs per training step of every method (after warm-up)."""
        batch, num_ids = self.batch(self.scale.batches[0])
        model = self.new_model()
        counts, first = {}, {}
        for spec in METHOD_ROWS:
            name, frac = parse_method(spec, 0.9)
            base, awp = split_awp(name)
            method = create_method(base, self.ctx(num_ids)).to(self.device)
            method.set_epoch(int(frac * EPOCHS))
            step = train_step_fn(method, model, make_optimizer(model, self.device), batch, bf16=False,
                                 device=self.device, awp=awp)
            step()  # warm-up: cuDNN autotuning, lazy state
            sync(self.device)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    step()
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            syncs = [w for w in caught if "synchroniz" in str(w.message)]
            counts[spec] = len(syncs)
            if syncs:
                first[spec] = f"{syncs[0].filename}:{syncs[0].lineno}: {str(syncs[0].message)[:120]}"
        self.sync_counts = counts
        ok = not any(counts.values())
        note = "syncs per step: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        return ("pass" if ok else "fail"), note, {"syncs_per_step": counts, "first_sync": first,
                                                  "caveat": "set_sync_debug_mode sees implicit syncs "
                                                            "(.item(), nonzero, DtoH copies), not every stall"}

    def _trainer_overrides(self, name: str) -> list[str]:
        return ["data.name=cifar10-mini", f"model={self.scale.model}", "method=pgd_at", "train.epochs=1",
                "train.device=cuda", "eval.n=64", "eval.final_n=64", "eval.final_attacks=natural",
                "guard.enabled=false", f"out_dir={self.work / 'torchrun'}", f"name={name}"]

    def check_torchrun(self):
        """The trainer twice plainly (the noise floor) and once under torchrun (world size 1)."""
        train = ["-m", "robustrain", "train", "--no-progress"]
        runs = {"plain": [sys.executable, *train], "plain-again": [sys.executable, *train],
                "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                             "-m", "robustrain", "train", "--no-progress"]}
        states, out = {}, {}
        for name, cmd in runs.items():
            proc = self.run_cmd(cmd + self._trainer_overrides(name), max(self.budget.left(), 30))
            out[name] = {"rc": proc.returncode, "tail": (proc.stdout + proc.stderr).strip().splitlines()[-5:]}
            if proc.returncode != 0:
                return "fail", f"{name} run failed (rc {proc.returncode})", out
            ckpt = torch.load(self.work / "torchrun" / name / "last.pt", map_location="cpu", weights_only=True)
            states[name] = ckpt["model"]
        floor = state_diff(states["plain"], states["plain-again"])
        diff = state_diff(states["plain"], states["torchrun"])
        ok = diff["max_abs"] <= max(10 * floor["max_abs"], 1e-6)
        note = (f"1 epoch pgd_at {self.scale.model}: torchrun vs plain max |dw| {diff['max_abs']:.1e} "
                f"(plain vs plain {floor['max_abs']:.1e}); NB world size 1 creates no process group in "
                "robustrain (init_distributed), so NCCL itself is checked by the probe")
        return ("pass" if ok else "fail"), note, {"torchrun_vs_plain": diff, "plain_vs_plain": floor, "runs": out}

    def check_nccl(self):
        res_file = self.work / "nccl.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               str(HERE / "gpu_suite.py"), "--nccl-probe", str(res_file)]
        proc = self.run_cmd(cmd, 120)
        if proc.returncode != 0 or not res_file.exists():
            return "fail", f"probe failed (rc {proc.returncode})", {"tail": (proc.stdout + proc.stderr).splitlines()[-8:]}
        res = json.loads(res_file.read_text())
        ok = res["all_reduce_ok"] and res["ddp_grad_max_abs_diff"] == 0.0
        return ("pass" if ok else "fail"), (f"backend {res['backend']}, all_reduce ok {res['all_reduce_ok']}, DDP vs "
                                            f"plain grad diff {res['ddp_grad_max_abs_diff']:.1e} (world size 1)"), res

    # ================================================================= part 2: speed
    def settings(self) -> list[dict[str, Any]]:
        """Speed settings in priority order (the planner drops from the end)."""
        small, large = self.scale.batches
        m, w = self.scale.model, self.scale.wrn
        few = ("pgd_at", "uiat")
        out = [
            dict(model=m, batch=small, bf16=False, cl=False, compile=False, methods=METHOD_ROWS),
            dict(model=m, batch=small, bf16=True, cl=False, compile=False, methods=METHOD_ROWS),
            dict(model=m, batch=large, bf16=True, cl=False, compile=False, methods=METHOD_ROWS),
            dict(model=m, batch=small, bf16=True, cl=True, compile=False, methods=few),
            dict(model=m, batch=small, bf16=False, cl=False, compile=True, methods=few),
            dict(model=m, batch=large, bf16=False, cl=False, compile=False, methods=few),
            dict(model=m, batch=large, bf16=True, cl=True, compile=True, methods=few),
            dict(model=w, batch=small, bf16=True, cl=False, compile=False, methods=few, wrn=True),
        ]
        for s in out:
            name = "wrn28_10" if s.get("wrn") else "resnet18"
            shown = name if not self.smoke else f"{name}~{s['model']}"
            s["label"] = (f"{shown} b{s['batch']} {'bf16' if s['bf16'] else 'fp32'}"
                          f"{' cl' if s['cl'] else ''}{' compiled' if s['compile'] else ''}")
        return out

    def part_speed(self) -> None:
        rows: list[Row] = []
        meta: dict[str, dict] = {}
        timed_settings = []
        warm_est: dict[str, float] = {}
        for s in tqdm(self.settings(), desc="speed: warm-up", leave=False, disable=None):
            est = (60 if s["compile"] and not self.smoke else 5) if not self.smoke else 1
            if not self.fits(f"speed setting {s['label']}", est):
                continue
            try:
                t0 = time.perf_counter()
                kwargs = self.scale.wrn_kwargs if s.get("wrn") else self.scale.model_kwargs
                model = self.new_model(s["model"], kwargs)
                batch, num_ids = self.batch(s["batch"])
                if s["cl"]:
                    model = model.to(memory_format=torch.channels_last)
                    batch = batch._replace(x=batch.x.contiguous(memory_format=torch.channels_last))
                step_model = self.compile(model) if s["compile"] else model
                opt = make_optimizer(model, self.device)
                new_rows = []
                for spec in s["methods"]:
                    name, frac = parse_method(spec, 0.9)
                    base, awp = split_awp(name)
                    method = create_method(base, self.ctx(num_ids)).to(self.device)
                    method.set_epoch(int(frac * EPOCHS))
                    fwd, bwd = count_passes(method, model, batch, awp)
                    label = f"{s['label']} | {spec}"
                    row = Row(label, "train", train_step_fn(method, step_model, opt, batch, bf16=s["bf16"],
                                                            device=self.device, awp=awp), passes=f"{fwd}/{bwd}",
                              epoch=int(frac * EPOCHS))
                    for _ in range(2):  # compile / autotune, then one call as the estimate
                        t1 = time.perf_counter()
                        row.run()
                        sync(self.device)
                    warm_est[label] = time.perf_counter() - t1
                    meta[label] = {"setting": s["label"], "method": spec, "batch": s["batch"]}
                    new_rows.append(row)
                rows += new_rows
                timed_settings.append(s)
                self.record(f"speed setting {s['label']}", "ran", time.perf_counter() - t0,
                            f"{len(new_rows)} rows warmed up")
            except Exception as e:
                self.record(f"speed setting {s['label']}", "error", note=f"{type(e).__name__}: {e}",
                            traceback=traceback.format_exc())
        if not rows:
            return
        # plan rounds x steps into what is left (keep 35% of it for the profile and slack)
        per_round = sum(warm_est[r.label] for r in rows)
        left = self.budget.left() * 0.65
        steps = 1 if self.smoke else max(1, min(10, int(left / (5 * per_round))))
        rounds = 1 if self.smoke else max(1, min(5, int(left / (steps * per_round))))
        while not self.smoke and len(rows) > 2 and rounds * steps * per_round > left:
            dropped = rows.pop()
            per_round -= warm_est[dropped.label]
            self.skip(f"speed row {dropped.label}", "budget: dropped before timing")
        self.log(f"speed: timing {len(rows)} rows, {rounds} rounds x {steps} steps (~{rounds * steps * per_round:.0f} s)")
        bar = tqdm(total=rounds, desc="speed: rounds", leave=False, disable=None)

        def log(msg: str) -> None:
            if msg.strip().startswith("round"):
                bar.update(1)

        t0 = time.perf_counter()
        times = time_rows(rows, steps=steps, warmup=0, rounds=rounds, device=self.device, log=log)
        bar.close()
        table = []
        for row in rows:
            med = statistics.median(times[row.label])
            m = meta[row.label]
            table.append({**m, "passes": row.passes, "run_epoch": row.epoch, "ms_per_step": 1000 * med,
                          "img_per_s": m["batch"] / med, "s_per_50k_epoch": EPOCH_IMAGES * med / m["batch"],
                          "spread": (max(times[row.label]) - min(times[row.label])) / med})
        by_setting: dict[str, dict] = {}
        for r in table:
            by_setting.setdefault(r["setting"], {})[r["method"]] = r
        for rs in by_setting.values():
            base = rs.get("pgd_at")
            for r in rs.values():
                r["vs_pgd_at"] = r["ms_per_step"] / base["ms_per_step"] if base else None
        self.speed = {"rows": table, "rounds": rounds, "steps": steps, "settings": [s["label"] for s in timed_settings]}
        self.record("speed timing", "ran", time.perf_counter() - t0, f"{len(rows)} rows, median of {rounds} "
                    f"interleaved rounds x {steps} steps")
        self.speed["targets"] = self.targets(table)
        missed = [t for t in self.speed["targets"] if t["met"] is False]
        if missed or self.smoke:
            self.profile(missed, rows, meta)

    def targets(self, table: list[dict]) -> list[dict]:
        """Each target against the fastest measured setting of the main model at the small batch."""
        small = self.scale.batches[0]
        cand = [r for r in table if r["batch"] == small and not r["setting"].startswith("wrn")]
        out = []

        def best(method):
            rs = [r for r in cand if r["method"] == method]
            return min(rs, key=lambda r: r["s_per_50k_epoch"]) if rs else None

        for method, target in EPOCH_TARGETS:
            r = best(method)
            if r:
                out.append({"target": f"{method} <= {target:g} s per 50,000-image epoch", "method": method,
                            "value": r["s_per_50k_epoch"], "setting": r["setting"], "met": r["s_per_50k_epoch"] <= target})
        for method, ref, target in RATIO_TARGETS:
            ratios = [(r["vs_pgd_at"], r["setting"]) for r in cand if r["method"] == method and r.get("vs_pgd_at")]
            if ratios:
                ratio, setting = min(ratios)
                out.append({"target": f"{method} / {ref} <= {target:.2f}", "method": method, "value": ratio,
                            "setting": setting, "met": ratio <= target})
        return out

    def profile(self, missed: list[dict], rows: list[Row], meta: dict) -> None:
        """Where the time of a missed target's step goes: top kernels, data loading, host syncs."""
        wanted = [(t["method"], t["setting"]) for t in missed] or [("pgd_at", self.speed["settings"][0])]
        if self.smoke:  # the code path once
            wanted = wanted[:1]
        for method, setting in dict.fromkeys(wanted):
            label = f"{setting} | {method}"
            row = next((r for r in rows if r.label == label), None)
            name = f"profile {label}"
            if row is None or not self.fits(name, 3 if self.smoke else 20):
                continue
            t0 = time.perf_counter()
            try:
                from torch.profiler import ProfilerActivity, profile
                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
                with profile(activities=acts) as prof:
                    for _ in range(1 if self.smoke else 3):
                        row.run()
                    sync(self.device)
                key = "self_device_time_total" if self.cuda else "self_cpu_time_total"
                avgs = prof.key_averages()
                total = sum(getattr(e, key, 0) for e in avgs) or 1
                top = sorted(avgs, key=lambda e: getattr(e, key, 0), reverse=True)[:10]
                kernels = [{"name": e.key[:90], "self_ms": getattr(e, key, 0) / 1000, "share": getattr(e, key, 0) / total,
                            "calls": e.count} for e in top]
                # data loading: the trainer's loader (augmented) per batch vs the step
                m = meta[label]
                images, labels = load_split(DATASET, "train")
                loader = DeviceLoader(images, labels, m["batch"], augment=True, drop_last=True, seed=0, device=self.device)
                loader.set_epoch(0)
                it, n = iter(loader), min(5, len(loader))
                sync(self.device)
                t1 = time.perf_counter()
                for _ in range(n):
                    next(it)
                sync(self.device)
                load_s = (time.perf_counter() - t1) / n
                step_s = next(r["ms_per_step"] for r in self.speed["rows"] if r["setting"] == setting
                              and r["method"] == method) / 1000
                self.record(name, "ran", time.perf_counter() - t0,
                            f"top: {kernels[0]['name']} {100 * kernels[0]['share']:.0f}%; data loading "
                            f"{100 * load_s / (load_s + step_s):.1f}% of a step; host syncs per step: "
                            f"{self.sync_counts.get(method, 'not measured')}",
                            top_kernels=kernels, load_s_per_batch=load_s, step_s=step_s,
                            host_syncs_per_step=self.sync_counts.get(method))
            except Exception as e:
                self.record(name, "error", time.perf_counter() - t0, f"{type(e).__name__}: {e}",
                            traceback=traceback.format_exc())

    # ================================================================= part 3: result
    def result_cfg(self, label: str, seed: int, epochs: int, bf16: bool = False):
        preset, extra = RESULT_RUNS[label]
        path = Path(robustrain.__file__).parent / "configs" / "mini" / f"{preset}_small_cnn.yaml"
        name = f"{slug(label)}-s{seed}{'-bf16' if bf16 else ''}"
        overrides = [*extra, f"seed={seed}", f"train.epochs={epochs}", f"train.device={self.device.type}",
                     f"eval.every={epochs}", f"eval.final_n={self.scale.eval_n}", f"out_dir={self.work / 'result'}",
                     f"name={name}"]
        overrides += list(self.scale.result_overrides) if self.smoke else ["model=resnet18", *self.scale.result_overrides]
        if bf16:
            overrides.append("train.bf16=true")
        return load_config(path, overrides), ["robustrain", "train", "--config", f"configs/mini/{preset}_small_cnn.yaml",
                                               *overrides]

    def part_result(self) -> None:
        seeds = list(range(self.args.seeds or self.scale.seeds))
        labels = list(RESULT_RUNS)
        plan = [(lab, s, False) for s in seeds for lab in labels] + [("pgd_at", 0, True)]
        # per-epoch cost: from the speed rows when measured (40 steps of 128 images), else a guess
        step = {r["method"]: r["ms_per_step"] / 1000 for r in self.speed.get("rows", [])
                if r["setting"] == (self.speed.get("settings") or [""])[0]}
        steps_per_epoch = 5085 // 128
        per_epoch = {lab: steps_per_epoch * step.get(RESULT_RUNS[lab][0], step.get("uiat", 0.05)) * 1.15
                     for lab in labels} if step else {lab: 2.0 for lab in labels}
        overhead = 1.0 if self.smoke else 6.0  # build, cuDNN autotune, final table (1,017 x 52 passes), files
        left = self.budget.left()
        if self.args.epochs:
            epochs = self.args.epochs
        elif self.smoke:
            epochs = 1
        else:
            cost_one = sum(per_epoch[lab] for lab, _, _ in plan)
            epochs = int((left - overhead * len(plan)) / cost_one) if cost_one else 1
            epochs = max(1, min(epochs, 30))
        self.result = {"epochs": epochs, "seeds": seeds, "runs": {}, "plan_note":
                       f"{len(plan)} runs planned into {left:.0f} s: {epochs} epoch(s) each"}
        self.log(f"result: {self.result['plan_note']}")
        bar = tqdm(plan, desc="result: runs", leave=False, disable=None)
        for lab, seed, bf16 in bar:
            key = f"{lab} s{seed}{' bf16' if bf16 else ''}"
            est = overhead + epochs * per_epoch[lab] * (1.5 if bf16 and not self.cuda else 1)
            if not self.fits(f"train {key}", est):
                continue
            t0 = time.perf_counter()
            try:
                cfg, cmd = self.result_cfg(lab, seed, epochs, bf16)
                self.commands.append("in-process fit(cfg) of: " + " ".join(cmd))
                summary = fit(cfg, overwrite=True, progress=False, verbose=False)
                self.result["runs"][key] = {"label": lab, "seed": seed, "bf16": bf16, "final": summary["final"],
                                            "n_test": summary["n_test"], "train_time_s": summary["train_time_s"],
                                            "run_dir": summary["run_dir"]}
                acc = summary["final"]
                self.record(f"train {key}", "ran", time.perf_counter() - t0,
                            ", ".join(f"{k} {100 * v:.2f}" for k, v in acc.items()))
            except Exception as e:
                self.record(f"train {key}", "error", time.perf_counter() - t0, f"{type(e).__name__}: {e}",
                            traceback=traceback.format_exc())
        bar.close()
        self.result["stats"] = self.result_stats()

    def result_stats(self) -> dict[str, Any]:
        runs = [r for r in self.result["runs"].values() if not r["bf16"]]
        stats: dict[str, Any] = {"methods": {}, "paired_to_pgd_at": {}, "fp32_vs_bf16": None}
        base = {r["seed"]: r["final"] for r in runs if r["label"] == "pgd_at"}
        for lab in RESULT_RUNS:
            rs = [r for r in runs if r["label"] == lab]
            if not rs:
                continue
            stats["methods"][lab] = {m: t_interval([r["final"][m] for r in rs if m in r["final"]]) for m in METRICS}
            if lab != "pgd_at":
                pairs = [r for r in rs if r["seed"] in base]
                stats["paired_to_pgd_at"][lab] = {m: t_interval([r["final"][m] - base[r["seed"]][m] for r in pairs])
                                                  for m in METRICS}
        b = next((r for r in self.result["runs"].values() if r["bf16"]), None)
        if b is not None and b["seed"] in base:
            stats["fp32_vs_bf16"] = {"seed": b["seed"], "fp32": base[b["seed"]], "bf16": b["final"],
                                     "bf16_minus_fp32": {m: b["final"][m] - base[b["seed"]][m] for m in METRICS}}
        return stats

    # ================================================================= part 4: evaluation speed
    def part_eval_speed(self) -> None:
        run = self.result.get("runs", {}).get("pgd_at s0")
        try:
            if run is not None:
                model = load_model(Path(run["run_dir"]) / "best.pt", self.device).model
                source = f"part-3 pgd_at seed 0 ({self.result['epochs']} epochs)"
            else:
                model = self.new_model()
                self._pretrain(model, 2 if self.smoke else 40)
                source = "a fresh model after a few PGD-AT steps (part 3 did not run)"
        except Exception as e:
            self.record("evaluation model", "error", note=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
            return
        x, y = self.test_images(self.scale.eval_n)
        n = int(x.shape[0])
        self.eval_speed = {"model": source, "n": n, "rows": {}}
        evaluate_attacks(model, x[:8], y[:8], ["pgd20"], device=self.device, progress=False)  # warm-up
        for name in ("natural", "pgd20", "cw30"):
            if not self.fits(f"eval {name}", 2 if self.smoke else 15):
                continue
            sync(self.device)
            t0 = time.perf_counter()
            acc = evaluate_attacks(model, x, y, [name], device=self.device, progress=False)[name]
            sync(self.device)
            sec = time.perf_counter() - t0
            self.eval_speed["rows"][name] = {"n": n, "seconds": sec, "s_per_1000": 1000 * sec / n, "accuracy": acc}
            self.record(f"eval {name}", "ran", sec, f"{1000 * sec / n:.2f} s per 1,000 images, accuracy {100 * acc:.2f}%")
        self._eval_autoattack(model, x, y)
        self._eval_torchattacks(model, x, y)

    def _eval_autoattack(self, model, x, y) -> None:
        name = "eval AutoAttack standard"
        try:
            import pyautoattack  # noqa: F401
        except ImportError:
            self.skip(name, "pyautoattack is not installed (pip install -e '.[autoattack]')")
            return
        pgd = self.eval_speed["rows"].get("pgd20")
        # standard AA costs roughly 50-100 PGD-20s on the images it attacks (the robust ones)
        per_img = (pgd["seconds"] / pgd["n"]) * 60 if pgd else 0.05
        n = int(x.shape[0]) if self.smoke else max(0, min(int(x.shape[0]), int(self.budget.left() * 0.8 / per_img)))
        if n < 16 and not self.smoke:
            self.skip(name, f"budget: {self.budget.left():.0f} s left, ~{per_img:.2f} s per image")
            return
        spec = (AutoAttackSpec("custom", ("apgd-ce", "apgd-t", "fab-t", "square"), options=self.scale.aa_options)
                if self.smoke else AutoAttackSpec("standard"))
        sync(self.device)
        t0 = time.perf_counter()
        try:
            res = spec.evaluate(model, x[:n], y[:n], device=self.device, batch_size=256, progress=None)
        except Exception as e:
            self.record(name, "error", time.perf_counter() - t0, f"{type(e).__name__}: {e}",
                        traceback=traceback.format_exc())
            return
        sync(self.device)
        sec = time.perf_counter() - t0
        self.eval_speed["rows"]["autoattack"] = {"n": n, "seconds": sec, "s_per_1000": 1000 * sec / n,
                                                 "accuracy": res.accuracy, "clean_accuracy": res.clean_accuracy,
                                                 "flags": list(res.flags), "protocol": spec.describe()}
        self.record(name, "ran", sec, f"{1000 * sec / n:.1f} s per 1,000 images on the first {n}, robust "
                    f"{100 * res.accuracy:.2f}% (its cost grows with the robust share)"
                    + (" (smoke: cut iterations)" if self.smoke else ""))

    def _eval_torchattacks(self, model, x, y) -> None:
        name = "eval torchattacks PGD-20"
        try:
            import torchattacks
        except ImportError:
            self.skip(name, "torchattacks is not importable here (not a dependency): no comparison")
            return
        ours = self.eval_speed["rows"].get("pgd20")
        if ours is None or not self.fits(name, ours["seconds"] * 1.5):
            return
        ta = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=20, random_start=True)
        xs, ys = x.to(self.device).float() / 255, y.to(self.device)
        correct = 0
        sync(self.device)
        t0 = time.perf_counter()
        with fp32_eval(model):
            for i in range(0, xs.shape[0], 256):
                adv = ta(xs[i:i + 256], ys[i:i + 256])
                with torch.no_grad():
                    correct += int((model(adv).argmax(1) == ys[i:i + 256]).sum())
        sync(self.device)
        sec = time.perf_counter() - t0
        n = int(xs.shape[0])
        self.eval_speed["rows"]["torchattacks pgd20"] = {"n": n, "seconds": sec, "s_per_1000": 1000 * sec / n,
                                                         "accuracy": correct / n, "ours_over_theirs": ours["seconds"] / sec}
        self.record(name, "ran", sec, f"ours / torchattacks = {ours['seconds'] / sec:.2f}; accuracy "
                    f"{100 * ours['accuracy']:.2f}% vs {100 * correct / n:.2f}%")

    # ----------------------------------------------------------------- shared
    def _pretrain(self, model: nn.Module, steps: int) -> None:
        """A few PGD-AT steps so that accuracies are not trivially 0 (lr 0.05)."""
        batch, num_ids = self.batch(self.scale.batches[0])
        method = create_method("pgd_at", self.ctx(num_ids)).to(self.device)
        step = train_step_fn(method, model, make_optimizer(model, self.device, lr=0.05), batch, bf16=False,
                             device=self.device)
        for _ in range(steps):
            step()

    # ================================================================= run + report
    def run(self) -> dict[str, Any]:
        wanted = set(self.args.parts.split(","))
        for part, _ in PARTS:
            self.part = part
            left = self.budget.open_part(part)
            if part not in wanted:
                self.skip(part, "not asked for (--parts)")
                continue
            self.log(f"== {part} ({left:.0f} s planned)")
            try:
                getattr(self, f"part_{part}")()
            except Exception as e:
                self.record(part, "error", note=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        return self.report()

    def device_info(self) -> dict[str, Any]:
        info = {"type": self.device.type, "machine": machine_line(self.device), "python": platform.python_version(),
                "torch": torch.__version__, "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                "hostname": platform.node()}
        if self.cuda:
            p = torch.cuda.get_device_properties(self.device)
            info.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
        else:
            info["name"] = "cpu"
        return info

    def report(self) -> dict[str, Any]:
        dev = self.device_info()
        statuses = [i["status"] for i in self.items]
        return {
            "suite": "benchmarks/gpu_suite.py", "issue": 14, "mode": "smoke" if self.smoke else "full",
            "date": datetime.date.today().isoformat(), "command": " ".join([sys.executable, *sys.argv]),
            "device": dev, "budget_s": self.args.budget, "wall_s": round(self.budget.elapsed(), 1),
            "summary": {s: statuses.count(s) for s in ("pass", "fail", "error", "ran", "skipped")},
            "items": self.items,
            "skipped": [{"part": i["part"], "name": i["name"], "why": i["note"]} for i in self.items if i["status"] == "skipped"],
            "scratch": str(self.work) + ("" if self.args.keep else " (deleted; --keep keeps it)"),
            "commands": self.commands, "speed": self.speed, "result": self.result, "eval_speed": self.eval_speed,
            "targets_note": "targets are reported, not asserted; ResNet-18 on one H100 (paper Table 2: 132 s on an A100)",
        }


# --------------------------------------------------------------------------- markdown
def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def markdown(rep: dict[str, Any]) -> str:
    dev = rep["device"]
    out = [f"# GPU suite ({rep['mode']}): {dev.get('name')}, {rep['date']}", "",
           f"- command: `{rep['command']}`",
           f"- device: {dev['machine']}; CUDA {dev['cuda']}, cuDNN {dev['cudnn']}, Python {dev['python']}",
           f"- budget {rep['budget_s']:.0f} s, wall {rep['wall_s']:.0f} s; items: "
           + ", ".join(f"{v} {k}" for k, v in rep["summary"].items() if v)]
    if rep["mode"] == "smoke":
        out += ["- **smoke run**: toy sizes on the CPU (small_cnn width 4, 2 batches, 1 seed); no number here "
                "is a measurement of anything but the code paths"]
    out += ["", "## 1. Correctness", "", "| check | status | s | note |", "|---|---|---:|---|"]
    out += [f"| {i['name']} | {i['status']} | {i['seconds']:.1f} | {i['note']} |" for i in rep["items"]
            if i["part"] == "correctness"]
    sp = rep["speed"]
    out += ["", "## 2. Speed (training steps)", ""]
    if sp.get("rows"):
        out += [f"Median of {sp['rounds']} interleaved rounds x {sp['steps']} steps; `run epoch` = the epoch of a "
                "100-epoch run the method is set to (T = 75, T' = 80: `@0.5` before T', `@0.9` after).", "",
                "| setting | method | run epoch | fwd/bwd | ms/step | img/s | s per 50k epoch | vs pgd_at | spread |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sp["rows"]:
            out.append(f"| {r['setting']} | {r['method']} | {r['run_epoch']} | {r['passes']} | {r['ms_per_step']:.1f} | "
                       f"{r['img_per_s']:.0f} | {r['s_per_50k_epoch']:.1f} | {fmt(r.get('vs_pgd_at'))} | "
                       f"{100 * r['spread']:.0f}% |")
        out += ["", "Per setting (fp32 vs bf16, channels_last, compile, batch):", "",
                "| setting | pgd_at img/s | pgd_at s per 50k epoch | uiat s per 50k epoch | uiat / pgd_at |",
                "|---|---:|---:|---:|---:|"]
        for setting in sp["settings"]:
            rs = {r["method"]: r for r in sp["rows"] if r["setting"] == setting}
            p, u = rs.get("pgd_at"), rs.get("uiat")
            out.append(f"| {setting} | {fmt(p and p['img_per_s'], 0)} | {fmt(p and p['s_per_50k_epoch'], 1)} | "
                       f"{fmt(u and u['s_per_50k_epoch'], 1)} | {fmt(u and u.get('vs_pgd_at'))} |")
        out += ["", "| target (reported, not asserted) | value | best setting | met |", "|---|---:|---|---|"]
        out += [f"| {t['target']} | {t['value']:.2f} | {t['setting']} | {'yes' if t['met'] else 'NO'} |"
                for t in sp.get("targets", [])]
    else:
        out.append("not measured (see skipped items)")
    profiles = [i for i in rep["items"] if i["name"].startswith("profile ")]
    for i in profiles:
        out += ["", f"Profile of {i['name'][8:]}: {i['note']}", "", "| op / kernel | self ms | share | calls |",
                "|---|---:|---:|---:|"]
        out += [f"| `{k['name']}` | {k['self_ms']:.2f} | {100 * k['share']:.1f}% | {k['calls']} |"
                for k in i["details"].get("top_kernels", [])]
    res = rep["result"]
    data = "synthetic (smoke)" if rep["mode"] == "smoke" else DATASET
    out += ["", f"## 3. Result: {data}, natural / PGD-20 / CW30 (%)", ""]
    st = res.get("stats") if res else None
    if st and st["methods"]:
        n_test = next(iter(res["runs"].values()))["n_test"]
        out += [f"{res['epochs']} epoch(s) per run, seeds {res['seeds']}, {n_test} test images; mean +- std over "
                "seeds (std and interval need n >= 2).", "",
                "| method | n | natural | PGD-20 | CW30 | d natural vs pgd_at [95% CI] | d PGD-20 | d CW30 |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for lab, ms in st["methods"].items():
            cells = [f"{pct(ms[m]['mean'])} +- {pct(ms[m]['std'])}" if ms[m]["std"] is not None
                     else f"{pct(ms[m]['mean'])} (n={ms[m]['n']})" for m in METRICS]
            pair = st["paired_to_pgd_at"].get(lab)
            dcells = []
            for m in METRICS:
                if not pair:
                    dcells.append("")
                    continue
                d = pair[m]
                ci = f" [{pct(d['ci95'][0])}, {pct(d['ci95'][1])}]" if d["ci95"] else f" (n={d['n']}: no interval)"
                dcells.append(f"{pct(d['mean'])}{ci}")
            out.append(f"| {lab} | {ms['natural']['n']} | " + " | ".join(cells + dcells) + " |")
        fb = st.get("fp32_vs_bf16")
        if fb:
            out += ["", f"fp32 vs bf16 (pgd_at, seed {fb['seed']}, paired): "
                    + ", ".join(f"{m} {pct(fb['fp32'][m])} vs {pct(fb['bf16'][m])} (bf16 - fp32 {pct(fb['bf16_minus_fp32'][m])})"
                                for m in METRICS)]
    else:
        out.append("not run (see skipped items)")
    ev = rep["eval_speed"]
    out += ["", "## 4. Evaluation speed (fp32, eval mode)", ""]
    if ev and ev.get("rows"):
        out += [f"Model: {ev['model']}.", "", "| attack | images | s per 1,000 images | accuracy % | note |",
                "|---|---:|---:|---:|---|"]
        for name, r in ev["rows"].items():
            note = r.get("protocol", "")
            if "ours_over_theirs" in r:
                note = f"ours / torchattacks time = {r['ours_over_theirs']:.2f}"
            out.append(f"| {name} | {r['n']} | {r['s_per_1000']:.2f} | {pct(r['accuracy'])} | {note} |")
    else:
        out.append("not run (see skipped items)")
    out += ["", "## Skipped", ""]
    out += [f"- {s['part']} / {s['name']}: {s['why']}" for s in rep["skipped"]] or ["- nothing"]
    out += ["", "## Commands run", ""] + [f"- `{c}`" for c in rep["commands"]]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- NCCL probe (torchrun child)
def nccl_probe(path: str) -> None:
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dev = torch.device("cuda", local)
    try:  # device_id binds the group to the GPU (torch >= 2.3)
        dist.init_process_group("nccl", device_id=dev)
    except TypeError:
        dist.init_process_group("nccl")
    t = torch.ones(4, device=dev)
    dist.all_reduce(t)
    ok = bool((t == dist.get_world_size()).all())
    torch.manual_seed(0)
    plain = nn.Linear(16, 4).to(dev)
    wrapped = nn.parallel.DistributedDataParallel(copy.deepcopy(plain), device_ids=[local])
    x = torch.randn(8, 16, device=dev)
    plain(x).square().sum().backward()
    wrapped(x).square().sum().backward()
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(plain.parameters(), wrapped.module.parameters()))
    Path(path).write_text(json.dumps({"backend": dist.get_backend(), "world_size": dist.get_world_size(),
                                      "all_reduce_ok": ok, "ddp_grad_max_abs_diff": diff}))
    dist.destroy_process_group()


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results", help="folder of the JSON and markdown report")
    ap.add_argument("--budget", type=float, default=480.0, help="wall-clock seconds to plan into (default 480)")
    ap.add_argument("--smoke", action="store_true", help="every part at toy size on the CPU (the test suite runs this)")
    ap.add_argument("--parts", default=",".join(p for p, _ in PARTS),
                    help="comma-separated subset of: " + ", ".join(p for p, _ in PARTS))
    ap.add_argument("--seeds", type=int, default=0, help="seeds of part 3 (default 3; smoke 1)")
    ap.add_argument("--epochs", type=int, default=0, help="epochs of part 3 (default: as the budget allows)")
    ap.add_argument("--no-smoke-collect", dest="smoke_collect", action="store_false",
                    help="smoke: do not check the CUDA-test selection with pytest --collect-only")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (run folders, checkpoints)")
    ap.add_argument("--nccl-probe", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    bad = set(args.parts.split(",")) - {p for p, _ in PARTS}
    if bad:
        ap.error(f"unknown part(s) {', '.join(sorted(bad))}")
    if args.budget <= 0:
        ap.error("--budget must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nccl_probe:
        nccl_probe(args.nccl_probe)
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_suite: no CUDA device here (torch {torch.__version__}): the full suite needs one GPU; "
              "--smoke runs it at toy size on the CPU", file=sys.stderr)
        return 2
    suite = Suite(args)
    try:
        rep = suite.run()
    finally:
        if not args.keep:
            shutil.rmtree(suite.work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{'cpu-smoke' if args.smoke else slug(rep['device']['name'])}-{rep['date']}"
    (out / f"{stem}.json").write_text(json.dumps(rep, indent=1, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(rep))
    s = rep["summary"]
    print(f"gpu_suite: {rep['mode']} run on {rep['device']['name']} in {rep['wall_s']:.0f} s: "
          + ", ".join(f"{v} {k}" for k, v in s.items() if v) + f"; wrote {out / stem}.json and .md")
    return 1 if s["fail"] or s["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
