"""The training-method contract.

A method is a stateful loss module with ONE signature::

    out = method(model, batch)          # -> LossOutput(loss, logits, metrics)

It owns its state (buffers / ``state_dict`` entries, saved in every checkpoint), never
touches the optimiser, never changes BatchNorm mode silently (attacks take an explicit
``bn_mode``) and reads epoch-dependent behaviour from :meth:`Method.set_epoch`, which the
trainer calls before each epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from robustrain.data.batch import Batch
from robustrain.methods.sample_state import SampleStatePolicy

__all__ = ["LossOutput", "Method", "MethodContext"]


class LossOutput(NamedTuple):
    """What a method returns.

    Attributes:
        loss: scalar tensor to back-propagate.
        logits: the logits the loss was trained on (adversarial logits for AT methods),
            shape (N, num_classes); the trainer reports training accuracy from them and
            plug-ins (e.g. UIAT's regulariser) reuse them.
        metrics: detached scalar tensors on the device (never read back to the host here, so the
            step has no host sync); the trainer averages them per logging interval.
    """

    loss: torch.Tensor
    logits: torch.Tensor
    metrics: dict[str, torch.Tensor]


@dataclass(frozen=True)
class MethodContext:
    """Facts about the run a method may need at construction.

    Attributes:
        num_classes: number of classes C (per-class universal perturbations).
        image_shape: (C, H, W) of one image.
        num_train: size of the training split N (per-sample buffers, indexed by ``Batch.idx``).
        epochs: total number of epochs of the run (schedules expressed as fractions).
        sample_state: how per-sample tables (N x C) are stored (``train.sample_state``; the
            default is fp32, made on the CPU and moved with the method).
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    num_train: int
    epochs: int
    sample_state: SampleStatePolicy = SampleStatePolicy()


class Method(nn.Module):
    """Base class of training methods.

    Subclasses declare ``Params``, a frozen dataclass of their hyper-parameters with the
    paper's defaults; configs are validated against it before anything runs.
    """

    Params: ClassVar[type] = None  # type: ignore[assignment]

    def __init__(self, params: Any, ctx: MethodContext) -> None:
        super().__init__()
        if self.Params is not None and not isinstance(params, self.Params):
            raise TypeError(
                f"{type(self).__name__} expects params of type {self.Params.__name__}, "
                f"got {type(params).__name__}; build it with robustrain.methods.create_method"
            )
        self.params = params
        self.ctx = ctx
        self.epoch = 0

    @classmethod
    def check_config(cls, params: Any) -> None:
        """Checks beyond single fields (e.g. a required path), run by ``load_config`` before
        anything runs; raise ``ValueError`` with the fix. Default: none."""

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch (0-based)."""
        self.epoch = int(epoch)

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:  # pragma: no cover
        raise NotImplementedError
