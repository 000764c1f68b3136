"""Hyper-parameter pieces shared by several methods' ``Params`` dataclasses.

Example:
    >>> PGDAdversaryParams().attack().steps, PGDAdversaryParams(steps=3).attack().steps
    (10, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

from robustrain.attacks import PGD
from robustrain.utils.checks import check_budget, check_field_types, check_nonnegative, check_positive, check_step

__all__ = ["PGDAdversaryParams"]


@dataclass(frozen=True)
class PGDAdversaryParams:
    """The PGD training adversary x' = PGD-K on CE, shared by ``pgd_at``, ``iat``, ``uiat``,
    ``uiat_oneoff`` and ``gairat`` (subclasses add their own fields after these).

    Defaults: Madry et al. 2018 with the UIAT paper's CIFAR setting (ε = 8/255, α = 2/255,
    10 steps, uniform random start); ``bn_mode = "eval"`` as the HAT / UIAT code
    (``ctx_noparamgrad_and_eval`` around the training attack).

    Fields:
        eps: ε, the radius of the threat model (8/255).
        alpha: α, the step size (2/255).
        steps: K, the number of PGD steps (10).
        start: the random start (``uniform`` in the ε-ball; ``zero``; ``normal``).
        bn_mode: BatchNorm mode of the attack's forwards (``eval``).
    """

    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 10
    start: str = "uniform"
    bn_mode: str = "eval"

    def __post_init__(self) -> None:
        check_field_types(self)
        if getattr(self, "norm", "linf") == "linf":  # pixel units: a budget in [0, 1], a step in (0, 1]
            check_budget("eps", self.eps)
            check_step("alpha", self.alpha)
        else:  # an L2 radius may exceed 1
            check_nonnegative("eps", self.eps, "the L2 radius")
            check_positive("alpha", self.alpha, "the L2 step size")
        self.attack()  # validates the attack fields once, in one place

    def attack(self, norm: str = "linf") -> PGD:
        """The training adversary (PGD on CE in the ``norm`` ball)."""
        return PGD(
            eps=self.eps, alpha=self.alpha, steps=self.steps, norm=norm, loss="ce",
            start=self.start, bn_mode=self.bn_mode,
        )
