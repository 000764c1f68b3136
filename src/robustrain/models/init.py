"""Weight initialisation shared by every backbone.

Follows the reference implementations the papers build on (Zagoruyko & Komodakis's WRN as
used by TRADES/MART/HAT, He et al.'s ResNets): Kaiming-normal convolutions with fan_out,
BatchNorm at identity (weight 1, bias 0), Linear bias at zero (PyTorch's default Linear weight).
"""

from __future__ import annotations

from torch import nn

__all__ = ["init_weights"]


def init_weights(module: nn.Module) -> None:
    """Initialise every Conv2d, BatchNorm2d and Linear inside ``module`` in place.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        >>> init_weights(net)
        >>> net[1].weight.tolist()[:2], net[1].bias.tolist()[:2]
        ([1.0, 1.0], [0.0, 0.0])
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if m.bias is not None:
                nn.init.zeros_(m.bias)
