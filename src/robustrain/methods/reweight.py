"""Instance-reweighting methods: GAIRAT (global reweighting) and LRAT (local reweighting).

GAIRAT (Zhang et al., "Geometry-aware Instance-reweighted Adversarial Training", ICLR 2021,
arXiv:2010.01736) reweights the adversarial CE of each instance ACROSS the batch by how
close the instance lies to the decision boundary (few PGD iterations survive -> large
weight). LRAT (Gao et al., "Local Reweighting for Adversarial Training", arXiv:2106.15776)
keeps every instance's total weight at one and only splits it INSIDE the pair (natural
instance, its adversarial variants under several attacks), by the instance's
vulnerability to each attack, with a floor ``rho`` on the natural term.

The weight / loss formulas are the pure functions :func:`gair_weights`,
:func:`lrat_weights`, :func:`lrat_loss` and the :data:`VULNERABILITIES` registry; the
methods only generate the adversaries and call them. No host synchronisation anywhere:
weights, counts and metrics stay tensors on the device.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.attacks import CW, PGD, ce_loss, pgd
from robustrain.attacks.tape import taped
from robustrain.utils.checks import check_budget, check_choice, check_field_types, check_in_range, check_step
from robustrain.data.batch import Batch
from robustrain.methods.at import accuracy
from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.params import PGDAdversaryParams
from robustrain.methods.registry import METHODS
from robustrain.utils.distributed import all_reduce_sum

__all__ = [
    "GAIRAT",
    "GAIRATParams",
    "LRAT",
    "LRATParams",
    "LRAT_ATTACKS",
    "VULNERABILITIES",
    "gair_weights",
    "geometry_pgd",
    "lrat_loss",
    "lrat_weights",
    "parse_attack_list",
]


# --------------------------------------------------------------------------- GAIRAT
def gair_weights(
    kappa: Tensor, steps: int, lam: float, *, reduce: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """GAIRAT's tanh weights, normalised to mean 1 over the batch.

    ``w_i = (1 + tanh(λ + 5 (1 - 2 κ_i / K))) / 2``, then ``w_i <- w_i · N / Σ_j w_j``.

    Source: official zjfheart/Geometry-aware-Instance-reweighted-Adversarial-Training,
    ``GAIR.py`` (``func == "Tanh"``): ``((Lambda + (int(K/2) - Kappa) * 5 / int(K/2)).tanh()
    + 1) / 2`` then ``reweight * len(reweight) / reweight.sum()``. For even K (default 10)
    that is exactly the formula above; for odd K the official code uses int(K/2) in place
    of K/2, here K/2 is used (the paper's / issue's formula).

    Args:
        kappa: (N,) geometry values κ_i in [0, K] (any float/int dtype).
        steps: K, the number of PGD iterations κ was counted over.
        lam: λ (GAIRAT: -1; larger λ flattens the weights towards 1).
        reduce: sums a tensor over the data-parallel ranks (e.g.
            :func:`robustrain.utils.distributed.all_reduce_sum`), so that N and Σ_j w_j are
            those of the GLOBAL batch and 2 ranks x B/2 weigh like one process x B; None
            (default) normalises over this ``kappa`` alone.

    Returns:
        (N,) float weights with mean 1 over the (global) batch (detached: κ is not
        differentiable).

    Example:
        >>> w = gair_weights(torch.tensor([0.0, 10.0]), steps=10, lam=-1.0)
        >>> torch.isclose(w.mean(), torch.tensor(1.0))
        tensor(True)
    """
    kappa = kappa.detach().float()
    raw = (1.0 + torch.tanh(lam + 5.0 * (1.0 - 2.0 * kappa / steps))) / 2.0
    count_and_sum = torch.stack([raw.new_tensor(float(raw.numel())), raw.sum()])
    if reduce is not None:
        count_and_sum = reduce(count_and_sum)
    return raw * (count_and_sum[0] / count_and_sum[1])


def _counting_ce(logits: Tensor, y: Tensor, *, kappa: Tensor) -> Tensor:
    """CE attack loss that also adds ``argmax == y`` of the current iterate to ``kappa``."""
    kappa.add_((logits.detach().argmax(dim=1) == y).to(kappa.dtype))
    return ce_loss(logits, y)


@taped  # kappa comes from the attack's own forwards: replay it with the adversary (AWP)
def geometry_pgd(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, alpha: float, steps: int,
    start: str = "uniform", bn_mode: str = "eval", generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Linf PGD on CE that also returns GAIRAT's geometry value κ.

    κ_i = #{t in 0..K-1 : argmax f(x'_t)_i = y_i}: the iterates checked are the start x'_0
    and the K-1 intermediate iterates, i.e. the point each gradient step is taken FROM (the
    final x'_K is not checked) — as the official ``GA_PGD`` (``attack_generator.py``:
    ``predict == target -> Kappa += 1`` before each step). The prediction is the attack's
    own forward (in ``bn_mode``, the official code runs the attack in eval mode), so κ costs
    no extra forward: it is recorded by the attack loss callable of
    :func:`robustrain.attacks.pgd`, which is called once per step on f(x'_t).

    Returns:
        (x_adv, kappa): the detached PGD adversary (identical to ``pgd(..., loss="ce")``) and
        the (N,) float κ in [0, K].
    """
    kappa = torch.zeros(x.shape[0], dtype=torch.float32, device=x.device)
    x_adv = pgd(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm="linf",
        loss=functools.partial(_counting_ce, kappa=kappa), start=start, bn_mode=bn_mode,
        generator=generator,
    )
    return x_adv, kappa


