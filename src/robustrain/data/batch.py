"""The unit every method consumes: ``Batch(x, y, idx)``, and the one pixel conversion
(:func:`to_unit_float`) that turns stored uint8 images into its float32 [0, 1] pixels.

Example:
    >>> to_unit_float(torch.tensor([0, 51, 255], dtype=torch.uint8)).tolist()
    [0.0, 0.20000000298023224, 1.0]
    >>> to_unit_float(torch.tensor([0.5], dtype=torch.float64)).dtype
    torch.float32
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["Batch", "to_unit_float"]


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """float32 pixels in [0, 1]: uint8 images (0..255) divided by 255, anything else (already
    in [0, 1]) only cast to float32. A uint8 input gets a new tensor; a float32 input is
    returned as it is (not copied)."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


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
