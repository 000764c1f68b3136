"""Baseline training methods: natural training, PGD-AT, TRADES, MART.

Each method generates its adversaries with the model in the attack's explicit ``bn_mode``
(default ``eval``, restored afterwards), then runs its training forwards in whatever mode
the trainer left the model (train mode), and returns ``LossOutput(loss, logits, metrics)``
with the adversarial logits (those the plug-in regularisers reuse).

Shared hyper-parameter names:
    eps (ε): Linf radius of the training adversary (8/255).
    alpha (α): attack step size (2/255).
    steps: attack steps (10).
    beta (β): weight of the robustness regulariser (TRADES, MART).
    init_std: std of the Gaussian start x + init_std · N(0, 1) (TRADES, MART: 0.001).
    bn_mode: mode of the attack's forwards, ``eval`` | ``train`` | ``train_frozen_stats``.

Step sizes: the official TRADES and MART scripts use eps = 0.031, alpha = 0.007; the UIAT
paper (and the HAT code base it builds on) trains every baseline with eps = 8/255,
alpha = 2/255, which are the defaults here so that the paper's tables are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.attacks import PGD, bn_mode, pgd
from robustrain.attacks.tape import taped
from robustrain.utils.checks import check_budget, check_field_types, check_nonnegative, check_step
from robustrain.data.batch import Batch
from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.losses import HATTerms, LossTerms, kl_from_logits, mart_loss, trades_loss
from robustrain.methods.params import PGDAdversaryParams
from robustrain.methods.registry import METHODS

__all__ = [
    "MART",
    "MARTParams",
    "PGDAT",
    "PGDATParams",
    "Standard",
    "StandardParams",
    "TRADES",
    "TRADESParams",
    "accuracy",
    "majority_fraction",
    "prediction_stats",
    "trades_adversary",
    "two_view_metrics",
]


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Detached 0-dim accuracy tensor (stays on the device: no host sync)."""
    return (logits.detach().argmax(dim=1) == y).float().mean()


def majority_fraction(pred: Tensor, num_classes: int) -> Tensor:
    """Fraction (0-dim, on the device) of the labels ``pred`` (N,) that are the most frequent one:
    1.0 when every example is given one class.

    Example:
        >>> float(majority_fraction(torch.tensor([2, 2, 0, 2]), 3))
        0.75
    """
    # index_add_ into a fixed-size buffer: no host sync (torch.bincount sizes its output from
    # pred.max(), a read back to the host on CUDA)
    counts = torch.zeros(num_classes, device=pred.device, dtype=torch.float32)
    counts.index_add_(0, pred, torch.ones_like(pred, dtype=torch.float32))
    return counts.max() / max(pred.numel(), 1)


def prediction_stats(scores: Tensor, prefix: str = "", *, probs: bool = False) -> dict[str, Tensor]:
    """Signs of a one-class collapse (issue 19) in one batch's predictions, detached device tensors.

    Args:
        scores: (N, C) logits, or probabilities with ``probs=True``.
        prefix: added to the key names (``target_``: a method's target distribution).
        probs: ``scores`` are already probabilities.

    Returns:
        ``{prefix}p_max``: the mean max-probability (1/C = uniform, 1 = certain);
        ``{prefix}majority``: the fraction of the batch given to its most frequent class.

    Example:
        >>> s = prediction_stats(torch.tensor([[0.5, 0.5], [0.9, 0.1]]), "target_", probs=True)
        >>> round(float(s["target_p_max"]), 4), float(s["target_majority"])
        (0.7, 1.0)
    """
    scores = scores.detach().float()
    p = scores if probs else torch.softmax(scores, dim=1)
    return {f"{prefix}p_max": p.max(dim=1).values.mean(),
            f"{prefix}majority": majority_fraction(p.argmax(dim=1), p.shape[1])}


