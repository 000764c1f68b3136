"""Functional attacks: ``pgd`` (Linf / L2, ascending or descending), ``fgsm``, ``cw_inf``.

Notation used throughout (the papers' names):
    eps (ε): radius of the threat model's norm ball around the natural input x, in pixel
        units of [0, 1] images (8/255 for CIFAR Linf). The attack's output x' satisfies
        ||x' - x|| <= eps and 0 <= x' <= 1.
    alpha (α): step size of one gradient step (pixel units for Linf; L2 length for L2).
    steps: number of gradient steps.
    kappa (κ): confidence of the Carlini-Wagner margin, the margin is clamped at -κ.

Every attack here is the same loop (:func:`pgd`):

    x'_0 = Π(x + δ_0)                          δ_0 from ``start``
    x'_{t+1} = Π(x'_t + s · α · dir(∇_{x'} Σ_i L(f(x'_t)_i, y_i)))

with Π the projection onto B(x, eps) ∩ [0, 1], ``dir`` = sign (Linf) or the per-example
L2-normalised gradient (L2), and s = +1 (maximise L: untargeted attack) or s = -1 (minimise
L: ``targeted=True`` toward target labels, or ``descend=True`` for the *inverse* adversarial
examples of UIAT, Dong et al. 2023, arXiv:2211.00525). The per-example losses are SUMMED,
not averaged, so the step each example takes does not depend on the batch size.

Guarantees: the result is detached, inside the eps-ball ∩ [0, 1], the model's train/eval
flags are restored exactly (see :mod:`robustrain.attacks.bn`), no parameter ``.grad`` is
touched (gradients via ``torch.autograd.grad`` w.r.t. the adversarial input only), and the
loop performs no host synchronisation (no reading tensor values back to Python, no
branching on them). Under ``torch.autocast`` (bf16 training) only the model's forwards run in
low precision: the perturbation, its gradient, the step, the projection and the clamp stay in
x's dtype (float32), so the eps-ball bound is exact.
"""

from __future__ import annotations

import functools
import numbers
from typing import Callable, NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.attacks import bn as _bn
from robustrain.attacks.tape import taped
from robustrain.utils.checks import check_choice, check_int, check_nonnegative
from robustrain.utils.registry import Registry

__all__ = [
    "ATTACK_LOSSES",
    "NORMS",
    "STARTS",
    "AttackLoss",
    "Start",
    "ce_loss",
    "cw_inf",
    "fgsm",
    "margin_loss",
    "neg_margin_loss",
    "pgd",
    "validate_attack_args",
]

#: ``loss(logits, y) -> per-example loss of shape (N,)``; the attack ascends it.
AttackLoss = Callable[[Tensor, Tensor], Tensor]
#: a start name (see :data:`STARTS`) or an explicit initial perturbation broadcastable to x.
Start = Union[str, Tensor]


# --------------------------------------------------------------------------- losses
def margin_loss(logits: Tensor, y: Tensor, kappa: float = 50.0) -> Tensor:
    """Carlini-Wagner margin ``max(z_y - max_{i != y} z_i, -kappa)`` per example.

    Positive when the example is classified as ``y``; an untargeted attack drives it down
    (it ascends :func:`neg_margin_loss`). ``kappa = 50`` is the confidence of the CW∞
    evaluation in the GAIRAT / LRAT code (``cwloss(..., confidence=50)``), whose loss
    ``-clamp(real - other + 50, min=0)`` equals ``-(margin_loss + 50)``: same gradient.

    Args:
        logits: (N, C) logits z.
        y: (N,) int64 labels.
        kappa: margin clamp κ >= 0 (default 50).

    Returns:
        (N,) margins.

    Example:
        >>> margin_loss(torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([0])).tolist()
        [2.0]
    """
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    is_y = F.one_hot(y, logits.shape[1]).bool()
    z_other = logits.masked_fill(is_y, float("-inf")).amax(dim=1)
    return torch.clamp(z_y - z_other, min=-kappa)


def neg_margin_loss(logits: Tensor, y: Tensor, kappa: float = 50.0) -> Tensor:
    """``-margin_loss``: the objective an untargeted CW attack ascends (pushes z_y down)."""
    return -margin_loss(logits, y, kappa)


def ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example cross-entropy, shape (N,)."""
    return F.cross_entropy(logits, y, reduction="none")


ATTACK_LOSSES: Registry[AttackLoss] = Registry("attack loss")
ATTACK_LOSSES.add("ce", ce_loss, help="cross-entropy")
ATTACK_LOSSES.add("margin", neg_margin_loss, help="negative CW margin, kappa=50 (ascend = misclassify)")


def _resolve_loss(loss: str | AttackLoss) -> AttackLoss:
    if callable(loss):
        return loss
    check_choice("loss", loss, ATTACK_LOSSES.names())
    return ATTACK_LOSSES.get(loss)


# --------------------------------------------------------------------------- geometry
def _per_example(v: Tensor, like: Tensor) -> Tensor:
    """(N,) -> (N, 1, ..., 1) broadcastable against ``like``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def _l2_norm(v: Tensor) -> Tensor:
    return v.flatten(1).norm(p=2, dim=1)


#: ``projector(x, eps, low, high)`` -> the per-step map onto B(x, eps) ∩ [low, high]
Projector = Callable[[Tensor, float, float, float], Callable[[Tensor], Tensor]]


class _Norm(NamedTuple):
    """What differs between threat models: step direction, projection, uniform draw."""

    direction: Callable[[Tensor], Tensor]  # steepest-ascent unit step for a gradient
    project: Callable[[Tensor, Tensor, float], Tensor]  # (x, x_adv, eps) -> into B(x, eps)
    uniform: Callable[[Tensor, float, "torch.Generator | None"], Tensor]  # random δ in B(0, eps)
    projector: Projector  # B(x, eps) ∩ box, with what depends on x alone computed once


def _linf_project(x: Tensor, x_adv: Tensor, eps: float) -> Tensor:
    # min/max in x-space (not clamp of x_adv - x, then + x): exact bounds, no rounding drift
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps)


def _linf_projector(x: Tensor, eps: float, low: float, high: float) -> Callable[[Tensor], Tensor]:
    # B(x, eps) ∩ [low, high] is the box [lo, hi]: one clamp per step instead of four
    # elementwise ops; bitwise equal to _linf_project(...).clamp(low, high) (selections only)
    lo = (x - eps).clamp_(low, high)
    hi = (x + eps).clamp_(low, high)
    return lambda x_adv: torch.clamp(x_adv, lo, hi)


