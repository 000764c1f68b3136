"""Pure loss formulas of the training methods; each exists once and the methods call it.

Notation:
    p = softmax(f(x)) natural probabilities, q = softmax(f(x')) adversarial probabilities.
    beta (β): weight of the robustness regulariser (TRADES' 1/λ, MART's β); 6 for both on
        CIFAR-10 in the official code.
    KL(p || q) = Σ_j p_j (log p_j - log q_j), with 0 · log 0 = 0.

UIAT (Dong et al. 2023, arXiv:2211.00525) adds two formulas, see
:mod:`robustrain.methods.inverse` for their notation: the inverse adversarial loss L_Inv
(:func:`inverse_loss`, Eq. 4) and the training loss L_UIAT (:func:`uiat_loss`, Eq. 7).

Composite losses return :class:`LossTerms` ``(total, ce, reg)`` with ``total = ce + β·reg``
so a method can log the two parts without computing them twice.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from robustrain.utils.checks import check_choice

__all__ = [
    "HATTerms",
    "LossTerms",
    "hat_loss",
    "inverse_loss",
    "kl_div",
    "kl_from_logits",
    "l1_per_example",
    "mart_loss",
    "trades_loss",
    "uiat_loss",
    "uiat_regulariser",
]

_REDUCTIONS = ("batchmean", "sum", "none")


class LossTerms(NamedTuple):
    """A composite loss and its parts: ``total = ce + beta * reg`` (scalars)."""

    total: Tensor
    ce: Tensor
    reg: Tensor


def _reduce(per_example: Tensor, reduction: str) -> Tensor:
    check_choice("reduction", reduction, _REDUCTIONS)
    if reduction == "none":
        return per_example
    total = per_example.sum()
    return total / per_example.shape[0] if reduction == "batchmean" else total


def kl_div(p: Tensor, log_q: Tensor, reduction: str = "batchmean") -> Tensor:
    """KL(p || q) per row from probabilities ``p`` and log-probabilities ``log_q``.

    ``Σ_j p_j (log p_j - log q_j)`` with 0 · log 0 = 0: the value of ``F.kl_div(log_q, p)``
    (``nn.KLDivLoss``, used by the official TRADES and MART code). Unlike ``F.kl_div`` the
    gradient w.r.t. ``p`` is finite where p_j = 0: ``F.kl_div`` back-propagates
    ``log p_j = -inf`` there, and through a saturated ``softmax`` (any logit gap > ~104 in
    float32) that becomes NaN in every logit.

    Args:
        p: (N, C) target probabilities (rows sum to 1); may carry gradient.
        log_q: (N, C) log-probabilities of the approximating distribution.
        reduction: ``"batchmean"`` (sum / N, default), ``"sum"`` or ``"none"`` -> (N,).

    Example:
        >>> p = torch.tensor([[0.5, 0.5]])
        >>> round(float(kl_div(p, torch.log(torch.tensor([[0.25, 0.75]])))), 4)
        0.1438
    """
    tiny = torch.finfo(p.dtype).tiny
    # where(), not xlogy: the unselected branch's gradient (log tiny - log q) is finite,
    # so p_j = 0 entries contribute exactly 0 to value and gradient
    terms = torch.where(p > 0, p * (torch.log(p.clamp_min(tiny)) - log_q), torch.zeros_like(p))
    return _reduce(terms.sum(dim=1), reduction)


def kl_from_logits(target_logits: Tensor, logits: Tensor, reduction: str = "batchmean") -> Tensor:
    """KL(softmax(target_logits) || softmax(logits)), the TRADES regulariser.

    Args:
        target_logits: (N, C) logits of the target distribution p (natural prediction).
        logits: (N, C) logits of q (adversarial prediction).
        reduction: ``"batchmean"`` (default), ``"sum"`` or ``"none"`` -> (N,).

    Example:
        >>> z = torch.tensor([[1.0, 2.0, 3.0]])
        >>> abs(float(kl_from_logits(z, z))) < 1e-6
        True
    """
    return kl_div(F.softmax(target_logits, dim=1), F.log_softmax(logits, dim=1), reduction)


def trades_loss(logits_nat: Tensor, logits_adv: Tensor, y: Tensor, beta: float) -> LossTerms:
    """TRADES: ``CE(f(x), y) + β · KL(softmax f(x) || softmax f(x'))``.

    Paper: Zhang et al., "Theoretically Principled Trade-off between Robustness and
    Accuracy", ICML 2019, arXiv:1901.08573. As the official ``trades.py``
    (yaodongyu/TRADES): ``KLDivLoss(sum)(log_softmax(adv), softmax(nat)) / batch_size``,
    the gradient flows through BOTH f(x) and f(x') (the natural target is not detached).
    Same value as the official loss; finite gradient where its gradient is NaN (saturated
    natural softmax, see :func:`kl_div`).

    Args:
        logits_nat: (N, C) f(x).
        logits_adv: (N, C) f(x').
        y: (N,) labels.
        beta: β >= 0 (6 in the official CIFAR-10 setting).

    Returns:
        LossTerms(total, ce = CE(f(x), y), reg = batch-mean KL).

    Example:
        >>> z = torch.tensor([[2.0, 0.0]])
        >>> t = trades_loss(z, z, torch.tensor([0]), beta=6.0)
        >>> abs(float(t.reg)) < 1e-6, abs(float(t.total - t.ce)) < 1e-5
        (True, True)
    """
    ce = F.cross_entropy(logits_nat, y)
    reg = kl_from_logits(logits_nat, logits_adv)
    return LossTerms(ce + beta * reg, ce, reg)


class HATTerms(NamedTuple):
    """HAT's loss and its three parts (scalars): ``total = ce + beta * reg + gamma * helper``."""

    total: Tensor
    ce: Tensor
    reg: Tensor
    helper: Tensor


def hat_loss(logits_nat: Tensor, logits_adv: Tensor, logits_help: Tensor, y: Tensor, y_help: Tensor,
             beta: float, gamma: float) -> HATTerms:
    """HAT: ``CE(f(x), y) + β · KL(f(x) || f(x')) + γ · CE(f(x + h(x' - x)), ŷ)``.

    Paper: Rade & Moosavi-Dezfooli, "Reducing Excessive Margin to Achieve a Better Accuracy
    vs. Robustness Trade-off", ICLR 2022 (helper-based adversarial training). The first two
    terms are exactly :func:`trades_loss` (the official ``hat_loss`` of imrahulr/hat computes
    them the same way, gradient through both f(x) and f(x')); the third is plain
    cross-entropy of the helper example against the helper labels ŷ.

    Args:
        logits_nat: (N, C) f(x).
        logits_adv: (N, C) f(x'), x' the TRADES (KL) adversary.
        logits_help: (N, C) f(x + h(x' - x)).
        y: (N,) labels.
        y_help: (N,) ŷ = argmax of the standard-trained helper model on x'.
        beta: β >= 0, weight of the KL term.
        gamma: γ >= 0, weight of the helper term.

    Returns:
        HATTerms(total, ce = CE(f(x), y), reg = batch-mean KL, helper = CE(f(x_help), ŷ)).

    Example:
        >>> z = torch.tensor([[2.0, 0.0]])
        >>> t = hat_loss(z, z, z, torch.tensor([0]), torch.tensor([1]), beta=2.5, gamma=0.5)
        >>> abs(float(t.total - t.ce - 0.5 * t.helper)) < 1e-6, round(float(t.helper), 4)
        (True, 2.1269)
    """
    terms = trades_loss(logits_nat, logits_adv, y, beta)
    helper = F.cross_entropy(logits_help, y_help)
    return HATTerms(terms.total + gamma * helper, terms.ce, terms.reg, helper)


def mart_loss(logits_nat: Tensor, logits_adv: Tensor, y: Tensor, beta: float) -> LossTerms:
    """MART: boosted CE on x' + β · misclassification-weighted KL.

    Paper: Wang et al., "Improving Adversarial Robustness Requires Revisiting Misclassified
    Examples", ICLR 2020. Reproduces the official ``mart.py`` (YisenWang/MART)::

        BCE = CE(f(x'), y) + mean_i[-log(1.0001 - q_i[y'_i] + 1e-12)]
              y'_i = argmax_{j != y_i} q_ij   (most likely wrong class)
        reg = (1/N) Σ_i KL(p_i || q_i) · (1.0000001 - p_i[y_i]),
              KL computed against log(q + 1e-12)
        total = BCE + β · reg

    The constants are the official ones and keep the loss finite when softmax saturates:
    ``1.0001 -`` and ``+ 1e-12`` stop ``log(0)`` when q[y'] -> 1, ``log(q + 1e-12)`` stops
    ``log(0)`` when q_j -> 0 (the official code uses it instead of ``log_softmax``), and
    ``1.0000001 -`` keeps a tiny weight on examples with p[y] = 1. One deliberate
    difference: the official ``KLDivLoss`` gives NaN gradients when the natural softmax
    saturates (p_j == 0 in float32); :func:`kl_div` has the same value and finite gradients.

    Args:
        logits_nat: (N, C) f(x).
        logits_adv: (N, C) f(x').
        y: (N,) labels.
        beta: β >= 0 (6 in the official CIFAR-10 setting).

    Returns:
        LossTerms(total, ce = BCE, reg).
    """
    q = F.softmax(logits_adv, dim=1)
    is_y = F.one_hot(y, q.shape[1]).bool()
    # the official argsort-top-2 rule is the argmax over the wrong classes
    y_wrong = q.masked_fill(is_y, float("-inf")).argmax(dim=1)
    bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - q + 1e-12), y_wrong)

    p = F.softmax(logits_nat, dim=1)
    p_true = p.gather(1, y[:, None]).squeeze(1)
    kl = kl_div(p, torch.log(q + 1e-12), reduction="none")
    reg = (kl * (1.0000001 - p_true)).sum() / y.shape[0]
    return LossTerms(bce + beta * reg, bce, reg)


# --------------------------------------------------------------------------- UIAT
def l1_per_example(a: Tensor, b: Tensor) -> Tensor:
    """Per-example L1 distance of UIAT's feature regulariser: ``mean_d |a_d - b_d|`` -> (N,).

    The mean (not the sum) over the feature dimension, as ``F.l1_loss`` of the official code
    applied per example; leading dimension = examples, the rest are flattened.

    Example:
        >>> l1_per_example(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 0.0]])).tolist()
        [2.0]
    """
    return (a - b).abs().flatten(1).mean(dim=1)


def inverse_loss(
    logits_inv: Tensor,
    y: Tensor,
    feat_inv: Tensor | None = None,
    feat_nat: Tensor | None = None,
    feat_adv: Tensor | None = None,
    beta: float = 0.0,
) -> Tensor:
    """UIAT's inverse adversarial loss L_Inv (Eq. 4), per example; inverse adversaries DESCEND it.

    ``L_Inv(x~) = CE(f(x~), y) + β · [ L1(F(x~), F(x)) - L1(F(x~), F(x^)) ]``

    with F the penultimate features and L1 the mean absolute difference per example
    (:func:`l1_per_example`): pulls x~ toward the natural features and away from the
    adversarial ones (a triplet on the features). ``beta = 0`` is CE only (no feature
    regulariser; the features may then be None).

    Args:
        logits_inv: (N, C) f(x~), may carry gradient.
        y: (N,) labels.
        feat_inv: (N, D) F(x~), may carry gradient (required when beta != 0).
        feat_nat: (N, D) F(x), a constant (detached) reference.
        feat_adv: (N, D) F(x^), a constant (detached) reference.
        beta: β >= 0, a Python float (1.0 in the paper).

    Returns:
        (N,) per-example losses; sum them for a per-class or batch total.

    Example:
        >>> z, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
        >>> f = torch.tensor([[1.0, 1.0]])
        >>> round(float(inverse_loss(z, y, f, f + 1.0, f + 3.0, beta=1.0)), 4)  # CE + (1 - 3)
        -1.8731
    """
    ce = F.cross_entropy(logits_inv, y, reduction="none")
    if beta == 0:
        return ce
    if feat_inv is None or feat_nat is None or feat_adv is None:
        raise ValueError("inverse_loss with beta != 0 needs feat_inv, feat_nat and feat_adv")
    return ce + beta * (l1_per_example(feat_inv, feat_nat) - l1_per_example(feat_inv, feat_adv))


def uiat_regulariser(logits_adv: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """UIAT's regulariser ``KL(p || softmax f(x^))``, batch mean (Eq. 7 and Eq. 13).

    KL(p || q) = Σ_j p_j (log p_j - log q_j) (:func:`kl_div`) with the target p FIRST: the
    adversarial prediction q is pulled toward p, not the reverse. Gradient flows into p only
    if the caller left it attached.

    Args:
        logits_adv: (N, C) f(x^), logits of the adversarial examples.
        target: (N, C) target probabilities p (rows sum to 1).
        weight: optional (N,) per-example weights (0 = that example has no target); the sum
            is still divided by N.

    Returns:
        scalar ``(1/N) Σ_i w_i KL(p_i || q_i)``.

    Example:
        >>> p = torch.tensor([[0.5, 0.5]])
        >>> round(float(uiat_regulariser(torch.log(torch.tensor([[0.25, 0.75]])), p)), 4)
        0.1438
    """
    kl = kl_div(target, F.log_softmax(logits_adv, dim=1), reduction="none")
    if weight is not None:
        kl = kl * weight
    return kl.sum() / logits_adv.shape[0]


def uiat_loss(
    logits_adv: Tensor, y: Tensor, target: Tensor, lam: float, weight: Tensor | None = None
) -> LossTerms:
    """UIAT's training loss (Eq. 7): ``CE(f(x^), y) + λ · KL(p || softmax f(x^))``.

    The regulariser is :func:`uiat_regulariser` (batch mean, target p first).

    Args:
        logits_adv: (N, C) f(x^), logits of the adversarial examples.
        y: (N,) labels.
        target: (N, C) target probabilities p (rows sum to 1).
        lam: λ >= 0 (3.5 for CIFAR, 3.0 for SVHN).
        weight: optional (N,) per-example weights of the KL term, see :func:`uiat_regulariser`.

    Returns:
        LossTerms(total, ce, reg = batch-mean (weighted) KL).

    Example:
        >>> p = torch.tensor([[0.5, 0.5]])
        >>> t = uiat_loss(torch.log(torch.tensor([[0.25, 0.75]])), torch.tensor([1]), p, lam=1.0)
        >>> round(float(t.reg), 4)  # KL(p || q); KL(q || p) would be 0.1308
        0.1438
    """
    ce = F.cross_entropy(logits_adv, y)
    reg = uiat_regulariser(logits_adv, target, weight)
    return LossTerms(ce + lam * reg, ce, reg)
