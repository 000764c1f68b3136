"""Learning-rate schedules as pure functions of the optimisation step.

Layer 1 (below config, which imports it): the ``schedule`` config section is
:class:`ScheduleParams`, owned here as methods own their Params.

A schedule maps ``(step, total_steps, base_lr, params) -> lr``; the trainer sets the lr of every
parameter group before each step. Being pure, a schedule has no state to checkpoint beyond
the step counter, which makes resuming exact.

Example:
    >>> from robustrain.schedules import ScheduleParams, lr_at
    >>> cfg = ScheduleParams(name="piecewise", milestones=(0.5,), gamma=0.1)
    >>> lr_at(cfg, step=0, total_steps=100, base_lr=0.1), round(lr_at(cfg, 60, 100, 0.1), 6)
    (0.1, 0.01)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from robustrain.utils.checks import check_in_range, check_positive, short_repr
from robustrain.utils.registry import Registry

__all__ = ["SCHEDULES", "ScheduleParams", "lr_at", "momentum_at"]


@dataclass(frozen=True)
class ScheduleParams:
    """Learning-rate schedule, evaluated per optimisation step.

    Attributes:
        name: ``cyclic`` (one-cycle, the UIAT/HAT setting), ``piecewise``, ``cosine`` or
            ``constant`` (``robustrain list schedules``).
        pct_start: cyclic: fraction of the run spent warming up (0.25 as in the HAT code).
        div_factor: cyclic: initial lr = lr / div_factor (25, torch OneCycleLR's default).
        final_div_factor: cyclic: final lr = initial lr / final_div_factor (1e4).
        cycle_momentum: cyclic: cycle SGD momentum inversely to the lr between
            ``max_momentum`` and ``base_momentum`` (OneCycleLR's default, used by the HAT /
            UIAT code); false keeps ``optim.momentum`` fixed.
        base_momentum, max_momentum: cyclic momentum range (0.85, 0.95).
        milestones: piecewise: fractions of the run where the lr is multiplied by ``gamma``
            (0.5, 0.75: Rice et al.'s 100/150 of 200 epochs).
        gamma: piecewise: decay factor.
        warmup_frac: cosine: fraction of the run of linear warm-up.
    """

    name: str = "cyclic"
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup_frac: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        check_in_range("schedule.pct_start", self.pct_start, 0.0, 1.0, "fraction of the run spent warming up, e.g. 0.25",
                       low_open=True, high_open=True)
        if any(not 0 < m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError("schedule.milestones must be increasing fractions in (0, 1), e.g. [0.5, 0.75], got "
                             f"{short_repr(list(self.milestones))}")
        check_in_range("schedule.warmup_frac", self.warmup_frac, 0.0, 1.0, "fraction of the run of linear warm-up",
                       high_open=True)
        check_in_range("schedule.base_momentum", self.base_momentum, 0.0, 1.0, "e.g. 0.85", high_open=True)
        check_in_range("schedule.max_momentum", self.max_momentum, 0.0, 1.0, "e.g. 0.95", high_open=True)
        if not self.base_momentum <= self.max_momentum:
            raise ValueError("schedule needs 0 <= base_momentum <= max_momentum < 1, got "
                             f"{self.base_momentum}, {self.max_momentum}")
        check_positive("schedule.div_factor", self.div_factor, "initial lr = optim.lr / div_factor, e.g. 25")
        check_positive("schedule.final_div_factor", self.final_div_factor,
                       "final lr = initial lr / final_div_factor, e.g. 1e4")
        check_in_range("schedule.gamma", self.gamma, 0.0, 1.0, "the lr decay factor at each milestone, e.g. 0.1",
                       low_open=True)


ScheduleFn = Callable[[int, int, float, ScheduleParams], float]
SCHEDULES: Registry[ScheduleFn] = Registry("schedule")


@SCHEDULES.register("cyclic", help="one-cycle (Smith & Topin 2019), the UIAT/HAT setting")
def cyclic(step: int, total: int, lr: float, cfg: ScheduleParams) -> float:
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
def piecewise(step: int, total: int, lr: float, cfg: ScheduleParams) -> float:
    frac = step / max(total, 1)
    return lr * cfg.gamma ** sum(frac >= m for m in cfg.milestones)


@SCHEDULES.register("cosine", help="cosine decay to 0 after an optional linear warm-up")
def cosine(step: int, total: int, lr: float, cfg: ScheduleParams) -> float:
    warm = int(cfg.warmup_frac * total)
    if step < warm:
        return lr * (step + 1) / warm
    pct = (step - warm) / max(total - warm, 1)
    return 0.5 * lr * (1 + math.cos(math.pi * min(pct, 1.0)))


@SCHEDULES.register("constant", help="a fixed learning rate")
def constant(step: int, total: int, lr: float, cfg: ScheduleParams) -> float:
    return lr


def lr_at(cfg: ScheduleParams, step: int, total_steps: int, base_lr: float) -> float:
    """The learning rate of optimisation step ``step`` (0-based) of ``total_steps``."""
    return SCHEDULES.get(cfg.name)(step, total_steps, base_lr, cfg)


def momentum_at(cfg: ScheduleParams, step: int, total_steps: int) -> float | None:
    """SGD momentum of step ``step``, or None to keep ``optim.momentum``.

    With ``schedule.name=cyclic`` and ``schedule.cycle_momentum=true`` (the default, as
    torch's OneCycleLR in the HAT/UIAT code) momentum moves 0.95 -> 0.85 while the lr warms
    up and back to 0.95 as it anneals.
    """
    if cfg.name != "cyclic" or not cfg.cycle_momentum:
        return None
    return _one_cycle(step, total_steps, cfg.pct_start, (cfg.max_momentum, cfg.base_momentum, cfg.max_momentum))