def _linf_uniform(x: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    return torch.empty_like(x).uniform_(-eps, eps, generator=generator)


def _l2_direction(grad: Tensor) -> Tensor:
    # +1e-12: a zero gradient gives a zero step instead of NaN, without a data-dependent branch
    return grad / (_per_example(_l2_norm(grad), grad) + 1e-12)


def _l2_project(x: Tensor, x_adv: Tensor, eps: float) -> Tensor:
    delta = x_adv - x
    factor = torch.clamp(eps / (_l2_norm(delta) + 1e-12), max=1.0)
    return x + delta * _per_example(factor, delta)


def _l2_projector(x: Tensor, eps: float, low: float, high: float) -> Callable[[Tensor], Tensor]:
    return lambda x_adv: _l2_project(x, x_adv, eps).clamp(low, high)


def _l2_uniform(x: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    # random direction x radius uniform in [0, eps], as torchattacks' PGDL2; a volume-uniform
    # radius (u^(1/d)) would put almost every start on the sphere in d = 3072 dimensions
    direction = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    radius = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device) * eps
    return direction * _per_example(radius / (_l2_norm(direction) + 1e-12), x)


NORMS: dict[str, _Norm] = {
    "linf": _Norm(torch.sign, _linf_project, _linf_uniform, _linf_projector),
    "l2": _Norm(_l2_direction, _l2_project, _l2_uniform, _l2_projector),
}


# --------------------------------------------------------------------------- starts
def _start_zero(x: Tensor, eps: float, norm: _Norm, init_std: float, generator) -> Tensor:
    return torch.zeros_like(x)


def _start_uniform(x: Tensor, eps: float, norm: _Norm, init_std: float, generator) -> Tensor:
    return norm.uniform(x, eps, generator)


def _start_normal(x: Tensor, eps: float, norm: _Norm, init_std: float, generator) -> Tensor:
    return init_std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


#: named initial perturbations δ_0 (projected onto the ball ∩ [0, 1] before the first step):
#: ``zero`` (FGSM), ``uniform`` in the eps-ball (Madry PGD, evaluation), ``normal`` =
#: ``init_std · N(0, 1)`` (TRADES, MART and UIAT's inverse adversaries use 0.001).
STARTS: dict[str, Callable[..., Tensor]] = {
    "zero": _start_zero,
    "uniform": _start_uniform,
    "normal": _start_normal,
}


def _initial_delta(
    x: Tensor, start: Start, eps: float, norm: _Norm, init_std: float, generator
) -> Tensor:
    if isinstance(start, Tensor):
        try:
            broadcast = torch.broadcast_shapes(start.shape, x.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != x.shape:
            raise ValueError(f"start of shape {tuple(start.shape)} does not broadcast to x {tuple(x.shape)}")
        return start.detach().to(dtype=x.dtype, device=x.device).expand_as(x)
    check_choice("start", start, STARTS)
    return STARTS[start](x, eps, norm, init_std, generator)


# --------------------------------------------------------------------------- attacks
def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")


def validate_attack_args(
    *, eps: float, alpha: float, steps: int, norm: str, bn_mode: str, init_std: float,
    clip: tuple[float, float],
) -> None:
    """ValueError for an invalid argument of :func:`pgd` (shared by the config objects)."""
    for name, value in (("eps", eps), ("alpha", alpha), ("init_std", init_std)):
        _check_number(name, value)
        check_nonnegative(name, value)
    check_int("steps", steps)
    check_choice("norm", norm, NORMS)
    check_choice("bn_mode", bn_mode, _bn.BN_MODES)
    if len(clip) != 2 or not clip[0] < clip[1]:
        raise ValueError(f"clip must be (low, high) with low < high, got {clip!r}")


@taped
def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "linf",
    loss: str | AttackLoss = "ce",
    start: Start = "uniform",
    init_std: float = 1e-3,
    targeted: bool = False,
    descend: bool = False,
    bn_mode: str = "eval",
    clip: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Projected gradient descent / ascent (PGD).

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
    ICLR 2018, arXiv:1706.06083. With ``descend=True`` it computes the inverse adversarial
    examples of Dong et al., "The Enemy of My Enemy is My Friend: Exploring Inverse
    Adversaries for Improving Adversarial Training", CVPR 2023, arXiv:2211.00525 (Eq. 3).

    Threat model: Linf (``norm="linf"``) or L2 (``norm="l2"``) ball of radius eps around x,
    intersected with the pixel box ``clip`` ([0, 1]); white box.

    Args:
        model: maps (N, ...) inputs in [0, 1] to (N, C) logits.
        x: (N, ...) natural inputs in ``clip``.
        y: (N,) int64 labels — true labels, or target labels when ``targeted=True``; with a
            callable ``loss`` anything the callable takes as its second argument (e.g.
            TRADES passes the natural logits).
        eps: radius ε >= 0 of the ball. Required.
        alpha: step size α >= 0. Required.
        steps: number of steps >= 1. Required.
        norm: ``"linf"`` (sign steps, clamp projection) or ``"l2"`` (per-example
            L2-normalised gradient steps, renorm projection). Default ``"linf"``.
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (negative CW margin, κ = 50, see
            :func:`margin_loss`) or a callable ``loss(logits, y) -> (N,)`` per-example
            objective. The attack ASCENDS it (descends with ``targeted`` / ``descend``).
            Default ``"ce"``.
        start: initial perturbation: ``"uniform"`` in the ball (default), ``"zero"``,
            ``"normal"`` (``init_std · N(0, 1)``) or an explicit tensor broadcastable to x.
            The start is projected onto the ball ∩ ``clip`` like every iterate.
        init_std: standard deviation of the ``"normal"`` start. Default 0.001 (TRADES, MART,
            UIAT).
        targeted: ``y`` are target labels; minimise the loss toward them. Default False.
        descend: minimise the loss (inverse adversarial examples). Default False. Both
            ``targeted`` and ``descend`` mean "step down the gradient"; they differ in intent.
        bn_mode: ``"eval"`` | ``"train"`` | ``"train_frozen_stats"``: mode of the model's
            forwards during the attack, restored on exit (:func:`robustrain.attacks.bn_mode`).
            Default ``"eval"``.
        clip: pixel box (low, high). Default (0, 1).
        generator: optional ``torch.Generator`` for the random start (reproducibility).

    Returns:
        x_adv: detached tensor, same shape / dtype / device as x, with
        ``||x_adv - x|| <= eps`` (L2 up to float rounding) and ``clip[0] <= x_adv <= clip[1]``.

    Raises:
        ValueError: invalid eps / alpha / steps / norm / loss / start / bn_mode / clip.

    Example:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> x_adv = pgd(model, x, y, eps=8/255, alpha=2/255, steps=10)
        >>> bool((x_adv - x).abs().max() <= 8/255 + 1e-6), x_adv.shape
        (True, torch.Size([4, 3, 2, 2]))
    """
    validate_attack_args(eps=eps, alpha=alpha, steps=steps, norm=norm, bn_mode=bn_mode, init_std=init_std, clip=clip)
    loss_fn = _resolve_loss(loss)
    return _projected_ascent(
        model, x, lambda x_adv: _input_gradient(model, loss_fn, x_adv, y), eps=eps, alpha=alpha, steps=steps,
        norm=norm, start=start, init_std=init_std, descend=targeted or descend, bn_mode=bn_mode, clip=clip,
        generator=generator,
    )


#: ``gradient(x_adv) -> d objective / d x_adv``, same shape as x_adv (the objective to ascend)
GradientFn = Callable[[Tensor], Tensor]


def _projected_ascent(
    model: nn.Module,
    x: Tensor,
    gradient: GradientFn,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str,
    start: Start,
    init_std: float,
    descend: bool,
    bn_mode: str,
    clip: tuple[float, float],
    generator: torch.Generator | None,
) -> Tensor:
    """The loop of :func:`pgd` with the gradient as a callable: start, then ``steps`` projected
    steps along ``dir(gradient(x_adv))`` (down it with ``descend``). Arguments as :func:`pgd`,
    already validated; ``model`` only for its BatchNorm mode. :func:`~robustrain.attacks.eot_pgd`
    passes the mean gradient over stochastic forwards, :func:`pgd` the gradient of one."""
    geometry = NORMS[norm]
    # minimising is the same loop with the step's sign flipped
    step = (-1.0 if descend else 1.0) * alpha
    x = x.detach()
    project = geometry.projector(x, eps, *clip)
    x_adv = project(x + _initial_delta(x, start, eps, geometry, init_std, generator))
    with _bn.bn_mode(model, bn_mode), torch.enable_grad():
        for _ in range(steps):
            grad = gradient(x_adv)
            # add(..., alpha=): the step in one kernel
            x_adv = project(torch.add(x_adv.detach(), geometry.direction(grad), alpha=step))
    return x_adv.detach()


def _input_gradient(model: nn.Module, loss_fn: AttackLoss, x_adv: Tensor, y: Tensor) -> Tensor:
    """Gradient of the summed per-example loss w.r.t. ``x_adv`` (marked as requiring it here)."""
    x_adv.requires_grad_(True)
    per_example = loss_fn(model(x_adv), y)
    if per_example.shape != x_adv.shape[:1]:  # shape metadata only: no host sync
        raise ValueError(
            f"attack loss must return per-example values of shape ({x_adv.shape[0]},), "
            f"got {tuple(per_example.shape)}"
        )
    # gradient w.r.t. the adversarial input only (= w.r.t. the perturbation): the
    # parameters' .grad are never touched
    (grad,) = torch.autograd.grad(per_example.sum(), x_adv)
    return grad


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    loss: str | AttackLoss = "ce",
    targeted: bool = False,
    bn_mode: str = "eval",
    clip: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """Fast gradient sign method: one sign step of size eps from x (no random start).

    Paper: Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015,
    arXiv:1412.6572.

    Threat model: Linf ball of radius eps ∩ [0, 1]; white box.

    Args:
        model, x, y, loss, targeted, bn_mode, clip: as in :func:`pgd`.
        eps: radius ε >= 0 and step size. Required.

    Returns:
        x_adv: detached, same shape as x, inside the eps-ball ∩ ``clip``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> fgsm(model, x, y, eps=8/255).shape
        torch.Size([4, 3, 2, 2])
    """
    return pgd(
        model, x, y, eps=eps, alpha=eps, steps=1, norm="linf", loss=loss, start="zero",
        targeted=targeted, bn_mode=bn_mode, clip=clip,
    )


def cw_inf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 30,
    kappa: float = 50.0,
    start: Start = "uniform",
    init_std: float = 1e-3,
    targeted: bool = False,
    bn_mode: str = "eval",
    clip: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """CW∞: Linf PGD on the Carlini-Wagner margin loss.

    Paper: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks",
    IEEE S&P 2017, arXiv:1608.04644; the PGD-on-margin form with κ = 50, 30 steps of 2/255
    within 8/255 is the evaluation of the GAIRAT / LRAT code (Zhang et al. 2021).

    Threat model: Linf ball of radius eps ∩ [0, 1]; white box.

    Args:
        eps: radius ε (default 8/255).
        alpha: step size α (default 2/255).
        steps: number of steps (default 30).
        kappa: margin clamp κ (default 50), see :func:`margin_loss`.
        model, x, y, start, init_std, targeted, bn_mode, clip, generator: as in :func:`pgd`.

    Returns:
        x_adv: detached, same shape as x, inside the eps-ball ∩ ``clip``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> cw_inf(model, x, y, steps=3).shape
        torch.Size([4, 3, 2, 2])
    """
    _check_number("kappa", kappa)
    check_nonnegative("kappa", kappa)
    return pgd(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm="linf",
        loss=functools.partial(neg_margin_loss, kappa=kappa), start=start, init_std=init_std,
        targeted=targeted, bn_mode=bn_mode, clip=clip, generator=generator,
    )