def two_view_metrics(terms: LossTerms | HATTerms, logits_nat: Tensor, logits_adv: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Metrics of a natural + adversarial loss: its two terms and both accuracies (detached)."""
    return {
        "loss_ce": terms.ce.detach(),
        "loss_reg": terms.reg.detach(),
        "acc_nat": accuracy(logits_nat, y),
        "acc_adv": accuracy(logits_adv, y),
    }


# --------------------------------------------------------------------------- standard
@dataclass(frozen=True)
class StandardParams:
    """Natural training has no hyper-parameters."""


@METHODS.register("standard", help="natural training: CE on clean inputs")
class Standard(Method):
    """Natural (non-adversarial) training: ``loss = CE(f(x), y)``; logits = f(x)."""

    Params = StandardParams

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y)
        return LossOutput(loss, logits, {"loss_ce": loss.detach(), "acc_nat": accuracy(logits, batch.y)})


# --------------------------------------------------------------------------- PGD-AT
@dataclass(frozen=True)
class PGDATParams(PGDAdversaryParams):
    """Hyper-parameters of PGD-AT: the adversary of :class:`PGDAdversaryParams` (eps, alpha,
    steps, start, bn_mode) and its ``norm`` (``linf``; ``l2`` for an L2 threat model)."""

    norm: str = "linf"

    def attack(self, norm: str | None = None) -> PGD:
        return super().attack(self.norm if norm is None else norm)


@METHODS.register("pgd_at", help="PGD adversarial training (Madry et al. 2018): CE on PGD-10 adversaries")
class PGDAT(Method):
    """PGD adversarial training ("SAT").

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
    ICLR 2018, arXiv:1706.06083.

    ``loss = CE(f(x'), y)`` with x' = PGD(x) (CE, uniform start); logits = f(x'). f(x) is
    not computed: the loss does not need it.

    Example:
        >>> import torch
        >>> from robustrain.data.batch import Batch
        >>> from robustrain.methods import MethodContext, create_method
        >>> ctx = MethodContext(num_classes=3, image_shape=(3, 2, 2), num_train=4, epochs=1)
        >>> method = create_method("pgd_at", ctx, steps=2)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> out = method(model, Batch(torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]), torch.arange(4)))
        >>> out.logits.shape, sorted(out.metrics)
        (torch.Size([4, 3]), ['acc_adv', 'loss_ce'])
    """

    Params = PGDATParams

    def __init__(self, params: PGDATParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.attack = params.attack()

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        x_adv = self.attack(model, batch.x, batch.y)
        logits_adv = model(x_adv)
        loss = F.cross_entropy(logits_adv, batch.y)
        return LossOutput(
            loss, logits_adv, {"loss_ce": loss.detach(), "acc_adv": accuracy(logits_adv, batch.y)}
        )


# --------------------------------------------------------------------------- TRADES
def _kl_to_target(logits: Tensor, target_logits: Tensor) -> Tensor:
    """TRADES' attack objective: per-example KL(softmax(target) || softmax(logits))."""
    return kl_from_logits(target_logits, logits, reduction="none")


@taped  # with its clean target forward: AWP replays the whole adversary
def trades_adversary(model: nn.Module, x: Tensor, p: "_BetaATParams") -> Tensor:
    """TRADES' adversary: x' maximising KL(f(x) || f(x')) by Linf PGD from x + init_std · N(0, 1).

    The natural target f(x) is computed once, in the attack's ``bn_mode`` (the official
    code recomputes this identical eval-mode prediction at every step). Shared by TRADES
    and HAT.
    """
    with torch.no_grad(), bn_mode(model, p.bn_mode):
        target_logits = model(x)
    return pgd(
        model, x, target_logits, eps=p.eps, alpha=p.alpha, steps=p.steps, norm="linf",
        loss=_kl_to_target, start="normal", init_std=p.init_std, bn_mode=p.bn_mode,
    )


@dataclass(frozen=True)
class _BetaATParams:
    """Fields shared by TRADES and MART: a regulariser weight and a Gaussian-start PGD."""

    beta: float = 6.0
    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 10
    init_std: float = 0.001
    bn_mode: str = "eval"

    def __post_init__(self) -> None:
        check_field_types(self)
        check_nonnegative("beta", self.beta)
        check_budget("eps", self.eps)
        check_step("alpha", self.alpha)
        self.attack()  # validates the attack fields once, in one place

    def attack(self) -> PGD:
        """PGD on CE from x + init_std · N(0, 1) (MART's attack; TRADES swaps in the KL)."""
        return PGD(
            eps=self.eps, alpha=self.alpha, steps=self.steps, norm="linf", loss="ce",
            start="normal", init_std=self.init_std, bn_mode=self.bn_mode,
        )


@dataclass(frozen=True)
class TRADESParams(_BetaATParams):
    """Hyper-parameters of TRADES.

    Defaults: official yaodongyu/TRADES (``trades.py``; README: β = 6 for CIFAR-10; attack
    of 10 steps from x + 0.001 · N(0, 1) in eval mode, maximising the KL), with the UIAT
    paper's ε = 8/255, α = 2/255 (official script: 0.031 / 0.007).
    """


@METHODS.register("trades", help="TRADES (Zhang et al. 2019): CE(f(x)) + beta KL(f(x) || f(x'))")
class TRADES(Method):
    """TRADES.

    Paper: Zhang et al., "Theoretically Principled Trade-off between Robustness and
    Accuracy", ICML 2019, arXiv:1901.08573.

    x' maximises KL(f(x) || f(x')) (Linf PGD from x + 0.001 · N(0, 1), the natural target
    computed once in the attack's ``bn_mode``); ``loss = CE(f(x), y) + β · KL(f(x) || f(x'))``
    (:func:`robustrain.methods.losses.trades_loss`); logits = f(x').
    """

    Params = TRADESParams

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        p = self.params
        x, y = batch.x, batch.y
        x_adv = trades_adversary(model, x, p)
        logits_nat = model(x)
        logits_adv = model(x_adv)
        terms = trades_loss(logits_nat, logits_adv, y, p.beta)
        return LossOutput(terms.total, logits_adv, two_view_metrics(terms, logits_nat, logits_adv, y))


# --------------------------------------------------------------------------- MART
@dataclass(frozen=True)
class MARTParams(_BetaATParams):
    """Hyper-parameters of MART.

    Defaults: official YisenWang/MART (``mart.py``, ``train_wideresnet.py``: β = 6, PGD-10
    on CE from x + 0.001 · N(0, 1) in eval mode), with the UIAT paper's ε = 8/255,
    α = 2/255 (official script: 0.031 / 0.007).

    β depends on the architecture in the official code: ``train_wideresnet.py`` L41
    ``parser.add_argument('--beta', default=6.0, ...)`` (WideResNet, this default) but
    ``train_resnet.py`` L41 ``parser.add_argument('--beta', default=5.0, ...)`` (ResNet-18).
    The ResNet-18 presets therefore set ``beta: 5.0`` (``configs/cifar10/mart_resnet18.yaml``,
    ``configs/table1/mart-cifar100.yaml``, ``configs/table1/mart-svhn.yaml``; issue 13); a
    WideResNet run keeps 6.0.
    """


@METHODS.register("mart", help="MART (Wang et al. 2020): boosted CE + beta misclassification-weighted KL")
class MART(Method):
    """MART.

    Paper: Wang et al., "Improving Adversarial Robustness Requires Revisiting Misclassified
    Examples", ICLR 2020.

    x' = PGD-10 on CE from x + 0.001 · N(0, 1) (the official start; here projected onto the
    ball ∩ [0, 1] before the first step, the official code only clamps after it);
    ``loss = BCE(f(x'), y) + β · mean_i KL(f(x_i) || f(x'_i)) (1 - f(x_i)_{y_i})``
    (:func:`robustrain.methods.losses.mart_loss`); logits = f(x').
    """

    Params = MARTParams

    def __init__(self, params: MARTParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.attack = params.attack()

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        x, y = batch.x, batch.y
        x_adv = self.attack(model, x, y)
        # natural forward first, as the official code (the order of BN running-stat updates)
        logits_nat = model(x)
        logits_adv = model(x_adv)
        terms = mart_loss(logits_nat, logits_adv, y, self.params.beta)
        return LossOutput(terms.total, logits_adv, two_view_metrics(terms, logits_nat, logits_adv, y))