@dataclass(frozen=True)
class GAIRATParams(PGDAdversaryParams):
    """Hyper-parameters of GAIRAT.

    Defaults: official GAIRAT.py (``--Lambda -1.0``, ``--Lambda_schedule fixed``,
    ``--weight_assignment_function Tanh``, ``--begin_epoch 60`` of 120 = half the run, PGD-10
    on CE with a uniform start in eval mode), with the UIAT paper's ε = 8/255, α = 2/255
    (official script: 0.031 / 0.007).

    Fields:
        gair_lambda: λ of the tanh weight (-1; named so as not to clash with the UIAT
            plug-in's ``lam`` in ``gairat+uiat``).
        burn_in: the official ``--begin_epoch`` as a fraction of ``ctx.epochs`` (0.5), so that
            it scales with the run: ``begin_epoch = floor(burn_in · epochs)`` and reweighting
            is on for 0-based epochs ``e`` with ``(e + 1) >= begin_epoch``, the official rule
            (``GAIRAT.py`` L141 ``if (epoch + 1) >= args.begin_epoch:``, ``--begin_epoch 60``
            of ``--epochs 120``, L36 / L13): for 120 epochs on from 0-based epoch 59, for
            100 from 49, for 4 from 1 (:meth:`GAIRAT.begin_epoch`). Before it: plain PGD-AT
            (uniform weights). ``burn_in = 0``: reweighted from the first epoch.
        eps, alpha, steps, start, bn_mode: the PGD training adversary (8/255, 2/255, 10,
            uniform, eval; :class:`PGDAdversaryParams`).
    """

    gair_lambda: float = -1.0
    burn_in: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in_range("burn_in", self.burn_in, 0.0, 1.0)
        if not abs(self.gair_lambda) < float("inf"):
            raise ValueError(f"gair_lambda must be finite, got {self.gair_lambda!r}")


@METHODS.register("gairat", help="GAIRAT (Zhang et al. 2021): PGD-AT with geometry-aware tanh instance weights")
class GAIRAT(Method):
    """Geometry-aware instance-reweighted adversarial training.

    Paper: Zhang et al., "Geometry-aware Instance-reweighted Adversarial Training",
    ICLR 2021, arXiv:2010.01736; official code zjfheart/Geometry-aware-Instance-reweighted-
    Adversarial-Training (``GAIRAT.py``, ``GAIR.py``, ``attack_generator.py``).

    x̂ = PGD-K(x) on CE with κ_i counted along the way (:func:`geometry_pgd`);
    ``loss = mean_i w_i · CE(f(x̂_i), y_i)`` with w = :func:`gair_weights` (κ, K, λ) once
    ``epoch + 1 >= begin_epoch`` (the official rule, :attr:`begin_epoch`), w = 1 (plain
    PGD-AT) before; logits = f(x̂).
    """

    Params = GAIRATParams

    @property
    def begin_epoch(self) -> int:
        """The official ``--begin_epoch`` of this run: ``floor(burn_in · epochs)`` (1-based, as
        the official argument; 60 for 120 epochs, 50 for 100, 2 for 4)."""
        # the small tolerance keeps e.g. 0.7 * 10 = 6.999... at 7
        return math.floor(self.params.burn_in * self.ctx.epochs + 1e-9)

    def reweighting(self) -> bool:
        """Whether the current (0-based) epoch reweights: ``(epoch + 1) >= begin_epoch``, the
        official ``GAIRAT.py`` L141 rule (a Python bool: no host sync)."""
        return self.epoch + 1 >= self.begin_epoch

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        p = self.params
        x_adv, kappa = geometry_pgd(
            model, batch.x, batch.y, eps=p.eps, alpha=p.alpha, steps=p.steps, start=p.start,
            bn_mode=p.bn_mode,
        )
        logits_adv = model(x_adv)
        ce = F.cross_entropy(logits_adv, batch.y, reduction="none")
        if self.reweighting():
            weights = gair_weights(kappa, p.steps, p.gair_lambda, reduce=all_reduce_sum)
        else:
            weights = torch.ones_like(ce)
        loss = (weights.detach() * ce).mean()
        metrics = {
            "loss_ce": ce.detach().mean(),
            "acc_adv": accuracy(logits_adv, batch.y),
            "kappa": kappa.mean(),
            "w_max": weights.detach().max(),
        }
        return LossOutput(loss, logits_adv, metrics)


