"""Helpers shared by the benchmark scripts (``throughput.py``, ``gpu_suite.py``).

Timing protocol: every row gets untimed warm-up calls, then ``rounds`` rounds in which every
row runs ``steps`` calls in turn (interleaved: a change in machine load hits every row alike);
the caller keeps the median round. ``count_passes`` counts forward/backward passes per step.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from robustrain.config.schema import AWP_SUFFIX, awp_defaults
from robustrain.data import Batch, DeviceLoader
from robustrain.train.awp import AWP
from robustrain.utils.runtime import fast_math  # the trainer's own CUDA math settings

__all__ = ["Row", "count_passes", "cycle", "machine_line", "make_optimizer", "parse_method", "split_awp", "sync",
           "time_rows", "train_step_fn"]


@dataclass
class Row:
    """One timed task: a training step or an evaluation attack on one batch."""

    label: str
    kind: str  # "train" | "eval"
    run: Callable[[], object]
    reference: str | None = None  # row its time is compared with
    passes: str = ""
    epoch: int | None = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_method(spec: str, default_fraction: float) -> tuple[str, float]:
    """``"name@0.5"`` -> ("name", 0.5); ``"name"`` -> ("name", default_fraction)."""
    name, _, frac = spec.partition("@")
    return name, float(frac) if frac else default_fraction


def split_awp(name: str) -> tuple[str, AWP | None]:
    """``"trades+awp"`` -> ("trades", AWP with TRADES' official gamma); other names -> (name, None).
    The warm-up is ignored: a benchmark row times the step with AWP on."""
    if not name.endswith(AWP_SUFFIX):
        return name, None
    base = name[: -len(AWP_SUFFIX)]
    return base, AWP(awp_defaults(base)["gamma"])


def count_passes(method: nn.Module, model: nn.Module, batch: Batch, awp: AWP | None = None) -> tuple[int, int]:
    """(forwards, backwards) through ``model`` in one training step of ``method``.

    A backward is counted once per forward whose logits a backward runs through (the
    attack's input-gradient steps and the parameter backward of the loss). With ``awp`` the
    step is AWP's: the ascent (attack + loss + backward at w) and the training loss at w + v
    on the replayed adversary.
    """
    forwards, backwards = [0], [0]
    original = model.forward

    def counting(x, *args, **kwargs):
        forwards[0] += 1
        out = original(x, *args, **kwargs)
        logits = out[0] if isinstance(out, tuple) else out
        if logits.requires_grad:
            logits.register_hook(lambda g: backwards.__setitem__(0, backwards[0] + 1))
        return out

    model.forward = counting
    handle = None
    try:
        if awp is not None:
            handle = awp.perturb(model, lambda: method(model, batch).loss, method=method)
        with handle.replay() if handle is not None else contextlib.nullcontext():
            out = method(model, batch)
        out.loss.backward()
    finally:
        if handle is not None:
            handle.restore()
        del model.forward  # back to the class's forward
        model.zero_grad(set_to_none=True)
    return forwards[0], backwards[0]


def make_optimizer(model: nn.Module, device: torch.device, lr: float = 0.01) -> torch.optim.Optimizer:
    # as the trainer: SGD, Nesterov momentum, weight decay, fused on CUDA
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4,
                           **({"fused": True} if device.type == "cuda" else {}))


def train_step_fn(method, model, optimizer, batch, *, bf16: bool, device: torch.device,
                  awp: AWP | None = None) -> Callable[[], None]:
    """One full training step as the trainer's loop runs it (with AWP's ascent and restore when
    ``awp`` is given, as ``robustrain.train.loop.train_one_epoch``)."""

    def loss_at_w():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return method(model, batch).loss

    def step() -> None:
        with fast_math(device):
            handle = awp.perturb(model, loss_at_w, method=method) if awp is not None else None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16), \
                    (handle.replay() if handle is not None else contextlib.nullcontext()):
                out = method(model, batch)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            if handle is not None:
                handle.restore()

    return step


def time_rows(rows: list[Row], *, steps: int, warmup: int, rounds: int, device: torch.device,
              clock: Callable[[], float] = time.perf_counter, log=print) -> dict[str, list[float]]:
    """Seconds per call of each row in every round (rows interleaved within a round)."""
    for row in rows:
        t0 = time.perf_counter()
        for _ in range(warmup):
            row.run()
        sync(device)
        log(f"  warm-up {row.label}: {time.perf_counter() - t0:.1f}s")
    times: dict[str, list[float]] = {row.label: [] for row in rows}
    for r in range(rounds):
        for row in rows:
            sync(device)
            t0 = clock()
            for _ in range(steps):
                row.run()
            sync(device)
            times[row.label].append((clock() - t0) / steps)
        log(f"  round {r + 1}/{rounds} done, load average {os.getloadavg()[0]:.2f}")
    return times


def machine_line(device: torch.device) -> str:
    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        hw = platform.processor() or platform.machine()
        try:  # the model name is more useful than "x86_64"
            with open("/proc/cpuinfo") as f:
                hw = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return f"{hw}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def cycle(loader: DeviceLoader):
    """Batches over successive epochs."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1
