"""Pure loss formulas of the training methods; each exists once and the methods call it.

Notation:
    p = softmax(f(x)) natural probabilities, q = softmax(f(x')) adversarial probabilities.
    beta (β): weight of the robustness regulariser (TRADES' 1/λ, MART's β); 6 for both on
        CIFAR-10 in the official code.
    KL(p || q) = Σ_j p_j (log p_j - log q_j), with 0 · log 0 = 0.

Composite losses return :class:`LossTerms` ``(total, ce, reg)`` with ``total = ce + β·reg``
so a method can log the two parts without computing them twice.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from robustrain.attacks._checks import check_choice

__all__ = ["LossTerms", "kl_div", "kl_from_logits", "mart_loss", "trades_loss"]

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
