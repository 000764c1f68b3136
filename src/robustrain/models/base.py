"""The model contract: pixels in [0, 1] in, logits (and optionally features) out.

Every robustrain model is a :class:`Classifier`: ``forward_features`` maps an input to the
penultimate features F(x) of shape (N, D), ``head`` (a Linear) maps them to logits, and
``model(x, return_features=True)`` returns ``(logits, features)`` from ONE forward pass,
which UIAT's feature regulariser needs. The keyword goes through ``forward`` so it also
works under DistributedDataParallel and ``torch.compile``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Classifier", "Normalize", "NormalizedClassifier", "logits_and_features"]


class Classifier(nn.Module):
    """Base class: subclasses define ``forward_features`` and a ``head`` Linear layer."""

    head: nn.Linear

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feats = self.forward_features(x)
        logits = self.head(feats)
        return (logits, feats) if return_features else logits


class Normalize(nn.Module):
    """(x - mean) / std per channel, the only place that knows the dataset statistics.

    Args:
        mean: per-channel means, length C.
        std: per-channel standard deviations, length C.

    Example:
        >>> import torch
        >>> Normalize([0.5], [0.25])(torch.ones(1, 1, 2, 2)).flatten().tolist()
        [2.0, 2.0, 2.0, 2.0]
    """

    def __init__(self, mean: tuple[float, ...] | list[float], std: tuple[float, ...] | list[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class NormalizedClassifier(nn.Module):
    """``Normalize`` composed in front of a backbone :class:`Classifier`; input in [0, 1].

    Same interface as :class:`Classifier`: ``model(x)`` -> logits,
    ``model(x, return_features=True)`` -> (logits, features).
    """

    def __init__(self, normalize: Normalize, backbone: Classifier) -> None:
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(self.normalize(x))

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.backbone(self.normalize(x), return_features=return_features)


def logits_and_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and penultimate features of ``model`` on ``x`` in one forward pass."""
    out = model(x, return_features=True)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            f"{type(model).__name__} does not return (logits, features) for return_features=True; "
            "build it with robustrain.models.create_model or subclass robustrain.models.Classifier"
        )
    return out
