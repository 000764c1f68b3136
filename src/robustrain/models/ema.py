"""Exponential moving average of model weights (model weight averaging).

The UIAT paper (Appendix A.2, following Rebuffi et al. / the HAT code) averages weights with
decay 0.995. As in that code the decay is warmed up, decay_t = min(decay, (1 + t) / (10 + t)),
so short runs are not dominated by the initial weights, and BatchNorm running statistics
(buffers) are copied from the live model rather than averaged: they describe the live
weights' activations, and averaging them lags behind.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA(nn.Module):
    """Holds the averaged copy of a model.

    Args:
        model: the live model; its structure is deep-copied once.
        decay: the target decay (0.995).

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1)
        >>> ema = EMA(net, decay=0.9)
        >>> ema.update(net, step=0)
        >>> torch.equal(ema.module.weight, net.weight)
        True
    """

    def __init__(self, model: nn.Module, decay: float = 0.995) -> None:
        super().__init__()
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average in ``model``'s weights after optimisation step ``step`` (0-based).

        The step comes from the trainer (a host int) so the update never syncs the device.
        """
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        ema_p = list(self.module.parameters())
        live_p = [p.detach() for p in model.parameters()]
        torch._foreach_mul_(ema_p, d)
        torch._foreach_add_(ema_p, live_p, alpha=1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)
