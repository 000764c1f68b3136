"""Explicit BatchNorm / train-eval mode for attack forward passes.

Attacks never flip ``model.train()`` / ``model.eval()`` silently: they run under
``bn_mode(model, mode)``, which sets the mode for the attack's forwards and restores every
module's ``training`` flag (and every BatchNorm's ``track_running_stats``) exactly on exit,
also when the body raises.

Modes:
    ``eval``: ``model.eval()`` — BatchNorm uses running statistics, dropout is off. The
        setting of the HAT / UIAT code base (``ctx_noparamgrad_and_eval``), TRADES and MART
        for training-time adversaries, and of every evaluation.
    ``train``: ``model.train()`` — BatchNorm uses batch statistics AND updates its running
        statistics with every attack step (Madry et al.'s original code, Wong et al.'s
        fast AT).
    ``train_frozen_stats``: ``model.train()``, but BatchNorm layers get
        ``track_running_stats = False`` so they normalise with batch statistics without
        updating running statistics (``F.batch_norm`` then receives no running buffers);
        the attack sees the training-mode function while the running estimates only move
        on the method's training forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustrain.utils.checks import check_choice

__all__ = ["BN_MODES", "bn_mode"]


def _freeze_bn_stats(model: nn.Module) -> None:
    model.train()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.track_running_stats = False


_SETUP: dict[str, Callable[[nn.Module], object]] = {
    "eval": lambda m: m.eval(),
    "train": lambda m: m.train(),
    "train_frozen_stats": _freeze_bn_stats,
}

BN_MODES: tuple[str, ...] = tuple(_SETUP)


@contextmanager
def bn_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Run the body with ``model`` in ``mode`` and restore its exact previous state.

    Args:
        model: any ``nn.Module``.
        mode: ``"eval"`` | ``"train"`` | ``"train_frozen_stats"`` (see the module docstring).

    Raises:
        ValueError: unknown ``mode``.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).train()
        >>> with bn_mode(net, "eval"):
        ...     net.training
        False
        >>> net.training
        True
    """
    check_choice("bn_mode", mode, BN_MODES)
    modules = list(model.modules())
    # per-module flags, not one model-level flag: partially frozen models (a BN layer kept
    # in eval inside a training model) must come back exactly as they were
    training = [m.training for m in modules]
    bns = [m for m in modules if isinstance(m, _BatchNorm)]
    tracking = [m.track_running_stats for m in bns]
    try:
        _SETUP[mode](model)
        yield model
    finally:
        for m, flag in zip(modules, training):
            m.training = flag
        for m, flag in zip(bns, tracking):
            m.track_running_stats = flag
