"""Single-step adversarial training: FGSM, RS-FGSM, N-FGSM, GradAlign (UIAT paper, Table 5).

Every method here trains on ``loss = CE(f(x'), y)`` with x' from ONE gradient step
(GradAlign adds its gradient-alignment regulariser) and returns ``LossOutput(loss, f(x'),
metrics)``. The adversary's forwards run in the explicit ``bn_mode`` (restored afterwards); the
training forward f(x') runs in whatever mode the trainer left the model (train).

``bn_mode`` defaults to ``train`` here (issue 13): the official single-step scripts generate
their adversary with the model in train mode (BatchNorm on batch statistics, running
statistics updated by the attack forward too), never switching to eval inside the loop:

* locuslab/fast_adversarial ``CIFAR10/train_fgsm.py`` (FGSM / RS-FGSM): ``model.train()`` once
  (L73), then the attack forward ``output = model(X + delta[:X.size(0)])`` (L112) in the loop;
* tml-epfl/understanding-fast-adv-training ``train.py`` (FGSM, GradAlign): ``model.train()``
  (L91), the FGSM forward ``output = model(X_adv)`` and GradAlign's ``get_input_grad`` in the
  loop; ``utils.model_eval`` only around the periodic evaluation, ``utils.model_train`` after;
* pdejorge/N-FGSM ``train.py``: ``model.train()`` (L172), the noisy-point forward
  ``output = model(X + eta)`` in the loop (``model.train()`` again after validation).

``bn_mode="eval"`` (the library's convention for multi-step methods) stays available, and
``train_frozen_stats`` too (:mod:`robustrain.attacks.bn`).

Formulas (Linf, pixels in [0, 1], Π_S = projection onto S, B = B(x, eps)):
    fgsm:       x' = Π_{B ∩ [0,1]}(x + eps · sign(∇_x CE(f(x), y)))
    rs_fgsm:    δ0 ~ U(-eps, eps); x0 = Π_{B ∩ [0,1]}(x + δ0);
                x' = Π_{B ∩ [0,1]}(x0 + alpha · sign(∇ CE(f(x0), y))), alpha = 1.25 eps
    n_fgsm:     η ~ U(-k eps, k eps); x0 = Π_[0,1](x + η);
                x' = Π_[0,1](x0 + alpha · sign(∇ CE(f(x0), y)))   (NOT projected onto B:
                ||x' - x||_inf <= (k + 1) eps)
    grad_align: x' = fgsm(x);  loss = CE(f(x'), y) + cos_lambda · (1 - mean_i cos(g1_i, g2_i)),
                g1 = ∇_x CE at x (detached), g2 = ∇ CE at x + η, η ~ U(-eps, eps) (create_graph:
                double back-propagation through g2 only), examples with ||g1_i|| = 0 or
                ||g2_i|| = 0 dropped from the mean (:func:`grad_align_penalty`).

Nothing here reads tensor values back to the host (no host sync, no data-dependent branch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.attacks import bn as _bn
from robustrain.attacks import fgsm, pgd
from robustrain.attacks.tape import taped
from robustrain.utils.checks import check_budget, check_choice, check_field_types, check_nonnegative, check_step
from robustrain.data.batch import Batch
from robustrain.methods.at import accuracy
from robustrain.methods.base import LossOutput, Method
from robustrain.methods.registry import METHODS

__all__ = [
    "FGSMAT",
    "FGSMATParams",
    "GRAD_ALIGN_LAMBDA_CIFAR10",
    "GradAlign",
    "GradAlignParams",
    "NFGSM",
    "NFGSMParams",
    "RSFGSM",
    "RSFGSMParams",
    "grad_align_penalty",
    "input_gradient",
    "n_fgsm",
    "n_fgsm_noise",
    "n_fgsm_perturb",
]

#: GradAlign's λ per training eps (key: eps · 255) on CIFAR-10, from the official
#: tml-epfl/understanding-fast-adv-training ``sh/exps_diff_eps_cifar10.sh``
#: (``--grad_align_cos_lambda``, log-linear: exp(eps/8 · ln 10 + ln 0.02)); 0.2 at 8/255.
GRAD_ALIGN_LAMBDA_CIFAR10: dict[int, float] = {
    1: 0.027, 2: 0.036, 3: 0.047, 4: 0.063, 5: 0.084, 6: 0.112, 7: 0.150, 8: 0.200,
    9: 0.267, 10: 0.356, 11: 0.474, 12: 0.632, 13: 0.843, 14: 1.124, 15: 1.500, 16: 2.000,
}


# --------------------------------------------------------------------------- pure functions
def input_gradient(model: nn.Module, x: Tensor, y: Tensor, *, create_graph: bool = False) -> Tensor:
    """∇_x of the SUMMED per-example CE at x (the model's current mode; the caller picks it).

    Summed, not averaged: each example's gradient does not depend on the batch size (the
    official scripts differentiate the batch mean; signs and cosines are the same). With
    ``create_graph=False`` the result is detached; parameters' ``.grad`` are never touched.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x, create_graph=create_graph)
    return grad if create_graph else grad.detach()


