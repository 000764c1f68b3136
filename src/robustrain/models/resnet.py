"""CIFAR ResNet-18 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

The CIFAR variant used by Madry et al. (2018), TRADES, MART and HAT: a 3x3 stride-1 stem
without max-pool (32x32 inputs are too small to downsample early), BasicBlocks [2, 2, 2, 2]
with 64-128-256-512 channels, global average pooling, a Linear head. Feature dim 512,
11,173,962 parameters for 10 classes.

Example:
    >>> import torch
    >>> net = resnet18(10)
    >>> logits, feats = net(torch.rand(2, 3, 32, 32), return_features=True)
    >>> tuple(logits.shape), tuple(feats.shape)
    ((2, 10), (2, 512))
"""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_activation
from .base import Classifier
from .init import init_weights
from .registry import register_model

__all__ = ["BasicBlock", "ResNet", "resnet18"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection; act after the sum (post-activation)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        # Projection shortcut (1x1 conv + BN, "option B") only where the shape changes.
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(Classifier):
    """Post-activation CIFAR ResNet with BasicBlocks.

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
        self.bn1 = nn.BatchNorm2d(64)
        self.act = make_activation(activation)
        stages, in_planes = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_planes, planes, stride, activation))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # Adaptive pooling (not avg_pool2d(4)) so any input of at least 16x16 works.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(512, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(self.pool(out), 1)


@register_model("resnet18", help="CIFAR ResNet-18 (11.2M params, features 512)")
def resnet18(num_classes: int, *, in_channels: int = 3, activation: str = "relu") -> ResNet:
    """CIFAR ResNet-18: 3x3 stem, no max-pool, BasicBlocks [2, 2, 2, 2]."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, activation)