# --------------------------------------------------------------------------- LRAT
def _one_minus_py(logits: Tensor, y: Tensor) -> Tensor:
    return 1.0 - F.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)


def _margin_vulnerability(logits: Tensor, y: Tensor) -> Tensor:
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
    return torch.sigmoid(z_other - z_y)


def _error(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.argmax(dim=1) != y).to(logits.dtype)


#: vulnerability v(f(x̂), y) in [0, 1] of an instance to an attack (evaluated detached):
#: ``one_minus_py`` = 1 - softmax(z)_y (default; = 1 - exp(-CE)), ``margin`` =
#: sigmoid(max_{j != y} z_j - z_y) (> 1/2 iff misclassified), ``error`` = 1[argmax z != y].
VULNERABILITIES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "one_minus_py": _one_minus_py,
    "margin": _margin_vulnerability,
    "error": _error,
}


def lrat_weights(vulnerability: Tensor, rho: float) -> tuple[Tensor, Tensor]:
    """LRAT's per-pair weights from the vulnerabilities to the A attacks.

    With v_ik in [0, 1] the vulnerability of instance i to attack k (clamped to [0, 1]):

        a_ik   = v_ik / A
        S_i    = Σ_k a_ik                       (in [0, 1])
        s_i    = min(1, (1 - ρ) / S_i)          (s_i = 1 when S_i = 0)
        w_ik   = s_i · a_ik
        w_nat_i = 1 - Σ_k w_ik                  (>= ρ)

    so each pair's weights are non-negative and sum to exactly one, an adversarial weight
    grows with the vulnerability to its attack, and the natural term keeps at least ρ.
    Nothing is normalised across instances (no global reweighting).

    Args:
        vulnerability: (N, A) vulnerabilities (detached here).
        rho: floor ρ in [0, 1] of the natural weight.

    Returns:
        (w_nat, w_adv): (N,) and (N, A).
    """
    v = vulnerability.detach().clamp(0.0, 1.0)
    a = v / v.shape[1]
    total = a.sum(dim=1, keepdim=True)
    scale = torch.clamp((1.0 - rho) / total.clamp_min(1e-12), max=1.0)
    w_adv = scale * a
    w_nat = 1.0 - w_adv.sum(dim=1)
    return w_nat, w_adv


def lrat_loss(ce_nat: Tensor, ce_adv: Tensor, w_nat: Tensor, w_adv: Tensor) -> Tensor:
    """``mean_i (w_nat_i · CE_nat_i + Σ_k w_ik · CE_adv_ik)``; ce_nat (N,), ce_adv (N, A)."""
    return (w_nat * ce_nat + (w_adv * ce_adv).sum(dim=1)).mean()


def _pgd_attack(eps: float, alpha: float, steps: int, bn_mode: str) -> PGD:
    return PGD(eps=eps, alpha=alpha, steps=steps, loss="ce", start="uniform", bn_mode=bn_mode)


def _cw_attack(eps: float, alpha: float, steps: int, bn_mode: str) -> CW:
    return CW(eps=eps, alpha=alpha, steps=steps, kappa=50.0, start="uniform", bn_mode=bn_mode)


#: attack name in ``LRATParams.attacks`` -> builder (eps, alpha, steps, bn_mode) -> attack:
#: ``pgd`` = Linf PGD on CE, ``cw`` = CW∞ (Linf PGD on the CW margin, κ = 50); both from a
#: uniform start.
LRAT_ATTACKS: dict[str, Callable[..., object]] = {"pgd": _pgd_attack, "cw": _cw_attack}


