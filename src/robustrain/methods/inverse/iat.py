"""``iat`` (Algorithm 2) and ``uiat`` (Algorithm 1) with their Params.

See :mod:`robustrain.methods.inverse` for the notation, the defaults and the pass count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from robustrain.attacks.bn import BN_MODES
from robustrain.attacks.functional import validate_attack_args
from robustrain.data.batch import Batch
from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.inverse.ops import adversarial_forward, target_metrics
from robustrain.methods.inverse.targets import InverseTargets, upgrade_legacy_state_dict
from robustrain.methods.losses import uiat_loss
from robustrain.methods.params import PGDAdversaryParams
from robustrain.methods.registry import METHODS
from robustrain.utils.checks import check_budget, check_choice, check_in_range, check_nonnegative, check_step

__all__ = ["ADV_FEATURES", "IAT", "IATParams", "InverseParams", "UIAT", "UIATParams", "check_fraction"]

#: where F(x^) of the feature regulariser comes from: ``generation`` = a no-grad forward on x^
#: in the generation ``bn_mode`` (the same mode as F(x) and F(x~)); ``training_forward`` = the
#: training forward's features, reused (batch statistics; one forward fewer; before issue 19)
ADV_FEATURES = ("generation", "training_forward")


def check_fraction(name: str, value: float) -> None:
    """A schedule point given as a fraction of the run, in [0, 1]."""
    check_in_range(name, value, 0.0, 1.0)


@dataclass(frozen=True)
class InverseParams(PGDAdversaryParams):
    """Fields shared by ``iat``, ``uiat`` and ``uiat_oneoff`` (see the package docstring),
    after the training adversary's (:class:`PGDAdversaryParams`).

    Attributes:
        lam: λ, weight of KL(p || f(x^)) (3.5).
        beta: β, weight of the feature regulariser in L_Inv (1.0).
        feature_reg: FR switch; False = L_Inv is CE only (same as beta = 0).
        eps_inv: eps', Linf radius of inverse perturbations (4/255).
        init_std_inv: std of the inverse start x + init_std_inv N(0, 1) and of z's init (0.001).
        detach_target: the target p carries no gradient (True); False = gradient through
            the current-epoch term (a training forward on x~, or on x for one-off before T').
        target_bn_mode: BatchNorm mode of the detached target forward softmax f(x~) (and of
            one-off's f(x) before T'): ``train_frozen_stats`` (batch statistics, running
            statistics not updated; default), ``train`` (batch statistics, updated) or
            ``eval`` (running statistics: the pre-issue-19 default, which collapses to one
            class early in training; kept for the ablation). See docs/teacher-forwards.md.
        adv_features: source of F(x^) in L_Inv, ``generation`` (default) or
            ``training_forward`` (:data:`ADV_FEATURES`).
        eps, alpha, steps, start: the training adversary x^ (PGD on CE, 8/255, 2/255, 10,
            uniform start; :class:`PGDAdversaryParams`).
        bn_mode: mode of the GENERATION forwards: the attack, F(x), F(x^), the inverse
            steps (``eval``).
    """

    lam: float = 3.5
    beta: float = 1.0
    feature_reg: bool = True
    eps_inv: float = 4 / 255
    init_std_inv: float = 0.001
    detach_target: bool = True
    target_bn_mode: str = "train_frozen_stats"
    adv_features: str = "generation"

    #: what a run's saved config means when it predates a field (issue 19): such a run was
    #: trained with these values and resumes with them
    LEGACY: ClassVar[dict[str, object]] = {"target_bn_mode": "eval", "adv_features": "training_forward"}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("target_bn_mode", self.target_bn_mode, BN_MODES)
        check_choice("adv_features", self.adv_features, ADV_FEATURES)
        check_nonnegative("lam", self.lam)
        check_nonnegative("beta", self.beta)
        check_budget("eps_inv", self.eps_inv)
        check_nonnegative("init_std_inv", self.init_std_inv)

    @property
    def effective_beta(self) -> float:
        """β if the feature regulariser is on, else 0."""
        return self.beta if self.feature_reg else 0.0


@dataclass(frozen=True)
class IATParams(InverseParams):
    """Hyper-parameters of ``iat`` (Algorithm 2); shared fields: see :class:`InverseParams`.

    Attributes:
        alpha_inv: alpha', step of the instance-wise inverse PGD (2/255).
        steps_inv: its number of steps (5).
    """

    alpha_inv: float = 2 / 255
    steps_inv: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_step("alpha_inv", self.alpha_inv)
        validate_attack_args(
            eps=self.eps_inv, alpha=self.alpha_inv, steps=self.steps_inv, norm="linf",
            bn_mode=self.bn_mode, init_std=self.init_std_inv, clip=(0.0, 1.0),
        )


@dataclass(frozen=True)
class UIATParams(IATParams):
    """Hyper-parameters of ``uiat`` (Algorithm 1) with the Table 6 switches.

    Attributes:
        universal: UAG switch; True = class-wise universal z (one step of
            ``alpha_universal`` per batch), False = instance-wise (``steps_inv`` x
            ``alpha_inv``, as ``iat``).
        momentum: IAM switch (Eq. 8).
        alpha_universal: alpha' of the universal step (4/255).
        gamma: γ, momentum factor (0.9).
        momentum_start: T as a fraction of the run (0.75).
        feature_reg: FR switch (inherited); all three off = Table 6 row 1 (IAT without FR).
    """

    universal: bool = True
    momentum: bool = True
    alpha_universal: float = 4 / 255
    gamma: float = 0.9
    momentum_start: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        check_step("alpha_universal", self.alpha_universal)
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        check_fraction("momentum_start", self.momentum_start)


@METHODS.register("iat", help="instance-wise inverse adversarial training (UIAT paper, Algorithm 2)")
class IAT(Method):
    """Inverse adversarial training, instance-wise (Dong et al. 2023, Algorithm 2).

    ``loss = CE(f(x^), y) + lam * KL(softmax f(x~) || softmax f(x^))`` with x^ = PGD-10 and
    x~ = 5 sign-descent steps of 2/255 on L_Inv within 4/255 from x + 0.001 N(0, 1);
    logits = f(x^). The inverse generation is ``self.targets``
    (:class:`~robustrain.methods.inverse.targets.InverseTargets`). See the package docstring
    for the notation and the pass count.

    Example:
        >>> import torch
        >>> from robustrain.data.batch import Batch
        >>> from robustrain.methods import MethodContext, create_method
        >>> from robustrain.models import create_model
        >>> ctx = MethodContext(num_classes=10, image_shape=(3, 8, 8), num_train=4, epochs=1)
        >>> method = create_method("iat", ctx, steps=2, steps_inv=2)
        >>> model = create_model("small_cnn", 10)
        >>> out = method(model, Batch(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), torch.arange(4)))
        >>> sorted(out.metrics)
        ['acc_adv', 'acc_target', 'loss_ce', 'loss_reg', 'target_majority', 'target_p_max']
    """

    Params = IATParams
    #: no ``iat+uiat``: the plug-in is the inverse family's own regulariser
    uiat_pluggable: ClassVar[bool] = False

    def __init__(self, params: IATParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        uiat = isinstance(params, UIATParams)  # the Table 6 switches and their fields
        self.universal = uiat and params.universal
        self.use_momentum = uiat and params.momentum
        self.attack = params.attack()
        # z (universal) is drawn here, after the attack is built, as before the package split
        self.targets = InverseTargets(
            ctx, eps_inv=params.eps_inv, init_std_inv=params.init_std_inv, bn_mode=params.bn_mode,
            target_bn_mode=params.target_bn_mode, detach_target=params.detach_target,
            alpha_inv=params.alpha_inv, steps_inv=params.steps_inv,
            alpha_universal=params.alpha_universal if uiat else None,
            gamma=params.gamma if uiat else None,
            momentum_start=params.momentum_start if uiat else None,
            universal=self.universal, momentum=self.use_momentum,
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        upgrade_legacy_state_dict(state_dict, prefix)  # checkpoints with flat ``z`` / ``momentum_p``
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        p, t = self.params, self.targets
        x, y = batch.x, batch.y
        beta = p.effective_beta
        x_adv = self.attack(model, x, y)
        logits_adv, feat_nat, feat_adv = adversarial_forward(model, x, x_adv, t.features, beta, p.adv_features)
        if self.universal:
            x_inv = t.universal_inverse(model, x, y, feat_nat, feat_adv, beta)
        else:
            x_inv = t.instance_inverse(model, x, y, feat_nat, feat_adv, beta)
        target = t.predict(model, x_inv)
        if self.use_momentum:
            target = t.momentum_target(batch.idx, target, self.epoch)
        terms = uiat_loss(logits_adv, y, target, p.lam)
        return LossOutput(terms.total, logits_adv, target_metrics(terms, logits_adv, target, y))


@METHODS.register("uiat", help="universal inverse adversarial training (Dong et al. 2023, Algorithm 1)")
class UIAT(IAT):
    """Universal inverse adversarial training (Dong et al. 2023, Algorithm 1).

    Class-wise universal inverse perturbations z_c (one step of 4/255 per batch), feature
    regulariser (beta = 1) and inverse-adversary momentum (gamma = 0.9 from T = 0.75 of the
    run); ``universal`` / ``feature_reg`` / ``momentum`` switch the three components of
    Table 6 (all off = row 1, instance-wise IAT). logits = f(x^). The same forward as
    :class:`IAT`, with the switches read from :class:`UIATParams`.
    """

    Params = UIATParams
