"""Activation functions selectable by name, so one config key switches every net.

SiLU (swish) is offered next to ReLU because smooth activations are reported to help
adversarial training (Xie et al., "Smooth Adversarial Training", arXiv:2006.14536).

Example:
    >>> import torch
    >>> make_activation("relu")(torch.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
"""

from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["ACTIVATIONS", "make_activation", "check_activation"]

# Name -> module factory. Not in-place on purpose: in-place ops break forward hooks that keep
# activations and some double-backward paths (GradAlign differentiates through input grads).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}


def check_activation(name: str) -> str:
    """Return ``name`` if it is a known activation, else raise ``ValueError`` listing them."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return name


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (``relu`` | ``silu``).

    Raises:
        ValueError: ``name`` is not in :data:`ACTIVATIONS`.
    """
    return ACTIVATIONS[check_activation(name)]()