def parse_attack_list(text: str) -> tuple[str, ...]:
    """``"pgd,cw"`` -> ``("pgd", "cw")``; ValueError on an empty list, unknown or repeated name."""
    names = tuple(part.strip() for part in text.split(","))
    if not names or any(not n for n in names):
        raise ValueError(f"attacks must be a comma-separated list of names, got {text!r}")
    for n in names:
        check_choice("attacks", n, LRAT_ATTACKS)
    if len(set(names)) != len(names):
        raise ValueError(f"attacks must not repeat a name, got {text!r}")
    return names


@dataclass(frozen=True)
class LRATParams:
    """Hyper-parameters of LRAT.

    Fields:
        attacks: comma-separated attack names from :data:`LRAT_ATTACKS` paired with each
            instance ("pgd,cw": PGD-10 on CE and CW∞ on the margin, the paper's pair).
        rho: floor ρ of the natural term's weight (0.2: a placeholder; the cifar10-mini
            sweep that picks it is still to be done).
        vulnerability: key of :data:`VULNERABILITIES` ("one_minus_py": 1 - p_y(x̂)).
        eps, alpha, steps, bn_mode: shared by every attack (8/255, 2/255, 10, eval).
    """

    attacks: str = "pgd,cw"
    rho: float = 0.2
    vulnerability: str = "one_minus_py"
    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 10
    bn_mode: str = "eval"

    def __post_init__(self) -> None:
        check_field_types(self)
        check_in_range("rho", self.rho, 0.0, 1.0)
        check_choice("vulnerability", self.vulnerability, VULNERABILITIES)
        check_budget("eps", self.eps)
        check_step("alpha", self.alpha)
        self.build_attacks()  # validates the list and the attack fields once

    def build_attacks(self) -> dict[str, object]:
        return {
            n: LRAT_ATTACKS[n](self.eps, self.alpha, self.steps, self.bn_mode)
            for n in parse_attack_list(self.attacks)
        }


@METHODS.register("lrat", help="LRAT (Gao et al. 2021): per-instance weights split inside (x, attacks) pairs")
class LRAT(Method):
    """Locally reweighted adversarial training.

    Paper: Gao et al., "Local Reweighting for Adversarial Training", arXiv:2106.15776.

    For each attack k in ``attacks``: x̂_k = attack_k(x) (in ``bn_mode``). Training forwards
    (train mode): f(x) first, then f(x̂_1), ..., f(x̂_A). With v_ik = vulnerability(f(x̂_ik),
    y_i) (detached) and (w_nat, w_adv) = :func:`lrat_weights` (v, ρ):

        loss = mean_i ( w_nat_i · CE(f(x_i), y_i) + Σ_k w_ik · CE(f(x̂_ik), y_i) )

    (:func:`lrat_loss`); every pair's weights sum to one, w_nat_i >= ρ. logits = f(x̂_1)
    (the first attack's adversarial logits).
    """

    Params = LRATParams

    def __init__(self, params: LRATParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.attacks = params.build_attacks()
        self.vulnerability = VULNERABILITIES[params.vulnerability]

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        x, y = batch.x, batch.y
        x_advs = {name: attack(model, x, y) for name, attack in self.attacks.items()}
        logits_nat = model(x)
        logits_adv = {name: model(xa) for name, xa in x_advs.items()}
        ce_nat = F.cross_entropy(logits_nat, y, reduction="none")
        ce_adv = torch.stack([F.cross_entropy(z, y, reduction="none") for z in logits_adv.values()], dim=1)
        with torch.no_grad():
            v = torch.stack([self.vulnerability(z.detach(), y) for z in logits_adv.values()], dim=1)
        w_nat, w_adv = lrat_weights(v, self.params.rho)
        loss = lrat_loss(ce_nat, ce_adv, w_nat, w_adv)
        first = next(iter(logits_adv.values()))
        metrics = {
            "loss_ce": ce_nat.detach().mean(),
            "loss_adv": ce_adv.detach().mean(),
            "acc_nat": accuracy(logits_nat, y),
            "acc_adv": accuracy(first, y),
            "w_nat": w_nat.mean(),
        }
        for name, z in logits_adv.items():
            metrics[f"acc_adv_{name}"] = accuracy(z, y)
        return LossOutput(loss, first, metrics)