def n_fgsm_noise(
    x: Tensor, eps: float, k: float = 2.0, generator: torch.Generator | None = None
) -> Tensor:
    """N-FGSM's noise η ~ U(-k·eps, k·eps), elementwise, shape of x (k = 2: U(-2eps, 2eps))."""
    return torch.empty_like(x).uniform_(-k * eps, k * eps, generator=generator)


def n_fgsm_perturb(
    x: Tensor, eta: Tensor, grad: Tensor, alpha: float, clip: tuple[float, float] = (0.0, 1.0)
) -> Tensor:
    """N-FGSM's adversary from the noise and the gradient at the noisy point.

    ``x0 = clamp(x + η, clip)``, ``x' = clamp(x0 + alpha · sign(grad), clip)``: clamped to the
    pixel box only, NEVER projected onto the eps ball (de Jorge et al. 2022: ``--clip -1``),
    so ``||x' - x||_inf <= ||η||_inf + alpha`` (3 eps with the defaults).

    Args:
        x: natural inputs. eta: the noise (:func:`n_fgsm_noise`). grad: ∇ CE at ``x0``.
        alpha: step size. clip: pixel box (0, 1).

    Example:
        >>> x = torch.tensor([0.5, 0.0, 1.0]); eta = torch.tensor([0.1, -0.1, 0.05])
        >>> n_fgsm_perturb(x, eta, torch.tensor([1.0, -1.0, 1.0]), 0.2).tolist()
        [0.800000011920929, 0.0, 1.0]
    """
    low, high = clip
    x0 = (x + eta).clamp(low, high)
    return (x0 + alpha * torch.sign(grad)).clamp(low, high)


@taped
def n_fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    k: float = 2.0,
    bn_mode: str = "train",
    generator: torch.Generator | None = None,
) -> Tensor:
    """N-FGSM adversary (de Jorge et al. 2022): noise U(-k eps, k eps), one sign step of
    alpha from the (box-clamped) noisy point, no projection onto the eps ball. Detached.

    ``bn_mode`` defaults to ``train``, as the official ``train.py`` (``model.train()``, L172)."""
    x = x.detach()
    eta = n_fgsm_noise(x, eps, k, generator)
    x0 = (x + eta).clamp(0.0, 1.0)
    with _bn.bn_mode(model, bn_mode):
        grad = input_gradient(model, x0, y)
    return n_fgsm_perturb(x, eta, grad, alpha).detach()


def grad_align_penalty(g1: Tensor, g2: Tensor) -> Tensor:
    """GradAlign's regulariser ``1 - mean_i cos(g1_i, g2_i)`` over the examples whose two
    gradients are both nonzero (the official code's ``grads_nnz_idx``).

    The dropped rows are masked, not indexed out (no host sync): the mean divides by the
    number of kept rows clamped to >= 1, so a batch with none kept gives 0 (the official
    ``cos.mean()`` of an empty tensor is NaN).

    Args:
        g1, g2: (N, ...) per-example gradients (same shape).

    Returns:
        0-dim tensor in [0, 2]; differentiable through g1 and g2 (finite at zero rows).

    Example:
        >>> g1 = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
        >>> g2 = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0]])
        >>> round(float(grad_align_penalty(g1, g2)), 6)  # rows: cos 0 and 1, third dropped
        0.5
    """
    if g1.shape != g2.shape:
        raise ValueError(f"gradients must have the same shape, got {tuple(g1.shape)} and {tuple(g2.shape)}")
    a, b = g1.flatten(1), g2.flatten(1)
    na = torch.linalg.vector_norm(a, dim=1)
    nb = torch.linalg.vector_norm(b, dim=1)
    keep = (na != 0) & (nb != 0)
    denom = torch.where(keep, na * nb, torch.ones_like(na))
    cos = (a * b).sum(dim=1) / denom
    one_minus_cos = torch.where(keep, 1.0 - cos, torch.zeros_like(cos))
    return one_minus_cos.sum() / keep.sum().clamp(min=1)


