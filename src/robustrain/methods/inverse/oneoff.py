"""``uiat_oneoff`` (Eq. 9-10, Appendix B.2) and its Params.

See :mod:`robustrain.methods.inverse` for the notation, the defaults and the pass count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from robustrain.data.batch import Batch
from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.inverse.iat import InverseParams, check_fraction
from robustrain.methods.inverse.ops import adversarial_forward, target_metrics
from robustrain.methods.inverse.targets import InverseTargets, upgrade_legacy_state_dict
from robustrain.methods.losses import uiat_loss
from robustrain.methods.registry import METHODS
from robustrain.utils.checks import check_step

__all__ = ["UIATOneOff", "UIATOneOffParams"]


@dataclass(frozen=True)
class UIATOneOffParams(InverseParams):
    """Hyper-parameters of ``uiat_oneoff`` (Eq. 9-10, Appendix B.2).

    Attributes:
        alpha_universal: alpha' of the universal step at epoch T' (4/255).
        oneoff_epoch: T' as a fraction of the run (0.8); clamped to the last epoch.
    """

    alpha_universal: float = 4 / 255
    oneoff_epoch: float = 0.8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_step("alpha_universal", self.alpha_universal)
        check_fraction("oneoff_epoch", self.oneoff_epoch)


@METHODS.register("uiat_oneoff", help="one-off UIAT: inverse targets generated at epoch T' only (Appendix B.2)")
class UIATOneOff(Method):
    """One-off UIAT (Dong et al. 2023, Eq. 9-10, Appendix B.2).

    ``loss = CE(f(x^), y) + lam * KL(p_OO || softmax f(x^))`` with p_OO = softmax f(x)
    before T', softmax f(x~) (universal inverse adversaries, z stepped every batch, stored
    per sample) at T', the stored values after T' (no inverse generation). logits = f(x^).
    The targets and their state are ``self.targets``
    (:class:`~robustrain.methods.inverse.targets.InverseTargets`).
    """

    Params = UIATOneOffParams
    uiat_pluggable: ClassVar[bool] = False

    def __init__(self, params: UIATOneOffParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.attack = params.attack()
        self.targets = InverseTargets(
            ctx, eps_inv=params.eps_inv, init_std_inv=params.init_std_inv, bn_mode=params.bn_mode,
            target_bn_mode=params.target_bn_mode, detach_target=params.detach_target,
            alpha_universal=params.alpha_universal,
            oneoff_epoch=params.oneoff_epoch, universal=True, oneoff=True,
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        upgrade_legacy_state_dict(state_dict, prefix)  # checkpoints with flat ``z`` / ``oneoff_p``
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        p, t = self.params, self.targets
        x, y = batch.x, batch.y
        # the features (of x^ and x) only matter for L_Inv, i.e. at T'
        beta = p.effective_beta if t.oneoff_phase(self.epoch) == "at" else 0.0
        x_adv = self.attack(model, x, y)
        logits_adv, feat_nat, feat_adv = adversarial_forward(model, x, x_adv, t.features, beta, p.adv_features)
        target, weight = t.oneoff_target(model, batch, feat_nat, feat_adv, beta, self.epoch)
        terms = uiat_loss(logits_adv, y, target, p.lam, weight)
        return LossOutput(terms.total, logits_adv, target_metrics(terms, logits_adv, target, y))
