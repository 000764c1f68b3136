"""Inverse adversarial training: ``iat``, ``uiat``, ``uiat_oneoff`` and the ``<base>+uiat`` plug-in.

Paper: Dong et al., "The Enemy of My Enemy is My Friend: Exploring Inverse Adversaries for
Improving Adversarial Training", CVPR 2023, arXiv:2211.00525 (Sections 3.1-3.3,
Algorithms 1-2, Appendix A.2 and B).

Reading of the notation
-----------------------
Algorithms 1-2 write x~ for both the adversarial and the inverse example; here:

* x^ (``x_adv``): the training adversary, PGD-10 on CE, Linf eps = 8/255, step 2/255, uniform
  random start (as ``pgd_at``), generated in the attack's ``bn_mode`` (default ``eval``).
* x~ (``x_inv``): the inverse adversary, which DESCENDS the inverse loss (Eq. 4)

      L_Inv(x~) = CE(f(x~), y) + beta * [ L1(F(x~), F(x)) - L1(F(x~), F(x^)) ]

  F = penultimate features, L1 = mean absolute difference per example
  (:func:`robustrain.methods.losses.inverse_loss`); beta = 0 disables the feature
  regulariser (FR).
* training loss (Eq. 7): ``CE(f(x^), y) + lam * KL(p || softmax f(x^))`` with
  KL(p || q) = sum_j p_j (log p_j - log q_j), batch mean
  (:func:`robustrain.methods.losses.uiat_loss`). The target p (prediction on the inverse
  adversaries, momentum-averaged or one-off) is detached by default: a teacher for x^.
  ``detach_target=False`` lets gradient flow through the current-epoch term, as TRADES'
  natural term: the target forward is then a training forward (the trainer's mode, so it
  updates BatchNorm statistics) instead of a no-grad forward in ``bn_mode``.
* Algorithm 2's loss line reads ``KL(f(x~) || f(x))``; as in Eq. 7 and the issue it is
  implemented as KL(p || f(x^)) with p = softmax f(x~).

Hyper-parameters (paper defaults, Appendix A.2; ``uiat-paper-tables.json``)
---------------------------------------------------------------------------
* eps' (``eps_inv``): Linf radius of the inverse perturbation, 4/255.
* alpha' (``alpha_inv`` / ``alpha_universal``): inverse step size; instance-wise (``iat``)
  5 steps (``steps_inv``) of 2/255 from x + 0.001 N(0, 1); universal (``uiat``) ONE step of
  4/255 per batch on z_c.
* lam (λ, ``lam``): weight of the KL regulariser, 3.5 (CIFAR-10/100; 3.0 on SVHN).
* beta (β, ``beta``): weight of the feature regulariser in L_Inv, 1.0; 0 (or
  ``feature_reg=False``) = CE only.
* gamma (γ, ``gamma``): inverse-adversary momentum factor (Eq. 8), 0.9.
* T (``momentum_start``): first epoch of the momentum, as a fraction of the run: 0.75
  (epoch 75 of 100). The paper's 400-epoch extra-data setting uses T = 350 (0.875).
* T' (``oneoff_epoch``): the one-off epoch, as a fraction of the run: 0.8 (80 of 100;
  320 of 400).

Epochs are the trainer's 0-based ``set_epoch`` values; a fraction f of an E-epoch run is
epoch ``floor(f * E + 0.5)`` (:func:`epoch_from_fraction`; 0.75 * 100 = 75). Momentum is
active for ``epoch >= T`` (Eq. 8: ``t >= T``). T' is clamped to ``E - 1`` so that every run
generates its one-off targets once.

The methods
-----------
* ``iat`` (Algorithm 2): instance-wise x~ = 5 sign-descent steps of 2/255 on L_Inv from
  x + 0.001 N(0, 1), projected onto B(x, 4/255) ∩ [0, 1] (``attacks.pgd`` with
  ``descend=True``); p = softmax f(x~).
* ``uiat`` (Algorithm 1): one universal perturbation z_c per class (buffer ``z``, C x image,
  init 0.001 N(0, 1)). Per batch: x~ = clip(x + z_y, 0, 1); l^c = sum of L_Inv over the
  batch's class-c examples; ``z_c <- clip(z_c - alpha' sign(grad_{z_c} l^c), -eps', eps')``
  for the classes present (:func:`universal_sign_step`); the target uses x~ built from the
  UPDATED z. Momentum (Eq. 8) per sample (buffer ``momentum_p``, N x C, indexed by
  ``batch.idx``): before T, p_i = softmax f(x~_i) (stored); from T on,
  ``p_i <- gamma p_i + (1 - gamma) softmax f(x~_i)`` (:func:`momentum_update`). Switches
  for Table 6: ``universal`` (UAG), ``feature_reg`` (FR), ``momentum`` (IAM); all off = row 1
  (instance-wise IAT without FR, 5 x 2/255), all on = row 5 (UIAT).
* ``uiat_oneoff`` (Eq. 9-10, Appendix B.2): before T' p = softmax f(x) (natural
  prediction); at epoch T' universal inverse adversaries as in ``uiat`` (z updated every
  batch) and softmax f(x~_i) stored per sample (buffer ``oneoff_p``); after T' the stored
  targets, with no inverse generation at all. No momentum in this variant.
* ``<base>+uiat`` (Appendix B.3, Eq. 13): wraps any registered base method (``pgd_at``,
  ``standard``, ``trades``, ``mart``, and the single-step ones when they are registered):
  ``loss = base loss + lam * KL(p || softmax(base logits))`` where the base logits are
  ``LossOutput.logits`` (its adversarial logits). The base does not expose F(x^), so the
  plug-in's inverse step is CE only (beta = 0), as the paper does for single-step bases;
  by default the target is the one-off schedule with one universal step per batch at T'
  (``oneoff=False``: a universal step every batch, with momentum as ``uiat``). Its Params
  are the base's fields plus :class:`UIATPluginParams`' (``method.steps=5`` reaches the
  base). :func:`register_uiat_plugins` registers ``<base>+uiat`` for every base present.

Samples with no stored target (never drawn at T', e.g. with ``data.drop_last=true``) get no
KL term after T' (weight 0) rather than a made-up target; a sample's first momentum update
uses its current prediction (buffer ``momentum_seen``), so T = 0 or a skipped sample is
handled without reading tensors back to the host.

Cost: forward / backward passes per batch
-----------------------------------------
K = attack steps (10), n = instance-wise inverse steps (5). "bwd" counts backward passes
through the whole network: the attack's and the inverse steps' (w.r.t. the input only)
and the trainer's parameter backward. The training forward on x^ returns its features
(``model(x, return_features=True)``, one pass) and they are reused, detached, as F(x^) in
L_Inv; F(x) is computed once per batch (no grad, in ``bn_mode``); the z-gradient of every
class comes from ONE backward of sum_i L_Inv(x~_i) (indexing z[y] sums the per-class
gradients); nothing is read back to the host.

======================  ===============  ===============  ==========================
method                  forwards         backwards        extra over pgd_at
======================  ===============  ===============  ==========================
pgd_at                  K+1 = 11         K+1 = 11         --
iat                     K+n+3 = 18       K+n+1 = 16       F(x), n steps, f(x~)
uiat                    K+4 = 14         K+2 = 12         F(x), 1 step, f(x~)
uiat_oneoff, t < T'     K+2 = 12         K+1 = 11         f(x)
uiat_oneoff, t = T'     K+4 = 14         K+2 = 12         as uiat
uiat_oneoff, t > T'     K+1 = 11         K+1 = 11         none
<base>+uiat (one-off)   base +1/+2/+0    base +0/+1/+0    before / at / after T'
======================  ===============  ===============  ==========================

Without FR (beta = 0 or ``feature_reg=False``) the F(x) forward is skipped (one fewer).
With ``detach_target=False`` the target forward carries gradient, so the parameter
backward also runs through it (one more backward). ``tests/test_inverse.py`` checks this
table by counting forwards and backwards. Measured CPU time per training step relative to
``pgd_at`` (``benchmarks/throughput.py``, small_cnn, batch 128, 2 CPU cores, interleaved
rounds in one run; see docs/results.md): iat 1.45, uiat 1.26 (1.21 with momentum),
uiat_oneoff 1.03 before T' and 0.99 after, pgd_at+uiat 1.11 before T' and 1.06 after.

Order and BatchNorm: the attack, F(x), the inverse steps and the detached target run in the
attack's ``bn_mode`` (default ``eval``); the training forward on x^ runs in the trainer's
mode (train) BEFORE the inverse generation so its features can be reused. Hence F(x^) comes
from a train-mode forward while F(x) and F(x~) come from ``bn_mode``; and the inverse step
sees running statistics already updated by this batch's training forward.

State (saved in every checkpoint, restored by ``load_state_dict``)
-----------------------------------------------------------------
``z`` (C x image, universal variants), ``momentum_p`` / ``momentum_seen`` (N x C / N,
``uiat`` with momentum), ``oneoff_p`` / ``oneoff_seen`` (N x C / N, one-off variants); a
plug-in's base method's state sits under ``base.``. Which branch runs is a function of the
epoch given by ``set_epoch`` (the trainer calls it after ``load_state_dict`` on resume), so
a resumed run continues identically.

Distributed runs (DDP, :mod:`robustrain.utils.distributed`)
-----------------------------------------------------------
Every rank holds the same, complete state, so rank 0's checkpoint is the run's state:

* z_c's gradient is a sum over ALL ranks' class-c examples: right after the
  ``autograd.grad`` of sum_i L_Inv(x~_i) w.r.t. z, the z-gradient (C x image, small) and the
  per-class counts are all-reduced (SUM) before :func:`universal_sign_step`, so every rank
  applies the same update to the same z (initialised from the shared seed). One process
  with a batch of W x B and W ranks with B each make the same step.
* Per-sample buffers (``momentum_p`` / ``momentum_seen``, ``oneoff_p`` / ``oneoff_seen``) are
  indexed by GLOBAL ids (``batch.idx``) and replicated: every step each rank all-gathers
  all ranks' (idx, new rows) and writes them all
  (:func:`~robustrain.utils.distributed.all_gather_indexed`, B x C floats per rank), so a
  sample read by another rank next epoch (the sampler reshuffles) finds its latest value.
  Reads use the local rows only. Ids repeated across ranks (padding of the last steps) get
  one value deterministically.

In one process both helpers are the identity: no extra work and no host synchronisation.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.attacks import bn_mode, pgd
from robustrain.utils.checks import check_choice, check_field_types, check_in_range, check_nonnegative
from robustrain.attacks.bn import BN_MODES
from robustrain.attacks.functional import validate_attack_args
from robustrain.data.batch import Batch
from robustrain.methods.at import accuracy
from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.losses import LossTerms, inverse_loss, uiat_loss, uiat_regulariser
from robustrain.methods.params import PGDAdversaryParams
from robustrain.methods.registry import METHODS
from robustrain.models.base import logits_and_features
from robustrain.utils.distributed import all_gather_indexed, all_reduce_sum

__all__ = [
    "IAT",
    "IATParams",
    "UIAT",
    "UIATOneOff",
    "UIATOneOffParams",
    "UIATParams",
    "UIATPlugin",
    "UIATPluginParams",
    "apply_universal_perturbation",
    "epoch_from_fraction",
    "make_uiat_plugin",
    "momentum_update",
    "register_uiat_plugins",
    "universal_sign_step",
]


# --------------------------------------------------------------------------- pure functions
def momentum_update(p_prev: Tensor, p_cur: Tensor, gamma: float) -> Tensor:
    """Inverse-adversary momentum (Eq. 8, t >= T): ``gamma * p_prev + (1 - gamma) * p_cur``.

    Example:
        >>> momentum_update(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 0.75).tolist()
        [0.75, 0.25]
    """
    return gamma * p_prev + (1.0 - gamma) * p_cur


def universal_sign_step(z: Tensor, grad: Tensor, *, alpha: float, eps: float, present: Tensor) -> Tensor:
    """One descent step of the class-wise universal perturbations (Algorithm 1, line 11).

    ``z_c <- clip(z_c - alpha * sign(grad_c), -eps, eps)`` for the classes with
    ``present[c]``; the other rows are returned unchanged.

    Args:
        z: (C, ...) universal perturbations.
        grad: (C, ...) gradient of the per-class summed inverse loss w.r.t. z.
        alpha: step size alpha' >= 0 (4/255).
        eps: Linf radius eps' >= 0 (4/255).
        present: (C,) bool, classes that occur in the batch.

    Returns:
        the new z (a new tensor), inside the eps'-ball.

    Example:
        >>> z = torch.zeros(2, 1)
        >>> universal_sign_step(z, torch.tensor([[1.0], [-1.0]]), alpha=0.5, eps=0.25,
        ...                     present=torch.tensor([True, False])).flatten().tolist()
        [-0.25, 0.0]
    """
    stepped = (z - alpha * torch.sign(grad)).clamp(-eps, eps)
    return torch.where(present.view(-1, *([1] * (z.ndim - 1))), stepped, z)


def apply_universal_perturbation(x: Tensor, z: Tensor, y: Tensor) -> Tensor:
    """Universal inverse adversaries ``x~ = clip(x + z_y, 0, 1)``.

    With ``||z_c||_inf <= eps'`` the result lies in B(x, eps') ∩ [0, 1]. Gradient flows into
    z (indexing z[y] accumulates the per-class sums in backward).

    Example:
        >>> x = torch.tensor([[0.0, 0.875]])
        >>> apply_universal_perturbation(x, torch.tensor([[0.25, 0.25]]), torch.tensor([0])).tolist()
        [[0.25, 1.0]]
    """
    return (x + z[y]).clamp(0.0, 1.0)


def epoch_from_fraction(fraction: float, epochs: int) -> int:
    """The 0-based epoch ``floor(fraction * epochs + 0.5)`` of a schedule given as a fraction.

    Example:
        >>> epoch_from_fraction(0.75, 100), epoch_from_fraction(0.8, 400), epoch_from_fraction(0.5, 2)
        (75, 320, 1)
    """
    return int(math.floor(fraction * epochs + 0.5))


def _present_classes(y: Tensor, num_classes: int) -> Tensor:
    """Classes with at least one example in the batch, over ALL ranks under DDP."""
    # a bincount without the host sync torch.bincount does on CUDA (it sizes its output
    # from y.max()): index_add_ into a fixed-size buffer
    counts = torch.zeros(num_classes, device=y.device, dtype=torch.float32)
    counts.index_add_(0, y, torch.ones_like(y, dtype=torch.float32))
    return all_reduce_sum(counts) > 0


class _InverseTarget(NamedTuple):
    """What the instance-wise inverse attack's loss callable receives as ``y``."""

    y: Tensor
    feat_nat: Tensor
    feat_adv: Tensor


