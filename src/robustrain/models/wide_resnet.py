"""Wide ResNet (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

WRN-depth-width as used by TRADES, MART, GAIRAT/LRAT, HAT and UIAT: a 16-channel stem, three
groups of n = (depth - 4) / 6 pre-activation blocks with 16w, 32w, 64w channels (strides 1, 2,
2), final BN + act, global average pooling, Linear. Feature dim 64 * width. For 10 classes
WRN-28-10 has 36,479,194 parameters and WRN-34-10 46,160,474 (without the unused
``sub_block1`` some TRADES copies carry, which adds parameters but no computation).

Example:
    >>> import torch
    >>> net = wide_resnet(10, depth=10, width=1)
    >>> net(torch.rand(2, 3, 32, 32), return_features=True)[1].shape
    torch.Size([2, 64])
"""

from __future__ import annotations

import torch
from torch import nn

from robustrain.utils.checks import check_int, short_repr

from .activations import make_activation
from .base import Classifier
from .init import init_weights
from .registry import check_size, register_model

__all__ = ["WideBasicBlock", "WideResNet", "check_wrn", "wide_resnet", "wrn28_10", "wrn34_10"]


def check_wrn(params: dict, prefix: str = "") -> None:
    """A Wide ResNet's ``depth`` (6n+4, n >= 1), ``width`` (>= 1), ``dropout`` (in [0, 1)) and
    size (at most :data:`~robustrain.models.registry.MAX_PARAMETERS`: about 96768 n width**2
    parameters). Nothing is built."""
    depth, width, dropout = params["depth"], params["width"], params["dropout"]
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"{prefix}depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 34, 40, ...) for a Wide ResNet, "
                         f"got {short_repr(depth, 40)}; e.g. {prefix}depth=28")
    check_int(f"{prefix}width", width, 1, "the widening factor k, e.g. 10")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{prefix}dropout must lie in [0, 1) (a dropout probability, e.g. 0.0), got {short_repr(dropout, 40)}")
    check_size(f"{prefix}width", 96768.0 * ((depth - 4) // 6) * width**2, f"depth={depth}, width={width}")


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-act-conv3x3(stride)-BN-act-[dropout]-conv3x3, plus shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = make_activation(activation)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        # Reference WRN: the projection shortcut reads the pre-activated input, identity reads x.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.act2(self.bn2(self.conv1(out)))
        out = self.conv2(self.dropout(out))
        return out + shortcut


class WideResNet(Classifier):
    """WRN-depth-width for small images.

    Args:
        depth: total depth; (depth - 4) must be divisible by 6 (10, 16, 22, 28, 34, 40, ...).
        width: widening factor k (channels 16k, 32k, 64k).
        num_classes: number of logits.
        in_channels: input image channels.
        activation: ``relu`` | ``silu``.
        dropout: dropout probability between the two convs of each block.

    Raises:
        ValueError: invalid depth, width or dropout.
    """

    def __init__(
        self,
        depth: int,
        width: int,
        num_classes: int,
        in_channels: int = 3,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_wrn({"depth": depth, "width": width, "dropout": dropout})
        n = (depth - 4) // 6
        channels = (16 * width, 32 * width, 64 * width)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        groups, in_planes = [], 16
        for planes, stride in zip(channels, (1, 2, 2)):
            blocks = []
            for j in range(n):
                blocks.append(WideBasicBlock(in_planes, planes, stride if j == 0 else 1, float(dropout), activation))
                in_planes = planes
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(channels[-1])
        self.act = make_activation(activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels[-1], num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.act(self.bn(out))
        return torch.flatten(self.pool(out), 1)


def wide_resnet(
    num_classes: int,
    *,
    depth: int = 28,
    width: int = 10,
    dropout: float = 0.0,
    in_channels: int = 3,
    activation: str = "relu",
) -> WideResNet:
    """WRN-``depth``-``width`` (any valid depth/width); the registered presets call this."""
    return WideResNet(depth, width, num_classes, in_channels, activation, dropout)


_SMOKE = {"depth": 10, "width": 1}


@register_model("wrn28_10", help="WRN-28-10 (36.5M params, features 640)", smoke_kwargs=_SMOKE, check=check_wrn)
def wrn28_10(
    num_classes: int,
    *,
    in_channels: int = 3,
    activation: str = "relu",
    depth: int = 28,
    width: int = 10,
    dropout: float = 0.0,
) -> WideResNet:
    """WRN-28-10; ``depth``/``width`` may be overridden."""
    return wide_resnet(num_classes, depth=depth, width=width, dropout=dropout, in_channels=in_channels, activation=activation)


@register_model("wrn34_10", help="WRN-34-10 (46.2M params, features 640)", smoke_kwargs=_SMOKE, check=check_wrn)
def wrn34_10(
    num_classes: int,
    *,
    in_channels: int = 3,
    activation: str = "relu",
    depth: int = 34,
    width: int = 10,
    dropout: float = 0.0,
) -> WideResNet:
    """WRN-34-10, the standard TRADES/MART/LRAT/UIAT backbone; ``depth``/``width`` may be overridden."""
    return wide_resnet(num_classes, depth=depth, width=width, dropout=dropout, in_channels=in_channels, activation=activation)
