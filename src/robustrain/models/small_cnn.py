"""A small, fast CNN for CPU runs, smoke tests and the default job.

Four conv-BN-act stages with ``width``, 2w, 4w, 8w channels, a 2x2 max-pool after each of the
first three (32 -> 16 -> 8 -> 4 for CIFAR), global average pooling and one Linear (no large FC
layer). In the spirit of the "SmallCNN" used for sanity runs in TRADES (Zhang et al., ICML
2019), but sized for CPU throughput. Feature dim 8 * width (256 by default, 391k parameters).

Why four stages: at 32x32 the time goes into the full-resolution first stage, so a fourth
conv at 4x4 costs ~25% more time per step but learns faster. In PGD-10 adversarial
training on cifar10_mini (5,085 images, 2 CPU cores) 32-64-128-256 reached 38.9% natural /
24.2% PGD-20 after 5 epochs (173 s), while the 3-stage 32-64-128 net reached 36.9% / 22.2%
after 7 epochs (235 s).

On CPU the weights are stored channels-last (NHWC): oneDNN's NHWC convolutions ran this net
about 1.3x faster than NCHW in fwd+bwd (2 cores, batch 128); inputs may stay NCHW.

Example:
    >>> import torch
    >>> net = small_cnn(10)
    >>> logits, feats = net(torch.rand(2, 3, 32, 32), return_features=True)
    >>> tuple(logits.shape), tuple(feats.shape)
    ((2, 10), (2, 256))
"""

from __future__ import annotations

import torch
from torch import nn

from robustrain.utils.checks import check_int

from .activations import make_activation
from .base import Classifier
from .init import init_weights
from .registry import check_size, register_model

__all__ = ["ConvBNAct", "SmallCNN", "check_small_cnn", "small_cnn"]


def check_small_cnn(params: dict, prefix: str = "") -> None:
    """``width`` a positive integer, the net at most :data:`~robustrain.models.registry.MAX_PARAMETERS`
    parameters (about 378 width**2)."""
    width = check_int(f"{prefix}width", params["width"], 1, "channels of the first stage, e.g. 32")
    check_size(f"{prefix}width", 378.0 * width**2, f"width={width}")


class ConvBNAct(nn.Sequential):
    """3x3 conv (no bias: BN follows) -> BatchNorm -> activation."""

    def __init__(self, in_planes: int, planes: int, activation: str) -> None:
        super().__init__(
            nn.Conv2d(in_planes, planes, 3, padding=1, bias=False),
            nn.BatchNorm2d(planes),
            make_activation(activation),
        )


class SmallCNN(Classifier):
    """conv(w) - pool - conv(2w) - pool - conv(4w) - pool - conv(8w) - global avg pool - Linear.

    Args:
        num_classes: number of logits.
        in_channels: input image channels.
        activation: ``relu`` | ``silu``.
        width: channels of the first stage (then 2x and 4x).

    Raises:
        ValueError: ``width`` is not a positive int.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, activation: str = "relu", width: int = 32) -> None:
        super().__init__()
        check_small_cnn({"width": width})
        self.stem = ConvBNAct(in_channels, width, activation)
        self.pool1 = nn.MaxPool2d(2)
        self.stage2 = ConvBNAct(width, 2 * width, activation)
        self.pool2 = nn.MaxPool2d(2)
        self.stage3 = ConvBNAct(2 * width, 4 * width, activation)
        self.pool3 = nn.MaxPool2d(2)
        self.stage4 = ConvBNAct(4 * width, 8 * width, activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8 * width, num_classes)
        init_weights(self)
        # Channels-last weights make every conv output NHWC, the faster CPU layout here;
        # the layout survives .to(device), deepcopy (EMA) and load_state_dict.
        self.to(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool1(self.stem(x))
        out = self.pool2(self.stage2(out))
        out = self.stage4(self.pool3(self.stage3(out)))
        return torch.flatten(self.pool(out), 1)


@register_model("small_cnn", help="small fast CNN for CPU runs (391k params, features 8*width)", check=check_small_cnn)
def small_cnn(num_classes: int, *, in_channels: int = 3, activation: str = "relu", width: int = 32) -> SmallCNN:
    """SmallCNN with ``width``-2w-4w-8w channels; the default job's model."""
    return SmallCNN(num_classes, in_channels, activation, width)
