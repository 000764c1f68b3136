"""BPDA: attack a model behind a non-differentiable preprocessing.

A defence ``f(g(x))`` whose input transformation ``g`` is non-differentiable (quantisation,
JPEG, thresholding, a denoiser with discrete steps) has zero or useless input gradients, so
gradient attacks stall and the robust accuracy is overestimated. Backward Pass Differentiable
Approximation (BPDA) runs the real ``g`` in the forward pass and a differentiable ``a ≈ g`` in
the backward pass: ``∇_x f(g(x)) ≈ ∇_{g(x)} f · ∂a/∂x``. With ``a`` the identity (the default)
this is the straight-through estimator, right for any ``g`` with ``g(x) ≈ x``.

:class:`BPDA` is that as an ``nn.Module``: every attack of the library (``pgd``, ``cw_inf``,
EOT-PGD, APGD through the AutoAttack adapter) runs on it unchanged, and its forward, so its
predictions and accuracies, are exactly those of the defence.

Paper: Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of Security",
ICML 2018, arXiv:1802.00420, Sec. 4.1.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

__all__ = ["BPDA", "bpda_apply"]

Transform = Callable[[Tensor], Tensor]


class _BackwardApprox(torch.autograd.Function):
    """Forward: ``preprocess(x)`` exactly; backward: the vector-Jacobian product of ``approx`` at x
    (the incoming gradient itself for the identity)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, preprocess: Transform, approx: Transform | None) -> Tensor:
        ctx.approx = approx
        if approx is not None:
            ctx.save_for_backward(x)
        with torch.no_grad():
            out = preprocess(x)
        if out.shape != x.shape:
            raise ValueError(f"BPDA: preprocess must keep the input shape {tuple(x.shape)}, got {tuple(out.shape)}")
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None]:
        if ctx.approx is None:
            return grad_out, None, None
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(ctx.approx(x), x, grad_out)
        return grad, None, None


def bpda_apply(x: Tensor, preprocess: Transform, approx: Transform | None = None) -> Tensor:
    """``preprocess(x)`` in the forward pass, differentiated as ``approx`` (identity when None).

    Example:
        >>> x = torch.tensor([0.1, 0.4, 0.9], requires_grad=True)
        >>> out = bpda_apply(x, lambda v: torch.round(v * 2) / 2)
        >>> out.tolist()
        [0.0, 0.5, 1.0]
        >>> (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
        >>> x.grad.tolist()  # straight through: as if preprocess were the identity
        [1.0, 2.0, 3.0]
    """
    return _BackwardApprox.apply(x, preprocess, approx)


class BPDA(nn.Module):
    """``model(preprocess(x))`` whose backward pass through ``preprocess`` uses ``approx``.

    Paper: Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of Security",
    ICML 2018, arXiv:1802.00420, Sec. 4.1 (BPDA).

    The forward is the defence itself (``preprocess`` then ``model``), so accuracies measured on
    the wrapper are the defence's; only the gradient differs. ``preprocess`` and ``approx`` run
    on the input in [0, 1] and must keep its shape. A randomized ``preprocess`` works too: wrap
    it here and attack with :func:`~robustrain.attacks.eot_pgd` (BPDA + EOT, as Athalye et al.
    do for random-transformation defences).

    Args:
        model: the classifier behind the preprocessing, [0, 1] inputs -> logits.
        preprocess: the (non-differentiable) input transformation ``x -> g(x)``, a callable or
            module; it runs without gradient tracking.
        approx: a differentiable ``a(x) ≈ g(x)`` whose gradient replaces g's in the backward
            pass; None (default) = the identity, i.e. straight through (BPDA's usual choice
            when ``g(x) ≈ x``).

    Shapes: x (N, C, H, W) -> logits (N, num_classes).

    Example:
        >>> import torch
        >>> from robustrain.attacks import pgd
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> quantise = lambda x: torch.round(x * 4) / 4          # zero gradient almost everywhere
        >>> wrapped = BPDA(net, quantise)
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> torch.equal(wrapped(x), net(quantise(x)))            # same forward as the defence
        True
        >>> x_adv = pgd(wrapped, x, y, eps=8/255, alpha=2/255, steps=10)   # gradients flow
        >>> bool((x_adv - x).abs().max() <= 8/255 + 1e-6)
        True
    """

    def __init__(self, model: nn.Module, preprocess: Transform, approx: Transform | None = None) -> None:
        super().__init__()
        if not callable(preprocess):
            raise ValueError(f"BPDA: preprocess must be a callable x -> g(x), got {type(preprocess).__name__}")
        if approx is not None and not callable(approx):
            raise ValueError(f"BPDA: approx must be a callable x -> a(x) or None, got {type(approx).__name__}")
        self.model = model
        self.preprocess = preprocess
        self.approx = approx

    def forward(self, x: Tensor) -> Tensor:
        return self.model(bpda_apply(x, self.preprocess, self.approx))
