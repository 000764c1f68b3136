"""``InverseTargets``: the component that generates the inverse-adversary targets p and owns
their state (``z``, ``momentum_p`` / ``momentum_seen``, ``oneoff_p`` / ``oneoff_seen``).

Each inverse method HOLDS one (``self.targets``) instead of inheriting shared machinery; the
method keeps the epoch (``Method.set_epoch``) and passes it in, so the component has no
schedule state of its own. Its buffers sit under ``targets.`` in the method's
``state_dict``; :func:`upgrade_legacy_state_dict` maps the flat keys of older checkpoints.
The N x C tables (``momentum_p``, ``oneoff_p``) are stored as ``ctx.sample_state`` chooses
(``train.sample_state``, :mod:`robustrain.methods.sample_state`): fp32 on the device for small
N, bf16 or host memory at ImageNet scale; they are read as fp32 and written rounded.

Example:
    >>> import torch
    >>> from robustrain.methods import MethodContext
    >>> ctx = MethodContext(num_classes=3, image_shape=(1, 2, 2), num_train=5, epochs=10)
    >>> t = InverseTargets(ctx, eps_inv=0.1, init_std_inv=0.001, bn_mode="eval",
    ...                    target_bn_mode="train_frozen_stats", detach_target=True,
    ...                    alpha_universal=0.1, momentum_start=0.5, universal=True, momentum=True)
    >>> sorted(t.state_dict()), t.momentum_start_epoch
    (['momentum_p', 'momentum_seen', 'z'], 5)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.attacks import bn_mode, pgd
from robustrain.data.batch import Batch
from robustrain.methods.base import MethodContext
from robustrain.methods.inverse.ops import (
    InverseTarget,
    LogitsWithFeatures,
    apply_universal_perturbation,
    epoch_from_fraction,
    inverse_attack_loss,
    momentum_update,
    present_classes,
    universal_sign_step,
)
from robustrain.methods.losses import inverse_loss
from robustrain.methods.sample_state import SampleStorage
from robustrain.models.base import logits_and_features
from robustrain.utils.distributed import all_gather_indexed, all_reduce_sum

__all__ = ["InverseTargets", "LEGACY_KEYS", "upgrade_legacy_state_dict"]

#: the buffers' names; before the ``methods/inverse/`` package they sat at the method's top level
LEGACY_KEYS = ("z", "momentum_p", "momentum_seen", "oneoff_p", "oneoff_seen")


def upgrade_legacy_state_dict(state_dict: dict[str, Any], prefix: str, into: str = "targets") -> None:
    """Rename, in place, a method's old flat buffer keys (``{prefix}z``, ...) to
    ``{prefix}{into}.z``, ...; keys already in the new layout are left alone.

    Called from the inverse methods' ``_load_from_state_dict`` so checkpoints written before
    the buffers moved into :class:`InverseTargets` still load (strict) and resume identically.

    Example:
        >>> sd = {"z": 1, "base.w": 2}
        >>> upgrade_legacy_state_dict(sd, "")
        >>> sorted(sd)
        ['base.w', 'targets.z']
    """
    for key in LEGACY_KEYS:
        old, new = prefix + key, f"{prefix}{into}.{key}"
        if old in state_dict and new not in state_dict:
            state_dict[new] = state_dict.pop(old)


class InverseTargets(nn.Module):
    """Inverse-adversary generation and the per-class / per-sample target state.

    Args:
        ctx: the run's facts (classes, image shape, training-set size, epochs).
        eps_inv: eps', the Linf radius of inverse perturbations.
        init_std_inv: std of z's init and of the instance-wise inverse start.
        bn_mode: BatchNorm mode of the GENERATION forwards: F(x), F(x^), the inverse steps
            (the z step or the instance-wise PGD).
        target_bn_mode: BatchNorm mode of the detached TARGET forward softmax f(x~) (and of
            one-off's natural target f(x) before T'): a loss target, so batch statistics
            (``train_frozen_stats``) by default, as every reference code computes its loss
            forwards in train mode; ``eval`` is the pre-issue-19 behaviour (running
            statistics), which collapses small models early in training.
        detach_target: the target carries no gradient (a no-grad forward in
            ``target_bn_mode``); False = a training forward (the trainer's mode).
        alpha_universal: alpha' of the universal step (universal variants).
        alpha_inv, steps_inv: the instance-wise inverse PGD (``iat``).
        gamma, momentum_start: Eq. 8's gamma and T as a fraction of the run (with ``momentum``).
        oneoff_epoch: T' as a fraction of the run (with ``oneoff``).
        universal, momentum, oneoff: which buffers exist: ``z`` (C x image, init
            ``clamp(init_std_inv * randn, -eps', eps')``, drawn HERE, at construction),
            ``momentum_p`` / ``momentum_seen`` (N x C / N), ``oneoff_p`` / ``oneoff_seen``;
            the N x C tables in the storage of ``ctx.sample_state`` (``sample_storage`` says
            which; one kept in host memory stays there when the module moves).
    """

    def __init__(
        self, ctx: MethodContext, *, eps_inv: float, init_std_inv: float, bn_mode: str, target_bn_mode: str,
        detach_target: bool,
        alpha_universal: float | None = None, alpha_inv: float | None = None, steps_inv: int | None = None,
        gamma: float | None = None, momentum_start: float | None = None, oneoff_epoch: float | None = None,
        universal: bool = False, momentum: bool = False, oneoff: bool = False,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.eps_inv, self.init_std_inv = eps_inv, init_std_inv
        self.bn_mode, self.target_bn_mode, self.detach_target = bn_mode, target_bn_mode, detach_target
        self.alpha_universal, self.alpha_inv, self.steps_inv = alpha_universal, alpha_inv, steps_inv
        self.gamma, self.momentum_start, self.oneoff_epoch = gamma, momentum_start, oneoff_epoch
        c, n = ctx.num_classes, ctx.num_train
        #: storage of each N x C table (:mod:`robustrain.methods.sample_state`), for the run's log
        self.sample_storage: dict[str, SampleStorage] = {}
        if universal:
            z = (init_std_inv * torch.randn(c, *tuple(ctx.image_shape))).clamp(-eps_inv, eps_inv)
            self.register_buffer("z", z)
        if momentum:
            self._register_table("momentum_p", "momentum_seen", "momentum targets")
        if oneoff:
            self._register_table("oneoff_p", "oneoff_seen", "one-off targets")

    def _register_table(self, name: str, seen: str, what: str) -> None:
        """An N x C table in the run's storage (refused, before any allocation, when it cannot
        fit) and its N seen-flags on the device."""
        policy, n = self.ctx.sample_state, self.ctx.num_train
        storage = policy.storage(n, self.ctx.num_classes, what)
        self.register_buffer(name, storage.allocate(policy.device))
        self.register_buffer(seen, torch.zeros(n, dtype=torch.bool, device=policy.device))
        self.sample_storage[name] = storage

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202
        # tables in host memory stay there when the method moves to the device (``.to(device)``)
        host = {k: self._buffers[k] for k, s in self.sample_storage.items() if s.host}
        for key in host:
            self._buffers[key] = None  # skipped by Module._apply; the key keeps its place
        try:
            return super()._apply(fn, recurse)
        finally:
            self._buffers.update(host)

    # ---- schedule (Python ints from the method's epoch: no tensor reads)
    @property
    def momentum_start_epoch(self) -> int:
        """T, the first epoch (0-based) of the inverse-adversary momentum."""
        return epoch_from_fraction(self.momentum_start, self.ctx.epochs)

    @property
    def oneoff_epoch_index(self) -> int:
        """T', the one-off epoch (0-based), clamped to the run's last epoch."""
        return max(0, min(epoch_from_fraction(self.oneoff_epoch, self.ctx.epochs), self.ctx.epochs - 1))

    def oneoff_phase(self, epoch: int) -> str:
        """``"before"`` | ``"at"`` | ``"after"`` the one-off epoch T'."""
        t = self.oneoff_epoch_index
        return "before" if epoch < t else ("at" if epoch == t else "after")

    # ---- passes
    def features(self, model: nn.Module, x: Tensor) -> Tensor:
        """F(x) (or F(x^)), once per batch, no grad, in the generation mode ``bn_mode``: the
        same mode as F(x~) inside the inverse steps, so L_Inv's three features are comparable."""
        with torch.no_grad(), bn_mode(model, self.bn_mode):
            return logits_and_features(model, x)[1]

    def instance_inverse(
        self, model: nn.Module, x: Tensor, y: Tensor, feat_nat: Tensor | None, feat_adv: Tensor | None,
        beta: float,
    ) -> Tensor:
        """Instance-wise x~: ``steps_inv`` sign-descent steps on L_Inv (Eq. 3), ``attacks.pgd``."""
        if beta:
            net: nn.Module = LogitsWithFeatures(model)
            loss: Any = inverse_attack_loss(self.ctx.num_classes, beta)
            target: Any = InverseTarget(y, feat_nat, feat_adv)
        else:
            net, loss, target = model, "ce", y
        return pgd(
            net, x, target, eps=self.eps_inv, alpha=self.alpha_inv, steps=self.steps_inv, norm="linf",
            loss=loss, start="normal", init_std=self.init_std_inv, descend=True, bn_mode=self.bn_mode,
        )

    def universal_inverse(
        self, model: nn.Module, x: Tensor, y: Tensor, feat_nat: Tensor | None, feat_adv: Tensor | None,
        beta: float,
    ) -> Tensor:
        """One universal step on z (updated in place) and x~ = clip(x + z_y) from the new z."""
        x = x.detach()
        z = self.z.detach().clone().requires_grad_(True)
        with bn_mode(model, self.bn_mode), torch.enable_grad():
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
        present = present_classes(y, self.ctx.num_classes)
        with torch.no_grad():
            self.z.copy_(universal_sign_step(self.z, grad, alpha=self.alpha_universal, eps=self.eps_inv,
                                             present=present))
        return apply_universal_perturbation(x, self.z, y)

    def predict(self, model: nn.Module, x: Tensor) -> Tensor:
        """softmax f(x) as a target: detached (no grad, ``target_bn_mode``) or a training forward."""
        if self.detach_target:
            with torch.no_grad(), bn_mode(model, self.target_bn_mode):
                return F.softmax(model(x), dim=1, dtype=torch.float32)
        return F.softmax(model(x), dim=1, dtype=torch.float32)

    def momentum_target(self, idx: Tensor, p_cur: Tensor, epoch: int) -> Tensor:
        """Eq. 8 per sample at ``epoch``; stores the (detached) result in ``momentum_p``."""
        if epoch >= self.momentum_start_epoch:
            prev = _rows(self.momentum_p, idx)
            seen = self.momentum_seen[idx].unsqueeze(1)
            target = torch.where(seen, momentum_update(prev, p_cur, self.gamma), p_cur)
        else:
            target = p_cur
        _store(self.momentum_p, self.momentum_seen, idx, target)
        return target

    def oneoff_target(
        self, model: nn.Module, batch: Batch, feat_nat: Tensor | None, feat_adv: Tensor | None, beta: float,
        epoch: int,
    ) -> tuple[Tensor, Tensor | None]:
        """Eq. 10 at ``epoch``: (target p, per-example KL weight or None)."""
        phase = self.oneoff_phase(epoch)
        if phase == "before":
            return self.predict(model, batch.x), None
        if phase == "at":
            x_inv = self.universal_inverse(model, batch.x, batch.y, feat_nat, feat_adv, beta)
            target = self.predict(model, x_inv)
            _store(self.oneoff_p, self.oneoff_seen, batch.idx, target)
            return target, None
        # after T': stored targets only; a sample never drawn at T' has none (weight 0)
        return _rows(self.oneoff_p, batch.idx), self.oneoff_seen[batch.idx].to(torch.float32)

    def extra_repr(self) -> str:
        return ", ".join(k for k in LEGACY_KEYS if k in self._buffers)


def _rows(buf: Tensor, idx: Tensor) -> Tensor:
    """``buf[idx]`` as fp32 on ``idx``'s device (the same tensor for an fp32 table on the device)."""
    return buf[idx.to(buf.device)].to(device=idx.device, dtype=torch.float32, non_blocking=True)


def _store(buf: Tensor, seen: Tensor, idx: Tensor, rows: Tensor) -> None:
    """``buf[idx] = rows`` (rounded to ``buf``'s dtype) and ``seen[idx] = True``; under DDP
    with every rank's rows."""
    idx, rows = all_gather_indexed(idx, rows.detach().to(buf.dtype))
    buf[idx.to(buf.device)] = rows.to(buf.device)
    seen[idx] = True
