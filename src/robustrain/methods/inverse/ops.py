"""Pure functions of the inverse family: momentum, the universal sign step, x~ = clip(x + z_y),
the schedule arithmetic, and the small forward / metric helpers the methods share.

Nothing here holds state; :class:`~robustrain.methods.inverse.targets.InverseTargets` owns the
buffers and calls these.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from robustrain.methods.at import accuracy, prediction_stats
from robustrain.methods.losses import LossTerms, inverse_loss
from robustrain.models.base import logits_and_features
from robustrain.utils.distributed import all_reduce_sum

__all__ = [
    "adversarial_forward",
    "apply_universal_perturbation",
    "epoch_from_fraction",
    "momentum_update",
    "target_metrics",
    "universal_sign_step",
]


def momentum_update(p_prev: Tensor, p_cur: Tensor, gamma: float) -> Tensor:
    """Inverse-adversary momentum (Eq. 8, t >= T): ``gamma * p_prev + (1 - gamma) * p_cur``.

    Example:
        >>> momentum_update(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 0.75).tolist()
        [0.75, 0.25]
    """
    return gamma * p_prev + (1.0 - gamma) * p_cur


def universal_sign_step(z: Tensor, grad: Tensor, *, alpha: float, eps: float, present: Tensor) -> Tensor:
    """One descent step of the class-wise universal perturbations (Algorithm 1, line 11).

    ``z_c <- clip(z_c - alpha * sign(grad_c), -eps, eps)`` for the classes with
    ``present[c]``; the other rows are returned unchanged.

    Args:
        z: (C, ...) universal perturbations.
        grad: (C, ...) gradient of the per-class summed inverse loss w.r.t. z.
        alpha: step size alpha' >= 0 (4/255).
        eps: Linf radius eps' >= 0 (4/255).
        present: (C,) bool, classes that occur in the batch.

    Returns:
        the new z (a new tensor), inside the eps'-ball.

    Example:
        >>> z = torch.zeros(2, 1)
        >>> universal_sign_step(z, torch.tensor([[1.0], [-1.0]]), alpha=0.5, eps=0.25,
        ...                     present=torch.tensor([True, False])).flatten().tolist()
        [-0.25, 0.0]
    """
    stepped = (z - alpha * torch.sign(grad)).clamp(-eps, eps)
    return torch.where(present.view(-1, *([1] * (z.ndim - 1))), stepped, z)


def apply_universal_perturbation(x: Tensor, z: Tensor, y: Tensor) -> Tensor:
    """Universal inverse adversaries ``x~ = clip(x + z_y, 0, 1)``.

    With ``||z_c||_inf <= eps'`` the result lies in B(x, eps') ∩ [0, 1]. Gradient flows into
    z (indexing z[y] accumulates the per-class sums in backward).

    Example:
        >>> x = torch.tensor([[0.0, 0.875]])
        >>> apply_universal_perturbation(x, torch.tensor([[0.25, 0.25]]), torch.tensor([0])).tolist()
        [[0.25, 1.0]]
    """
    return (x + z[y]).clamp(0.0, 1.0)


def epoch_from_fraction(fraction: float, epochs: int) -> int:
    """The 0-based epoch ``floor(fraction * epochs + 0.5)`` of a schedule given as a fraction.

    Example:
        >>> epoch_from_fraction(0.75, 100), epoch_from_fraction(0.8, 400), epoch_from_fraction(0.5, 2)
        (75, 320, 1)
    """
    return int(math.floor(fraction * epochs + 0.5))


def present_classes(y: Tensor, num_classes: int) -> Tensor:
    """(C,) bool: classes with at least one example in the batch, over ALL ranks under DDP.

    Example:
        >>> present_classes(torch.tensor([0, 2, 2]), 4).tolist()
        [True, False, True, False]
    """
    # a bincount without the host sync torch.bincount does on CUDA (it sizes its output
    # from y.max()): index_add_ into a fixed-size buffer
    counts = torch.zeros(num_classes, device=y.device, dtype=torch.float32)
    counts.index_add_(0, y, torch.ones_like(y, dtype=torch.float32))
    return all_reduce_sum(counts) > 0


class InverseTarget(NamedTuple):
    """What the instance-wise inverse attack's loss callable receives as ``y``."""

    y: Tensor
    feat_nat: Tensor
    feat_adv: Tensor


class LogitsWithFeatures(nn.Module):
    """``model(x) -> cat([logits, features])``: lets ``attacks.pgd``'s loss see F(x~) too."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logits, feats = logits_and_features(self.model, x)
        return torch.cat([logits, feats.flatten(1).to(logits.dtype)], dim=1)


def inverse_attack_loss(num_classes: int, beta: float):
    """L_Inv as ``attacks.pgd``'s loss callable on :class:`LogitsWithFeatures`' output."""

    def loss(out: Tensor, target: InverseTarget) -> Tensor:
        return inverse_loss(
            out[:, :num_classes], target.y, out[:, num_classes:], target.feat_nat, target.feat_adv, beta
        )

    return loss


def adversarial_forward(
    model: nn.Module, x: Tensor, x_adv: Tensor, features: Callable[[nn.Module, Tensor], Tensor], beta: float,
    adv_features: str,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The training forward on x^ (the trainer's mode) and, with the feature regulariser
    (``beta`` > 0), L_Inv's F(x) and F(x^).

    ``features`` is the generation-mode feature forward
    (:meth:`~robustrain.methods.inverse.targets.InverseTargets.features`). F(x^) comes from it
    (``adv_features="generation"``: one more no-grad forward, F(x), F(x^), F(x~) all in the
    generation mode) or is the training forward's, detached (``"training_forward"``).

    Returns:
        (logits f(x^) with grad, F(x) or None, F(x^) or None).
    """
    if not beta:
        return model(x_adv), None, None
    if adv_features == "training_forward":
        logits, feats = logits_and_features(model, x_adv)
        feat_adv = feats.detach()
    else:
        logits, feat_adv = model(x_adv), None
    # after the training forward, as before: F(x) sees this batch's running-statistics update
    feat_nat = features(model, x)
    if feat_adv is None:
        feat_adv = features(model, x_adv)
    return logits, feat_nat, feat_adv


def target_metrics(terms: LossTerms, logits_adv: Tensor, target: Tensor, y: Tensor) -> dict[str, Tensor]:
    """The metrics of ``iat`` / ``uiat`` / ``uiat_oneoff`` (device tensors, no host sync):
    the two loss terms, the accuracies of f(x^) and of the target p, and the target's
    ``target_p_max`` / ``target_majority`` (:func:`~robustrain.methods.at.prediction_stats`; the
    student's are the trainer's ``p_max`` / ``majority``): a target sharper than the student and
    one class for the whole batch are how an early one-class collapse shows (issue 19)."""
    return {
        "loss_ce": terms.ce.detach(),
        "loss_reg": terms.reg.detach(),
        "acc_adv": accuracy(logits_adv, y),
        "acc_target": accuracy(target, y),  # accuracy of the target distribution p
        **prediction_stats(target, "target_", probs=True),
    }
