"""Pre-activation ResNet-18 (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016).

The CIFAR variant of Rice et al. ("Overfitting in adversarially robust deep learning",
ICML 2020) and HAT: BN -> act -> conv inside each block, identity shortcuts kept clean
(projection is a bare 1x1 conv on the pre-activated input), and a final BN + act before the
global pooling. Feature dim 512, 11,172,170 parameters for 10 classes (11,171,146 of the
kuangliu copy, plus the final BN).

Example:
    >>> import torch
    >>> net = preact_resnet18(10)
    >>> net(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_activation
from .base import Classifier
from .init import init_weights
from .registry import register_model

__all__ = ["PreActBlock", "PreActResNet", "preact_resnet18"]


class PreActBlock(nn.Module):
    """BN-act-conv twice; the shortcut skips both activations."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, activation: str) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = make_activation(activation)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        # As in the reference code, a projection reads the pre-activated input, identity reads x.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + shortcut


class PreActResNet(Classifier):
    """Pre-activation CIFAR ResNet with :class:`PreActBlock`.

    Args:
        num_blocks: blocks per stage (four stages of 64, 128, 256, 512 channels).
        num_classes: number of logits.
        in_channels: input image channels.
        activation: ``relu`` | ``silu``.
    """

    def __init__(
        self, num_blocks: tuple[int, int, int, int], num_classes: int, in_channels: int, activation: str
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        stages, in_planes = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(PreActBlock(in_planes, planes, stride, activation))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # The last block's output is un-normalised; this BN + act closes the pre-act chain.
        self.bn = nn.BatchNorm2d(512)
        self.act = make_activation(activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(512, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.act(self.bn(out))
        return torch.flatten(self.pool(out), 1)


@register_model("preact_resnet18", help="pre-activation ResNet-18 (11.2M params, features 512)")
def preact_resnet18(num_classes: int, *, in_channels: int = 3, activation: str = "relu") -> PreActResNet:
    """Pre-activation ResNet-18 as in Rice et al. (2020): blocks [2, 2, 2, 2], final BN + act."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels, activation)
