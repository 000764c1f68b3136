"""``<base>+uiat``: the UIAT regulariser on top of a base method INSTANCE (Appendix B.3, Eq. 13).

Composition by constructor, as torchattacks' ``MultiAttack([...])`` or timm's distillation
task take their parts: ``UIATPlugin(base=PGDAT(...), params=UIATPluginParams(...), ctx=ctx)``.
No class is generated per base; :func:`robustrain.methods.create_method` builds the pair from a
``"<base>+uiat"`` name (``PLUGINS`` holds ``uiat``; every base without ``uiat_pluggable =
False`` gets the composite name, see :func:`robustrain.methods.method_names`).

Example:
    >>> import torch
    >>> from robustrain.methods import METHODS, MethodContext, create_method
    >>> ctx = MethodContext(num_classes=3, image_shape=(3, 4, 4), num_train=8, epochs=2)
    >>> base = create_method("pgd_at", ctx, steps=2)
    >>> method = UIATPlugin(base, UIATPluginParams(lam=2.0), ctx)
    >>> method.base is base, sorted(method.state_dict())
    (True, ['targets.oneoff_p', 'targets.oneoff_seen', 'targets.z'])
    >>> create_method("pgd_at+uiat", ctx, steps=2, lam=2.0).base.params.steps
    2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from robustrain.attacks.bn import BN_MODES
from robustrain.data.batch import Batch
from robustrain.methods.at import accuracy, prediction_stats
from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.inverse.iat import check_fraction
from robustrain.methods.inverse.targets import InverseTargets, upgrade_legacy_state_dict
from robustrain.methods.losses import uiat_regulariser
from robustrain.methods.registry import PLUGINS
from robustrain.utils.checks import (
    check_budget, check_choice, check_field_types, check_in_range, check_nonnegative, check_step,
)

__all__ = ["UIATPlugin", "UIATPluginParams"]


@dataclass(frozen=True)
class UIATPluginParams:
    """The plug-in's own fields (``<base>+uiat``); the base method keeps its own Params.

    In a config both sit flat under ``method:`` (``{name: pgd_at+uiat, steps: 5, lam: 3.5}``);
    the config layer splits them by field name (a base field named like one of these is an
    error there).

    Attributes:
        lam: λ, weight of KL(p || f(x^_base)) (3.5).
        eps_inv: eps' (4/255).
        alpha_universal: alpha' of the universal step (4/255).
        init_std_inv: std of z's init (0.001).
        inv_bn_mode: mode of the inverse generation's forwards (the z step; ``eval``);
            distinct from a base's ``bn_mode``.
        target_bn_mode: mode of the detached target forward (f(x) before T', f(x~) at T'):
            ``train_frozen_stats`` (batch statistics, running statistics not updated); ``eval``
            is the pre-issue-19 behaviour (see :class:`~robustrain.methods.inverse.InverseParams`).
        oneoff: one-off schedule (True, the paper's choice for single-step bases: natural
            target before T', universal inverse targets stored at T', reused after); False =
            a universal step every batch (as ``uiat``, CE only).
        oneoff_epoch: T' as a fraction of the run (0.8), with ``oneoff``.
        momentum: Eq. 8 momentum, only with ``oneoff=False`` (True).
        gamma: γ (0.9), with ``momentum``.
        momentum_start: T as a fraction (0.75), with ``momentum``.
        detach_target: the target p carries no gradient (True).
    """

    lam: float = 3.5
    eps_inv: float = 4 / 255
    alpha_universal: float = 4 / 255
    init_std_inv: float = 0.001
    inv_bn_mode: str = "eval"
    target_bn_mode: str = "train_frozen_stats"
    oneoff: bool = True
    oneoff_epoch: float = 0.8
    momentum: bool = True
    gamma: float = 0.9
    momentum_start: float = 0.75
    detach_target: bool = True

    #: values of fields a run's saved config predates (it was trained with them): issue 19
    LEGACY: ClassVar[dict[str, object]] = {"target_bn_mode": "eval"}

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("lam", "init_std_inv"):
            check_nonnegative(name, getattr(self, name))
        check_budget("eps_inv", self.eps_inv)
        check_step("alpha_universal", self.alpha_universal)
        check_choice("inv_bn_mode", self.inv_bn_mode, BN_MODES)
        check_choice("target_bn_mode", self.target_bn_mode, BN_MODES)
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        check_fraction("oneoff_epoch", self.oneoff_epoch)
        check_fraction("momentum_start", self.momentum_start)


@PLUGINS.register("uiat", help="{base} + the UIAT regulariser lam*KL(p || f(x_adv)) (UIAT paper, Appendix B.3)")
class UIATPlugin(Method):
    """``<base>+uiat``: the UIAT regulariser on top of a base method (Appendix B.3, Eq. 13).

    ``loss = base.loss + lam * KL(p || softmax(base.logits))`` where ``base.logits`` is the
    base's ``LossOutput.logits`` (its adversarial logits; natural logits for ``standard``)
    and p the one-off target (default) or a per-batch universal inverse target with
    momentum; the inverse step is CE only (the base does not expose F(x^)). The base runs
    unchanged, as a submodule (its state under ``base.``, the targets' under ``targets.``).
    Metrics: the base's, plus ``loss_uiat`` (the KL), ``acc_target`` and the target's
    ``target_p_max`` / ``target_majority``.

    Args:
        base: the base method, already built (any :class:`Method`).
        params: the plug-in's own hyper-parameters; ``self.params`` is this, and
            ``self.base.params`` the base's.
        ctx: the run's facts (the same the base was built with).
    """

    Params = UIATPluginParams
    uiat_pluggable: ClassVar[bool] = False

    def __init__(self, base: Method, params: UIATPluginParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        if not isinstance(base, Method):
            raise TypeError(f"UIATPlugin's base must be a Method instance, got {type(base).__name__}")
        self.base = base
        # z is drawn after the base is built (the order of the generated classes before)
        self.targets = InverseTargets(
            ctx, eps_inv=params.eps_inv, init_std_inv=params.init_std_inv, bn_mode=params.inv_bn_mode,
            target_bn_mode=params.target_bn_mode, detach_target=params.detach_target, alpha_universal=params.alpha_universal,
            gamma=params.gamma, momentum_start=params.momentum_start, oneoff_epoch=params.oneoff_epoch,
            universal=True, oneoff=params.oneoff, momentum=not params.oneoff and params.momentum,
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        upgrade_legacy_state_dict(state_dict, prefix)  # flat ``z`` / ``oneoff_p``; ``base.*`` is unchanged
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.base.set_epoch(epoch)

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        p, t = self.params, self.targets
        out = self.base(model, batch)
        weight = None
        if p.oneoff:
            target, weight = t.oneoff_target(model, batch, None, None, 0.0, self.epoch)
        else:
            x_inv = t.universal_inverse(model, batch.x, batch.y, None, None, 0.0)
            target = t.predict(model, x_inv)
            if p.momentum:
                target = t.momentum_target(batch.idx, target, self.epoch)
        reg = uiat_regulariser(out.logits, target, weight)
        metrics = dict(out.metrics)
        metrics["loss_uiat"] = reg.detach()
        metrics["acc_target"] = accuracy(target, batch.y)
        metrics.update(prediction_stats(target, "target_", probs=True))
        return LossOutput(out.loss + p.lam * reg, out.logits, metrics)
