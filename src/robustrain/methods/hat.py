"""Helper-based adversarial training (HAT).

Paper: Rade & Moosavi-Dezfooli, "Reducing Excessive Margin to Achieve a Better Accuracy vs.
Robustness Trade-off", ICLR 2022 (compared against in the UIAT paper, Tables 1, 3 and 4).

HAT adds to TRADES a *helper example* x_help = x + h·(x' − x), which lies twice as far
along the adversarial direction, labelled with the prediction ŷ of a separately
standard-trained *helper model* on x'. Training the model to predict ŷ on x_help keeps it
from pushing its margin excessively far along adversarial directions, which recovers
natural accuracy at equal robustness.

Two-step recipe (the helper is a normal ``standard`` run)::

    robustrain train method=standard name=helper                        # 1. the helper
    robustrain train method=hat method.helper=runs/helper/last.pt       # 2. HAT

Hyper-parameters (defaults from the official imrahulr/hat code and the issue's ResNet-18
CIFAR-10 setting):
    h: distance factor of the helper example (2.0).
    beta (β): weight of the TRADES KL term (2.5).
    gamma (γ): weight of the helper cross-entropy (0.5).
    helper: path of the helper model: the ``last.pt`` of a standard run (its ``best.pt`` is
        chosen by robust accuracy, which for natural training is an early, weak epoch), or a
        file written by ``robustrain export``; its dataset must match the run's.
    eps, alpha, steps, init_std, bn_mode: the TRADES adversary (8/255, 2/255, 10, 0.001,
        eval), as :class:`robustrain.methods.at.TRADES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustrain.artifacts import load_model
from robustrain.utils.checks import check_nonnegative
from robustrain.utils.errors import CheckpointError
from robustrain.data.batch import Batch
from robustrain.methods.at import _BetaATParams, accuracy, trades_adversary, two_view_metrics
from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.losses import hat_loss
from robustrain.methods.registry import METHODS

__all__ = ["HAT", "HATParams", "load_helper"]


@dataclass(frozen=True)
class HATParams(_BetaATParams):
    """Hyper-parameters of HAT (see the module docstring for their meaning and sources)."""

    beta: float = 2.5
    gamma: float = 0.5
    h: float = 2.0
    helper: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_nonnegative("gamma", self.gamma)
        check_nonnegative("h", self.h)


def load_helper(path: str | Path | nn.Module, ctx: MethodContext) -> nn.Module:
    """Resolve the helper model of HAT (a path through :func:`robustrain.artifacts.load_model`, or a
    live module, as timm's ``_resolve_teacher``) and check that a loaded one fits the run.

    Args:
        path: a training checkpoint of a ``standard`` run, an exported model file, or a module.
        ctx: the run's context (class count and image shape must match the helper's).

    Returns:
        the helper in eval mode with gradients switched off.

    Raises:
        CheckpointError: the file is missing or corrupt, or was trained for another class
            count or image shape.
    """
    if isinstance(path, nn.Module):
        return _frozen(path)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"HAT helper {path} does not exist; train it first with `robustrain train method=standard "
            f"name=helper` (same dataset) and set method.helper=runs/helper/last.pt"
        )
    loaded = load_model(path)
    # the helper's own input shape (its model card): no dataset lookup, so a helper trained on a
    # streaming dataset (imagefolder, webdataset: not in the registry) is checked the same way
    shape = tuple(loaded.meta.get("image_shape") or (loaded.spec.image_shape if loaded.spec else ()))
    if loaded.num_classes != ctx.num_classes or shape != tuple(ctx.image_shape):
        raise CheckpointError(
            f"HAT helper {path} was trained on {loaded.dataset} ({loaded.num_classes} classes, images "
            f"{shape}) but this run has {ctx.num_classes} classes, images {tuple(ctx.image_shape)}; "
            "train the helper on the run's dataset"
        )
    return _frozen(loaded.model)


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@METHODS.register("hat", help="HAT (Rade & Moosavi-Dezfooli 2022): TRADES + gamma CE(f(x + h(x'-x)), helper(x'))")
class HAT(Method):
    """Helper-based adversarial training.

    ``loss = CE(f(x), y) + β · KL(f(x) || f(x')) + γ · CE(f(x + h(x' − x)), ŷ)`` with x' the
    TRADES adversary and ŷ = argmax helper(x') (:func:`robustrain.methods.losses.hat_loss`);
    logits = f(x'). As the official code, x + h(x' − x) is neither projected to the eps ball
    nor clipped to [0, 1], and the three training forwards are separate (BatchNorm statistics
    per view). The helper runs in eval mode without gradients.

    The helper's weights are not part of the method's state (it is a fixed input, like the
    dataset): a resumed run reloads it from ``method.helper``. Library users may pass a live
    model with :meth:`set_helper` instead of a path.

    Example:
        >>> import torch
        >>> from robustrain.data.batch import Batch
        >>> from robustrain.methods import MethodContext, create_method
        >>> ctx = MethodContext(num_classes=3, image_shape=(3, 2, 2), num_train=4, epochs=1)
        >>> method = create_method("hat", ctx, steps=2)
        >>> method.set_helper(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)))
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> out = method(model, Batch(torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]), torch.arange(4)))
        >>> sorted(out.metrics)
        ['acc_adv', 'acc_helper', 'acc_nat', 'loss_ce', 'loss_helper', 'loss_reg']
    """

    Params = HATParams
    #: the plug-in's own ``gamma`` (momentum) would clash with HAT's, and HAT + UIAT is not
    #: a combination either paper trains
    uiat_pluggable: ClassVar[bool] = False

    def __init__(self, params: HATParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        # a plain attribute, not a submodule: the helper stays out of state_dict()
        self.__dict__["_helper"] = load_helper(params.helper, ctx) if params.helper else None

    @classmethod
    def check_config(cls, params: HATParams) -> None:
        """A run needs a helper path (checked when the config is loaded, before anything runs)."""
        if not params.helper:
            raise ValueError(
                "method.helper is required: the path of a standard-trained model; first run "
                "`robustrain train method=standard name=helper`, then method.helper=runs/helper/last.pt"
            )

    def set_helper(self, model: nn.Module) -> None:
        """Use ``model`` (a [0,1]-input classifier) as the helper; it is frozen in eval mode."""
        self.__dict__["_helper"] = _frozen(model)

    @property
    def helper(self) -> nn.Module | None:
        return self._helper

    def _helper_labels(self, x_adv: Tensor) -> Tensor:
        helper = self._helper
        if helper is None:
            raise ValueError("hat has no helper model: set method.helper=PATH or call method.set_helper(model)")
        param = next(helper.parameters(), None)
        if param is not None and param.device != x_adv.device:
            helper.to(x_adv.device)
        with torch.no_grad():
            logits = helper(x_adv)
        if logits.shape[1] != self.ctx.num_classes:
            raise ValueError(
                f"the HAT helper predicts {logits.shape[1]} classes but the run has {self.ctx.num_classes}"
            )
        return logits.argmax(dim=1)

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        p = self.params
        x, y = batch.x, batch.y
        x_adv = trades_adversary(model, x, p)
        y_help = self._helper_labels(x_adv)
        x_help = x + p.h * (x_adv - x)
        logits_nat = model(x)
        logits_adv = model(x_adv)
        logits_help = model(x_help)
        terms = hat_loss(logits_nat, logits_adv, logits_help, y, y_help, p.beta, p.gamma)
        metrics = {
            **two_view_metrics(terms, logits_nat, logits_adv, y),  # the TRADES part's metrics
            "loss_helper": terms.helper.detach(),
            "acc_helper": accuracy(logits_help, y_help),
        }
        return LossOutput(terms.total, logits_adv, metrics)
