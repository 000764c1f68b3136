"""EOT-PGD: PGD on the expectation over a randomized model's forward passes.

A randomized defence (random input noise, random resizing and padding, dropout at test time)
makes each forward pass a draw ``f(x; r)``. The gradient of one draw is a noisy estimate of
the gradient of the defence's *expected* loss, so plain PGD follows noise and overestimates
robustness. Expectation over Transformation (EOT) replaces it by the mean over ``samples``
independent draws:

    g(x') = 1/S · Σ_{s=1..S} ∇_{x'} Σ_i L(f(x'; r_s)_i, y_i)

and takes the usual projected step along ``dir(g)`` (sign for Linf). Everything else is
:func:`~robustrain.attacks.pgd`: the same start, step, projection and loss (the same code: both
run ``functional._projected_ascent``).

Papers: Athalye, Engstrom, Ilyas, Kwok, "Synthesizing Robust Adversarial Examples", ICML 2018,
arXiv:1707.07397 (EOT); Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of
Security", ICML 2018, arXiv:1802.00420, Sec. 4.3 (EOT against randomized defences).

How accuracy is reported: the final ``x_adv`` is classified by ONE ordinary forward of the model,
random as the defence deploys it (what :func:`~robustrain.eval.evaluate_robustness` does for
every attack). This is the standard of Athalye et al. and of AutoAttack's ``version="rand"``
(whose APGD-EOT also reports one forward per example); it is neither the mean over draws nor
"misclassified under any draw", which would measure a different quantity.

The draws are S sequential forwards of the same batch, not one forward of a batch repeated S
times: a defence that draws one transformation per batch (a random resize of the whole batch)
then gets S independent draws too. Cost: S forward-backward passes per step (PGD-20 x 16 =
320).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustrain.attacks.functional import (
    AttackLoss,
    Start,
    _input_gradient,
    _projected_ascent,
    _resolve_loss,
    validate_attack_args,
)
from robustrain.attacks.tape import taped
from robustrain.utils.checks import check_int

__all__ = ["eot_gradient", "eot_pgd"]


def eot_gradient(model: nn.Module, loss_fn: AttackLoss, x_adv: Tensor, y: Tensor, samples: int) -> Tensor:
    """Mean over ``samples`` forward passes of the gradient of ``Σ_i loss_fn(model(x_adv)_i, y_i)``
    w.r.t. ``x_adv`` (each pass draws the model's randomness anew).

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> x, y = torch.rand(3, 2), torch.tensor([0, 1, 0])
        >>> from robustrain.attacks import ce_loss
        >>> g = eot_gradient(net, ce_loss, x, y, samples=4)
        >>> one = eot_gradient(net, ce_loss, x, y, samples=1)
        >>> bool(torch.allclose(g, one)), g.shape  # a deterministic model: the mean is the one gradient
        (True, torch.Size([3, 2]))
    """
    total = _input_gradient(model, loss_fn, x_adv, y)
    for _ in range(samples - 1):
        total = total + _input_gradient(model, loss_fn, x_adv, y)
    # samples == 1 returns the gradient untouched, so eot_pgd(samples=1) is pgd bit for bit
    return total if samples == 1 else total / samples


@taped
def eot_pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    samples: int,
    norm: str = "linf",
    loss: str | AttackLoss = "ce",
    start: Start = "uniform",
    init_std: float = 1e-3,
    targeted: bool = False,
    bn_mode: str = "eval",
    clip: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""PGD whose gradient is the mean over ``samples`` stochastic forward passes (EOT-PGD).

    Paper: Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of Security",
    ICML 2018, arXiv:1802.00420 (Sec. 4.3); EOT from Athalye, Engstrom et al., "Synthesizing
    Robust Adversarial Examples", ICML 2018, arXiv:1707.07397. As torchattacks' ``EOTPGD``.

    Threat model: Linf (``norm="linf"``) or L2 ball of radius eps around x, ∩ ``clip``; white
    box, the attacker knows the defence's distribution of randomness.

    Accuracy under this attack is that of ONE ordinary (random) forward on the returned x_adv
    (see the module docstring). For a deterministic model every draw is the same and the attack
    is :func:`~robustrain.attacks.pgd` (bit for bit with ``samples=1``; for Linf the sign of the
    mean equals the sign of the one gradient, so the result is the same for any ``samples``).

    Args:
        model: maps (N, ...) inputs in [0, 1] to (N, C) logits; may be random.
        x: (N, ...) natural inputs in ``clip``.
        y: (N,) int64 labels (targets with ``targeted=True``).
        eps: radius ε >= 0. Required.
        alpha: step size α >= 0. Required.
        steps: number of steps >= 1. Required.
        samples: forward-backward passes averaged per step, >= 1. Required.
        norm, loss, start, init_std, targeted, bn_mode, clip, generator: as in
            :func:`~robustrain.attacks.pgd` (``generator`` draws the random start only; the
            model draws its own randomness from the global RNG).

    Returns:
        x_adv: detached, same shape / dtype / device as x, inside the eps-ball ∩ ``clip``.

    Raises:
        ValueError: an invalid eps / alpha / steps / samples / norm / loss / start / bn_mode / clip.

    Example:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> class Noisy(torch.nn.Module):                      # a randomized defence
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        ...     def forward(self, x):
        ...         return self.net(x + 0.5 * torch.randn_like(x))
        >>> noisy = Noisy()
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> x_adv = eot_pgd(noisy, x, y, eps=8/255, alpha=2/255, steps=10, samples=8)
        >>> bool((x_adv - x).abs().max() <= 8/255 + 1e-6), x_adv.shape
        (True, torch.Size([4, 3, 2, 2]))
    """
    validate_attack_args(eps=eps, alpha=alpha, steps=steps, norm=norm, bn_mode=bn_mode, init_std=init_std, clip=clip)
    check_int("samples", samples)
    loss_fn = _resolve_loss(loss)
    return _projected_ascent(
        model, x, lambda x_adv: eot_gradient(model, loss_fn, x_adv, y, samples), eps=eps, alpha=alpha,
        steps=steps, norm=norm, start=start, init_std=init_std, descend=targeted, bn_mode=bn_mode, clip=clip,
        generator=generator,
    )