# --------------------------------------------------------------------------- shared
def _check_bn_mode(value: str) -> None:
    check_choice("bn_mode", value, _bn.BN_MODES)


class _SingleStepAT(Method):
    """``loss = CE(f(x'), y)`` with x' = :meth:`adversary`; logits = f(x')."""

    def adversary(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        x_adv = self.adversary(model, batch.x, batch.y)
        logits_adv = model(x_adv)
        loss = F.cross_entropy(logits_adv, batch.y)
        return LossOutput(loss, logits_adv, {"loss_ce": loss.detach(), "acc_adv": accuracy(logits_adv, batch.y)})


# --------------------------------------------------------------------------- FGSM
@dataclass(frozen=True)
class FGSMATParams:
    """Hyper-parameters of FGSM-AT.

    Defaults: eps = 8/255 (UIAT paper, Table 5); step = eps from x (zero init), as
    Goodfellow et al. 2015 and the ``--attack=fgsm --attack_init=zero`` runs of the official
    GradAlign code (``fgsm_alpha = 1``); ``bn_mode = "train"`` as the official FGSM scripts
    (tml-epfl/understanding-fast-adv-training ``train.py`` L91 ``model.train()``, the FGSM
    forward ``model(X_adv)`` in train mode; locuslab/fast_adversarial ``CIFAR10/train_fgsm.py``
    L73 / L112). ``eval`` stays an option.
    """

    eps: float = 8 / 255
    bn_mode: str = "train"

    def __post_init__(self) -> None:
        check_field_types(self)
        check_budget("eps", self.eps)
        _check_bn_mode(self.bn_mode)


@METHODS.register("fgsm", help="FGSM-AT (Goodfellow et al. 2015): CE on FGSM adversaries, zero init, step eps")
class FGSMAT(_SingleStepAT):
    """FGSM adversarial training.

    Paper: Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015,
    arXiv:1412.6572. x' = Π_{B ∩ [0,1]}(x + eps · sign(∇_x CE)); ``loss = CE(f(x'), y)``.
    """

    Params = FGSMATParams

    def adversary(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return fgsm(model, x, y, eps=self.params.eps, bn_mode=self.params.bn_mode)


# --------------------------------------------------------------------------- RS-FGSM
@dataclass(frozen=True)
class RSFGSMParams:
    """Hyper-parameters of RS-FGSM ("FGSM-RS").

    Defaults: official locuslab/fast_adversarial (CIFAR-10 ``train_fgsm.py``: ``--epsilon 8``,
    ``--alpha 10`` i.e. alpha = 1.25 eps = 10/255, ``--delta-init random`` i.e. U(-eps, eps),
    the step clamped to [-eps, eps] and to the pixel box). ``alpha`` is absolute: set it to
    1.25·eps when changing eps. ``bn_mode = "train"``: ``train_fgsm.py`` sets ``model.train()``
    once (L73) and runs the attack forward ``model(X + delta[:X.size(0)])`` (L112) in train mode;
    ``eval`` stays an option.
    """

    eps: float = 8 / 255
    alpha: float = 10 / 255
    bn_mode: str = "train"

    def __post_init__(self) -> None:
        check_field_types(self)
        check_budget("eps", self.eps)
        check_step("alpha", self.alpha)
        _check_bn_mode(self.bn_mode)


@METHODS.register("rs_fgsm", help="RS-FGSM (Wong et al. 2020): U(-eps,eps) start, one 1.25*eps step, projected")
class RSFGSM(_SingleStepAT):
    """RS-FGSM adversarial training.

    Paper: Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial
    training", ICLR 2020, arXiv:2001.03994. x' = one PGD step of alpha from a uniform start
    in the ball, projected onto B ∩ [0,1] (:func:`robustrain.attacks.pgd` with
    ``steps=1, start="uniform"``); ``loss = CE(f(x'), y)``.
    """

    Params = RSFGSMParams

    def adversary(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        p = self.params
        return pgd(model, x, y, eps=p.eps, alpha=p.alpha, steps=1, norm="linf", start="uniform", bn_mode=p.bn_mode)


# --------------------------------------------------------------------------- N-FGSM
@dataclass(frozen=True)
class NFGSMParams:
    """Hyper-parameters of N-FGSM.

    Defaults: official pdejorge/N-FGSM ``train.py`` (``--epsilon 8``, ``--alpha 8`` i.e.
    alpha = eps, ``--unif 2.0`` i.e. k = 2: η ~ U(-2 eps, 2 eps), ``--clip -1``: no
    projection onto the eps ball, only the pixel box). ``alpha`` is absolute. ``bn_mode =
    "train"``: ``train.py`` sets ``model.train()`` (L172) and runs the noisy-point forward
    ``model(X + eta)`` in train mode; ``eval`` stays an option.
    """

    eps: float = 8 / 255
    alpha: float = 8 / 255
    k: float = 2.0
    bn_mode: str = "train"

    def __post_init__(self) -> None:
        check_field_types(self)
        check_budget("eps", self.eps)
        check_step("alpha", self.alpha)
        check_nonnegative("k", self.k, "noise of k * eps, e.g. 2")
        _check_bn_mode(self.bn_mode)


@METHODS.register("n_fgsm", help="N-FGSM (de Jorge et al. 2022): U(-2eps,2eps) noise, step eps, no eps-ball projection")
class NFGSM(_SingleStepAT):
    """N-FGSM adversarial training.

    Paper: de Jorge et al., "Make Some Noise: Reliable and Efficient Single-Step Adversarial
    Training", NeurIPS 2022, arXiv:2202.01181. x' = :func:`n_fgsm` (may leave the eps ball,
    never [0, 1]); ``loss = CE(f(x'), y)``.
    """

    Params = NFGSMParams

    def adversary(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        p = self.params
        return n_fgsm(model, x, y, eps=p.eps, alpha=p.alpha, k=p.k, bn_mode=p.bn_mode)


# --------------------------------------------------------------------------- GradAlign
@dataclass(frozen=True)
class GradAlignParams:
    """Hyper-parameters of GradAlign.

    Defaults: official tml-epfl/understanding-fast-adv-training (CIFAR-10,
    ``sh/exps_diff_eps_cifar10.sh``: ``--attack=fgsm --attack_init=zero`` (step eps) and
    ``--grad_align_cos_lambda=0.2`` at eps = 8/255; other eps: :data:`GRAD_ALIGN_LAMBDA_CIFAR10`).
    ``cos_lambda`` is not called ``lam`` because ``<base>+uiat`` adds its own ``lam``.
    ``bn_mode = "train"``: the official ``train.py`` sets ``model.train()`` (L91) and takes both
    gradients (the FGSM one and ``get_input_grad(..., backprop=True)``) in train mode; ``eval``
    stays an option.
    """

    eps: float = 8 / 255
    cos_lambda: float = 0.2
    bn_mode: str = "train"

    def __post_init__(self) -> None:
        check_field_types(self)
        check_budget("eps", self.eps)
        check_nonnegative("cos_lambda", self.cos_lambda)
        _check_bn_mode(self.bn_mode)


@METHODS.register("grad_align", help="GradAlign (Andriushchenko & Flammarion 2020): FGSM-AT + lam*(1 - cos) gradient alignment")
class GradAlign(Method):
    """GradAlign.

    Paper: Andriushchenko & Flammarion, "Understanding and Improving Fast Adversarial
    Training", NeurIPS 2020, arXiv:2007.02617.

    g1 = ∇_x CE at x (detached: the official ``train.py`` detaches the FGSM gradient, and its
    ``get_input_grad(..., delta_init='none', backprop=False)`` also detaches; here it is also
    the FGSM gradient, so it is computed once); x' = Π_{[0,1]}(x + eps · sign(g1));
    η ~ U(-eps, eps) (not clamped to the pixel box, as the official ``get_uniform_delta``);
    g2 = ∇ CE at x + η with ``create_graph=True`` (official ``backprop=True``: the double
    back-propagation goes through g2 only);
    ``loss = CE(f(x'), y) + cos_lambda · grad_align_penalty(g1, g2)``; logits = f(x').
    Both gradients are taken in ``bn_mode`` (the official code: train mode).

    Metrics: ``loss_ce``, ``loss_reg`` (the unweighted penalty), ``acc_adv``.
    """

    Params = GradAlignParams

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        p = self.params
        x, y = batch.x.detach(), batch.y
        with _bn.bn_mode(model, p.bn_mode):
            g1 = input_gradient(model, x, y)
            eta = torch.empty_like(x).uniform_(-p.eps, p.eps)
            g2 = input_gradient(model, x + eta, y, create_graph=True)
        x_adv = (x + p.eps * torch.sign(g1)).clamp(0.0, 1.0)
        logits_adv = model(x_adv)
        ce = F.cross_entropy(logits_adv, y)
        reg = grad_align_penalty(g1, g2)
        loss = ce + p.cos_lambda * reg
        return LossOutput(
            loss, logits_adv,
            {"loss_ce": ce.detach(), "loss_reg": reg.detach(), "acc_adv": accuracy(logits_adv, y)},
        )
