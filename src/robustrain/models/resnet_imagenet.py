"""ImageNet ResNet-50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

The ImageNet layout, as in torchvision's ``resnet50`` that the robust ImageNet models of Salman
et al. (2020, "Do Adversarially Robust ImageNet Models Transfer Better?") and RobustBench's
ImageNet entries use: a 7x7 stride-2 stem and a 3x3 stride-2 max-pool, Bottleneck blocks
[3, 4, 6, 3] (1x1, 3x3, 1x1; expansion 4; the stride on the 3x3, "ResNet v1.5"), global average
pooling and a Linear head. 25,557,032 parameters for 1000 classes; feature dim 2048.

It is robustrain's own module so that the ImageNet presets need no optional package; any timm
architecture is available as ``timm:<name>`` (:mod:`robustrain.models.timm_backbone`).

Example:
    >>> import torch
    >>> net = resnet50(10, width=4)  # the test-size variant: every stage, 1/16 of the channels
    >>> logits, feats = net(torch.rand(2, 3, 64, 64), return_features=True)
    >>> tuple(logits.shape), tuple(feats.shape)
    ((2, 10), (2, 128))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .activations import make_activation
from .base import Classifier
from .registry import register_model

__all__ = ["Bottleneck", "ImageNetResNet", "resnet50"]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand (x4), each with BN; act after the sum."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, activation: str) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.act1, self.act2, self.act3 = (make_activation(activation) for _ in range(3))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(self.conv1(x)))
        h = self.act2(self.bn2(self.conv2(h)))
        return self.act3(self.bn3(self.conv3(h)) + self.shortcut(x))


class ImageNetResNet(Classifier):
    """ImageNet ResNet with Bottleneck blocks.

    Args:
        num_blocks: blocks per stage (four stages of ``width``, 2, 4, 8 x ``width`` planes).
        num_classes: number of logits.
        in_channels: input channels. activation: see :func:`~robustrain.models.activations.make_activation`.
        width: planes of the first stage (64 in ResNet-50).
    """

    def __init__(self, num_blocks: tuple[int, ...], num_classes: int, in_channels: int = 3,
                 activation: str = "relu", width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width),
            make_activation(activation), nn.MaxPool2d(3, stride=2, padding=1))
        stages, in_planes = [], width
        for i, n in enumerate(num_blocks):
            planes = width * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(in_planes, planes, 2 if (j == 0 and i > 0) else 1, activation))
                in_planes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(in_planes, num_classes)
        self._init()

    def _init(self) -> None:
        # torchvision's initialisation: Kaiming-normal (fan_out) convolutions, BN at (1, 0), and the
        # last BN of each block at zero gamma, so every residual branch starts as the identity
        # (Goyal et al. 2017), which the large-batch ImageNet recipes rely on
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


def _check(params: dict[str, Any], prefix: str) -> None:
    width = params.get("width")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"{prefix}width must be an integer >= 1 (64 for ResNet-50), got {width!r}")


@register_model("resnet50", help="ImageNet ResNet-50, torchvision layout (25.6M params for 1000 classes, "
                "features 2048)", smoke_kwargs={"width": 4}, check=_check)
def resnet50(num_classes: int, *, in_channels: int = 3, activation: str = "relu", width: int = 64) -> ImageNetResNet:
    """ImageNet ResNet-50: 7x7 stem + max-pool, Bottlenecks [3, 4, 6, 3]; ``width`` scales every stage."""
    return ImageNetResNet((3, 4, 6, 3), num_classes, in_channels, activation, width)