class _LogitsWithFeatures(nn.Module):
    """``model(x) -> cat([logits, features])``: lets ``attacks.pgd``'s loss see F(x~) too."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logits, feats = logits_and_features(self.model, x)
        return torch.cat([logits, feats.flatten(1).to(logits.dtype)], dim=1)


def _inverse_attack_loss(num_classes: int, beta: float):
    """L_Inv as ``attacks.pgd``'s loss callable on :class:`_LogitsWithFeatures`' output."""

    def loss(out: Tensor, target: _InverseTarget) -> Tensor:
        return inverse_loss(
            out[:, :num_classes], target.y, out[:, num_classes:], target.feat_nat, target.feat_adv, beta
        )

    return loss


# --------------------------------------------------------------------------- params
def _check_fraction(name: str, value: float) -> None:
    check_in_range(name, value, 0.0, 1.0)


@dataclass(frozen=True)
class _InverseParams(PGDAdversaryParams):
    """Fields shared by ``iat``, ``uiat`` and ``uiat_oneoff`` (see the module docstring),
    after the training adversary's (:class:`PGDAdversaryParams`).

    Attributes:
        lam: λ, weight of KL(p || f(x^)) (3.5).
        beta: β, weight of the feature regulariser in L_Inv (1.0).
        feature_reg: FR switch; False = L_Inv is CE only (same as beta = 0).
        eps_inv: eps', Linf radius of inverse perturbations (4/255).
        init_std_inv: std of the inverse start x + init_std_inv N(0, 1) and of z's init (0.001).
        detach_target: the target p carries no gradient (True); False = gradient through
            the current-epoch term (a training forward on x~, or on x for one-off before T').
        eps, alpha, steps, start: the training adversary x^ (PGD on CE, 8/255, 2/255, 10,
            uniform start; :class:`PGDAdversaryParams`).
        bn_mode: mode of the attack's and the inverse generation's forwards (``eval``).
    """

    lam: float = 3.5
    beta: float = 1.0
    feature_reg: bool = True
    eps_inv: float = 4 / 255
    init_std_inv: float = 0.001
    detach_target: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_nonnegative("lam", self.lam)
        check_nonnegative("beta", self.beta)
        check_nonnegative("eps_inv", self.eps_inv)
        check_nonnegative("init_std_inv", self.init_std_inv)

    @property
    def effective_beta(self) -> float:
        """β if the feature regulariser is on, else 0."""
        return self.beta if self.feature_reg else 0.0


@dataclass(frozen=True)
class IATParams(_InverseParams):
    """Hyper-parameters of ``iat`` (Algorithm 2); shared fields: see :class:`_InverseParams`.

    Attributes:
        alpha_inv: alpha', step of the instance-wise inverse PGD (2/255).
        steps_inv: its number of steps (5).
    """

    alpha_inv: float = 2 / 255
    steps_inv: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
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
        check_nonnegative("alpha_universal", self.alpha_universal)
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        _check_fraction("momentum_start", self.momentum_start)


@dataclass(frozen=True)
class UIATOneOffParams(_InverseParams):
    """Hyper-parameters of ``uiat_oneoff`` (Eq. 9-10, Appendix B.2).

    Attributes:
        alpha_universal: alpha' of the universal step at epoch T' (4/255).
        oneoff_epoch: T' as a fraction of the run (0.8); clamped to the last epoch.
    """

    alpha_universal: float = 4 / 255
    oneoff_epoch: float = 0.8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_nonnegative("alpha_universal", self.alpha_universal)
        _check_fraction("oneoff_epoch", self.oneoff_epoch)


@dataclass(frozen=True)
class UIATPluginParams:
    """The plug-in's own fields (``<base>+uiat``); its Params add the base method's fields.

    Attributes:
        lam: λ, weight of KL(p || f(x^_base)) (3.5).
        eps_inv: eps' (4/255).
        alpha_universal: alpha' of the universal step (4/255).
        init_std_inv: std of z's init (0.001).
        inv_bn_mode: mode of the inverse generation's and the detached target's forwards
            (``eval``); distinct from a base's ``bn_mode``.
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
    oneoff: bool = True
    oneoff_epoch: float = 0.8
    momentum: bool = True
    gamma: float = 0.9
    momentum_start: float = 0.75
    detach_target: bool = True

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("lam", "eps_inv", "alpha_universal", "init_std_inv"):
            check_nonnegative(name, getattr(self, name))
        check_choice("inv_bn_mode", self.inv_bn_mode, BN_MODES)
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        _check_fraction("oneoff_epoch", self.oneoff_epoch)
        _check_fraction("momentum_start", self.momentum_start)

    # the names the shared helpers read
    @property
    def bn_mode(self) -> str:
        return self.inv_bn_mode


# --------------------------------------------------------------------------- shared machinery
class _InverseBase(Method):
    """Helpers shared by the inverse family: inverse generation, targets, per-sample state.

    Subclasses set ``self.inv`` (an object with the fields eps_inv, alpha_universal,
    init_std_inv, bn_mode, detach_target, and where used alpha_inv, steps_inv, gamma,
    momentum_start, oneoff_epoch) and register the buffers they need.
    """

    #: ``register_uiat_plugins`` does not stack the plug-in on the inverse family itself.
    uiat_pluggable: ClassVar[bool] = False

    inv: Any

    # ---- state
    def _init_universal(self) -> None:
        c, shape, s = self.ctx.num_classes, tuple(self.ctx.image_shape), self.inv
        z = (s.init_std_inv * torch.randn(c, *shape)).clamp(-s.eps_inv, s.eps_inv)
        self.register_buffer("z", z)

    def _init_momentum(self) -> None:
        n, c = self.ctx.num_train, self.ctx.num_classes
        self.register_buffer("momentum_p", torch.zeros(n, c))
        self.register_buffer("momentum_seen", torch.zeros(n, dtype=torch.bool))

    def _init_oneoff(self) -> None:
        n, c = self.ctx.num_train, self.ctx.num_classes
        self.register_buffer("oneoff_p", torch.zeros(n, c))
        self.register_buffer("oneoff_seen", torch.zeros(n, dtype=torch.bool))

    # ---- schedule (Python ints from set_epoch: no tensor reads)
    @property
    def momentum_start_epoch(self) -> int:
        """T, the first epoch (0-based) of the inverse-adversary momentum."""
        return epoch_from_fraction(self.inv.momentum_start, self.ctx.epochs)

    @property
    def oneoff_epoch_index(self) -> int:
        """T', the one-off epoch (0-based), clamped to the run's last epoch."""
        return max(0, min(epoch_from_fraction(self.inv.oneoff_epoch, self.ctx.epochs), self.ctx.epochs - 1))

    @property
    def oneoff_phase(self) -> str:
        """``"before"`` | ``"at"`` | ``"after"`` the one-off epoch T'."""
        t = self.oneoff_epoch_index
        return "before" if self.epoch < t else ("at" if self.epoch == t else "after")

    # ---- passes
    def _natural_features(self, model: nn.Module, x: Tensor) -> Tensor:
        """F(x), once per batch, no grad, in the inverse step's bn_mode."""
        with torch.no_grad(), bn_mode(model, self.inv.bn_mode):
            return logits_and_features(model, x)[1]

    def _instance_inverse(
        self, model: nn.Module, x: Tensor, y: Tensor, feat_nat: Tensor | None, feat_adv: Tensor | None,
        beta: float,
    ) -> Tensor:
        """Instance-wise x~: ``steps_inv`` sign-descent steps on L_Inv (Eq. 3), ``attacks.pgd``."""
        s = self.inv
        if beta:
            net: nn.Module = _LogitsWithFeatures(model)
            loss: Any = _inverse_attack_loss(self.ctx.num_classes, beta)
            target: Any = _InverseTarget(y, feat_nat, feat_adv)
        else:
            net, loss, target = model, "ce", y
        return pgd(
            net, x, target, eps=s.eps_inv, alpha=s.alpha_inv, steps=s.steps_inv, norm="linf",
            loss=loss, start="normal", init_std=s.init_std_inv, descend=True, bn_mode=s.bn_mode,
        )

    def _universal_inverse(
        self, model: nn.Module, x: Tensor, y: Tensor, feat_nat: Tensor | None, feat_adv: Tensor | None,
        beta: float,
    ) -> Tensor:
        """One universal step on z (updated in place) and x~ = clip(x + z_y) from the new z."""
        s = self.inv
        x = x.detach()
        z = self.z.detach().clone().requires_grad_(True)
        with bn_mode(model, s.bn_mode), torch.enable_grad():
            x_inv = apply_universal_perturbation(x, z, y)
            if beta:
                logits, feats = logits_and_features(model, x_inv)
            else:
                logits, feats = model(x_inv), None
            total = inverse_loss(logits, y, feats, feat_nat, feat_adv, beta).sum()
            # d total / d z_c = grad of l^c (the class-c sum): one backward for every class;
            # w.r.t. z only, so no parameter .grad is touched
            (grad,) = torch.autograd.grad(total, z)
        # DDP: l^c sums over every rank's class-c examples, so every rank takes the same step
        grad = all_reduce_sum(grad)
        present = _present_classes(y, self.ctx.num_classes)
        with torch.no_grad():
            self.z.copy_(universal_sign_step(self.z, grad, alpha=s.alpha_universal, eps=s.eps_inv, present=present))
        return apply_universal_perturbation(x, self.z, y)

    def _predict(self, model: nn.Module, x: Tensor) -> Tensor:
        """softmax f(x) as a target: detached (no grad, bn_mode) or a training forward."""
        if self.inv.detach_target:
            with torch.no_grad(), bn_mode(model, self.inv.bn_mode):
                return F.softmax(model(x), dim=1, dtype=torch.float32)
        return F.softmax(model(x), dim=1, dtype=torch.float32)

    def _momentum_target(self, idx: Tensor, p_cur: Tensor) -> Tensor:
        """Eq. 8 per sample; stores the (detached) result in ``momentum_p``."""
        if self.epoch >= self.momentum_start_epoch:
            prev = self.momentum_p[idx]
            seen = self.momentum_seen[idx].unsqueeze(1)
            target = torch.where(seen, momentum_update(prev, p_cur, self.inv.gamma), p_cur)
        else:
            target = p_cur
        self._store(self.momentum_p, self.momentum_seen, idx, target)
        return target

    @staticmethod
    def _store(buf: Tensor, seen: Tensor, idx: Tensor, rows: Tensor) -> None:
        """``buf[idx] = rows`` and ``seen[idx] = True``; under DDP with every rank's rows."""
        idx, rows = all_gather_indexed(idx, rows.detach().to(buf.dtype))
        buf[idx] = rows
        seen[idx] = True

    def _oneoff_target(
        self, model: nn.Module, batch: Batch, feat_nat: Tensor | None, feat_adv: Tensor | None, beta: float
    ) -> tuple[Tensor, Tensor | None]:
        """Eq. 10: (target p, per-example KL weight or None)."""
        phase = self.oneoff_phase
        if phase == "before":
            return self._predict(model, batch.x), None
        if phase == "at":
            x_inv = self._universal_inverse(model, batch.x, batch.y, feat_nat, feat_adv, beta)
            target = self._predict(model, x_inv)
            self._store(self.oneoff_p, self.oneoff_seen, batch.idx, target)
            return target, None
        # after T': stored targets only; a sample never drawn at T' has none (weight 0)
        return self.oneoff_p[batch.idx], self.oneoff_seen[batch.idx].to(self.oneoff_p.dtype)

    def _adversarial_forward(self, model: nn.Module, x_adv: Tensor, features: bool) -> tuple[Tensor, Tensor | None]:
        """The training forward on x^ (trainer's mode); its features, detached, if asked."""
        if features:
            logits, feats = logits_and_features(model, x_adv)
            return logits, feats.detach()
        return model(x_adv), None


def _metrics(terms: LossTerms, logits_adv: Tensor, target: Tensor, y: Tensor) -> dict[str, Tensor]:
    return {
        "loss_ce": terms.ce.detach(),
        "loss_reg": terms.reg.detach(),
        "acc_adv": accuracy(logits_adv, y),
        "acc_target": accuracy(target, y),  # accuracy of the target distribution p
    }


# --------------------------------------------------------------------------- iat / uiat
@METHODS.register("iat", help="instance-wise inverse adversarial training (UIAT paper, Algorithm 2)")
class IAT(_InverseBase):
    """Inverse adversarial training, instance-wise (Dong et al. 2023, Algorithm 2).

    ``loss = CE(f(x^), y) + lam * KL(softmax f(x~) || softmax f(x^))`` with x^ = PGD-10 and
    x~ = 5 sign-descent steps of 2/255 on L_Inv within 4/255 from x + 0.001 N(0, 1);
    logits = f(x^). See the module docstring for the notation and the pass count.

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
        ['acc_adv', 'acc_target', 'loss_ce', 'loss_reg']
    """

    Params = IATParams
    universal: bool = False
    use_momentum: bool = False

    def __init__(self, params: IATParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.inv = params
        self.attack = params.attack()

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        p = self.params
        x, y = batch.x, batch.y
        beta = p.effective_beta
        x_adv = self.attack(model, x, y)
        logits_adv, feat_adv = self._adversarial_forward(model, x_adv, features=bool(beta))
        feat_nat = self._natural_features(model, x) if beta else None
        if self.universal:
            x_inv = self._universal_inverse(model, x, y, feat_nat, feat_adv, beta)
        else:
            x_inv = self._instance_inverse(model, x, y, feat_nat, feat_adv, beta)
        target = self._predict(model, x_inv)
        if self.use_momentum:
            target = self._momentum_target(batch.idx, target)
        terms = uiat_loss(logits_adv, y, target, p.lam)
        return LossOutput(terms.total, logits_adv, _metrics(terms, logits_adv, target, y))


@METHODS.register("uiat", help="universal inverse adversarial training (Dong et al. 2023, Algorithm 1)")
class UIAT(IAT):
    """Universal inverse adversarial training (Dong et al. 2023, Algorithm 1).

    Class-wise universal inverse perturbations z_c (one step of 4/255 per batch), feature
    regulariser (beta = 1) and inverse-adversary momentum (gamma = 0.9 from T = 0.75 of the
    run); ``universal`` / ``feature_reg`` / ``momentum`` switch the three components of
    Table 6 (all off = row 1, instance-wise IAT). logits = f(x^).
    """

    Params = UIATParams

    def __init__(self, params: UIATParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.universal = params.universal
        self.use_momentum = params.momentum
        if self.universal:
            self._init_universal()
        if self.use_momentum:
            self._init_momentum()


# --------------------------------------------------------------------------- one-off
@METHODS.register("uiat_oneoff", help="one-off UIAT: inverse targets generated at epoch T' only (Appendix B.2)")
class UIATOneOff(_InverseBase):
    """One-off UIAT (Dong et al. 2023, Eq. 9-10, Appendix B.2).

    ``loss = CE(f(x^), y) + lam * KL(p_OO || softmax f(x^))`` with p_OO = softmax f(x)
    before T', softmax f(x~) (universal inverse adversaries, z stepped every batch, stored
    per sample) at T', the stored values after T' (no inverse generation). logits = f(x^).
    """

    Params = UIATOneOffParams

    def __init__(self, params: UIATOneOffParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.inv = params
        self.attack = params.attack()
        self._init_universal()
        self._init_oneoff()

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        p = self.params
        x, y = batch.x, batch.y
        # the features (of x^ and x) only matter for L_Inv, i.e. at T'
        beta = p.effective_beta if self.oneoff_phase == "at" else 0.0
        x_adv = self.attack(model, x, y)
        logits_adv, feat_adv = self._adversarial_forward(model, x_adv, features=bool(beta))
        feat_nat = self._natural_features(model, x) if beta else None
        target, weight = self._oneoff_target(model, batch, feat_nat, feat_adv, beta)
        terms = uiat_loss(logits_adv, y, target, p.lam, weight)
        return LossOutput(terms.total, logits_adv, _metrics(terms, logits_adv, target, y))


# --------------------------------------------------------------------------- plug-in
class UIATPlugin(_InverseBase):
    """``<base>+uiat``: the UIAT regulariser on top of a base method (Appendix B.3, Eq. 13).

    ``loss = base.loss + lam * KL(p || softmax(base.logits))`` where ``base.logits`` is the
    base's ``LossOutput.logits`` (its adversarial logits; natural logits for ``standard``)
    and p the one-off target (default) or a per-batch universal inverse target with
    momentum; the inverse step is CE only (the base does not expose F(x^)). The base runs
    unchanged, as a submodule (its state under ``base.``). Metrics: the base's, plus
    ``loss_uiat`` (the KL) and ``acc_target``.

    Subclasses are generated per base by :func:`make_uiat_plugin`.
    """

    base_cls: ClassVar[type[Method]]
    base_name: ClassVar[str]

    def __init__(self, params: Any, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.inv = params.plugin_params()
        self.base = self.base_cls(params.base_params(), ctx)
        self._init_universal()
        if self.inv.oneoff:
            self._init_oneoff()
        elif self.inv.momentum:
            self._init_momentum()

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.base.set_epoch(epoch)

    def forward(self, model: nn.Module, batch: Batch) -> LossOutput:
        out = self.base(model, batch)
        weight = None
        if self.inv.oneoff:
            target, weight = self._oneoff_target(model, batch, None, None, 0.0)
        else:
            x_inv = self._universal_inverse(model, batch.x, batch.y, None, None, 0.0)
            target = self._predict(model, x_inv)
            if self.inv.momentum:
                target = self._momentum_target(batch.idx, target)
        reg = uiat_regulariser(out.logits, target, weight)
        metrics = dict(out.metrics)
        metrics["loss_uiat"] = reg.detach()
        metrics["acc_target"] = accuracy(target, batch.y)
        return LossOutput(out.loss + self.inv.lam * reg, out.logits, metrics)


def _plugin_params_class(base_name: str, base_cls: type[Method]) -> type:
    """A frozen dataclass with the base Params' fields followed by UIATPluginParams'."""
    base_params = base_cls.Params
    own = dataclasses.fields(UIATPluginParams)
    base_fields = dataclasses.fields(base_params) if base_params is not None else ()
    clash = sorted({f.name for f in own} & {f.name for f in base_fields})
    if clash:
        raise ValueError(f"cannot build {base_name}+uiat: {base_name}'s parameter(s) {clash} clash with the plug-in's")
    spec = []
    for params_cls, fields in ((base_params, base_fields), (UIATPluginParams, own)):
        hints = typing.get_type_hints(params_cls) if fields else {}
        for f in fields:
            if f.default is not dataclasses.MISSING:
                spec.append((f.name, hints[f.name], dataclasses.field(default=f.default)))
            elif f.default_factory is not dataclasses.MISSING:
                spec.append((f.name, hints[f.name], dataclasses.field(default_factory=f.default_factory)))
            else:
                spec.append((f.name, hints[f.name]))
    base_names = tuple(f.name for f in base_fields)
    own_names = tuple(f.name for f in own)

    def __post_init__(self) -> None:
        check_field_types(self)
        self.base_params()  # each part validates itself
        self.plugin_params()

    def base_params_fn(self) -> Any:
        """The base method's Params."""
        return base_params(**{n: getattr(self, n) for n in base_names})

    def plugin_params_fn(self) -> UIATPluginParams:
        """The plug-in's own fields."""
        return UIATPluginParams(**{n: getattr(self, n) for n in own_names})

    name = f"{base_cls.__name__}UIATParams"
    cls = dataclasses.make_dataclass(
        name, spec, frozen=True,
        namespace={"__post_init__": __post_init__, "base_params": base_params_fn, "plugin_params": plugin_params_fn},
    )
    cls.__module__ = __name__
    cls.__doc__ = (
        f"Hyper-parameters of ``{base_name}+uiat``: the fields of "
        f"{base_params.__name__ if base_params is not None else '(none)'} (passed to the base "
        "method) followed by those of UIATPluginParams."
    )
    return cls


def make_uiat_plugin(base_name: str, base_cls: type[Method]) -> type[UIATPlugin]:
    """The ``<base>+uiat`` method class: :class:`UIATPlugin` over ``base_cls``.

    Raises:
        ValueError: a base parameter has the name of a plug-in parameter.
    """
    params = _plugin_params_class(base_name, base_cls)
    name = f"{base_cls.__name__}UIAT"
    cls = type(name, (UIATPlugin,), {
        "Params": params, "base_cls": base_cls, "base_name": base_name, "__module__": __name__,
        "__doc__": f"``{base_name}`` + the UIAT regulariser (see :class:`UIATPlugin`).",
    })
    # reachable by name (pickling, introspection)
    globals()[name] = cls
    globals()[params.__name__] = params
    return cls


def register_uiat_plugins(registry=METHODS) -> list[str]:
    """Register ``<base>+uiat`` for every base in ``registry`` that has none yet.

    Bases are the entries whose class does not set ``uiat_pluggable = False`` (the inverse
    family) and whose name has no ``+``. Idempotent: call it after importing new bases
    (``robustrain.methods`` calls it once every built-in method module is imported).

    Returns:
        the names added.
    """
    added = []
    for entry in list(registry):
        if "+" in entry.name or not getattr(entry.obj, "uiat_pluggable", True):
            continue
        name = f"{entry.name}+uiat"
        if name in registry:
            continue
        registry.add(
            name, make_uiat_plugin(entry.name, entry.obj),
            help=f"{entry.name} + the UIAT regulariser lam*KL(p || f(x_adv)) (UIAT paper, Appendix B.3)",
        )
        added.append(name)
    return added
