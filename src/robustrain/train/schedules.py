"""Learning-rate schedules as pure functions of the optimisation step.

A schedule maps ``(step, total_steps, base_lr, cfg) -> lr``; the trainer sets the lr of every
parameter group before each step. Being pure, a schedule has no state to checkpoint beyond
the step counter, which makes resuming exact.

Example:
    >>> from robustrain.config import ScheduleConfig
    >>> from robustrain.train.schedules import lr_at
    >>> cfg = ScheduleConfig(name="piecewise", milestones=(0.5,), gamma=0.1)
    >>> lr_at(cfg, step=0, total_steps=100, base_lr=0.1), round(lr_at(cfg, 60, 100, 0.1), 6)
    (0.1, 0.01)
"""

from __future__ import annotations

import math
from typing import Callable

from robustrain.config.schema import ScheduleConfig
from robustrain.registry import Registry

__all__ = ["SCHEDULES", "lr_at", "momentum_at"]

ScheduleFn = Callable[[int, int, float, ScheduleConfig], float]
SCHEDULES: Registry[ScheduleFn] = Registry("schedule")


@SCHEDULES.register("cyclic", help="one-cycle (Smith & Topin 2019), the UIAT/HAT setting")
def cyclic(step: int, total: int, lr: float, cfg: ScheduleConfig) -> float:
    """One-cycle lr exactly as ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing):
    lr/div_factor -> lr over the first ``pct_start`` of the steps, then down to
    lr/(div_factor*final_div_factor). The HAT code base the UIAT paper follows uses
    OneCycleLR(max_lr=lr, pct_start=0.25), which also cycles momentum: see :func:`momentum_at`."""
    initial = lr / cfg.div_factor
    return _one_cycle(step, total, cfg.pct_start, (initial, lr, initial / cfg.final_div_factor))


def _one_cycle(step: int, total: int, pct_start: float, points: tuple[float, float, float]) -> float:
    """Cosine interpolation points[0] -> points[1] -> points[2] (torch OneCycleLR's phases)."""
    warm_end = float(pct_start * total) - 1
    if step <= warm_end:
        start, end, pct = points[0], points[1], step / max(warm_end, 1e-12)
    else:
        start, end, pct = points[1], points[2], (step - warm_end) / max(total - 1 - warm_end, 1e-12)
    pct = min(max(pct, 0.0), 1.0)
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


@SCHEDULES.register("piecewise", help="step decay by gamma at fractions of the run (Rice et al. 2020)")
def piecewise(step: int, total: int, lr: float, cfg: ScheduleConfig) -> float:
    frac = step / max(total, 1)
    return lr * cfg.gamma ** sum(frac >= m for m in cfg.milestones)


@SCHEDULES.register("cosine", help="cosine decay to 0 after an optional linear warm-up")
def cosine(step: int, total: int, lr: float, cfg: ScheduleConfig) -> float:
    warm = int(cfg.warmup_frac * total)
    if step < warm:
        return lr * (step + 1) / warm
    pct = (step - warm) / max(total - warm, 1)
    return 0.5 * lr * (1 + math.cos(math.pi * min(pct, 1.0)))


@SCHEDULES.register("constant", help="a fixed learning rate")
def constant(step: int, total: int, lr: float, cfg: ScheduleConfig) -> float:
    return lr


def lr_at(cfg: ScheduleConfig, step: int, total_steps: int, base_lr: float) -> float:
    """The learning rate of optimisation step ``step`` (0-based) of ``total_steps``."""
    return SCHEDULES.get(cfg.name)(step, total_steps, base_lr, cfg)


def momentum_at(cfg: ScheduleConfig, step: int, total_steps: int) -> float | None:
    """SGD momentum of step ``step``, or None to keep ``optim.momentum``.

    With ``schedule.name=cyclic`` and ``schedule.cycle_momentum=true`` (the default, as
    torch's OneCycleLR in the HAT/UIAT code) momentum moves 0.95 -> 0.85 while the lr warms
    up and back to 0.95 as it anneals.
    """
    if cfg.name != "cyclic" or not cfg.cycle_momentum:
        return None
    return _one_cycle(step, total_steps, cfg.pct_start, (cfg.max_momentum, cfg.base_momentum, cfg.max_momentum))
