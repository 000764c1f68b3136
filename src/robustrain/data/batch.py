"""The unit every method consumes: ``Batch(x, y, idx)``."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["Batch"]


class Batch(NamedTuple):
    """A training or evaluation batch.

    Attributes:
        x: images, float32 in [0, 1], shape (N, C, H, W).
        y: integer labels, int64, shape (N,).
        idx: global sample ids (positions in the full training split), int64, shape (N,);
            methods with per-sample state (UIAT momentum, one-off targets) index with them.
    """

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))
