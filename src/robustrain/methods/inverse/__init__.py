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
  adversaries, momentum-averaged or one-off) is detached by default: a teacher for x^,
  computed with BatchNorm on the batch's own statistics (``target_bn_mode``, default
  ``train_frozen_stats``; issue 19, docs/teacher-forwards.md).
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
  (``oneoff=False``: a universal step every batch, with momentum as ``uiat``). It is built
  by constructor from the base method INSTANCE, ``UIATPlugin(base, UIATPluginParams(...),
  ctx)``; ``create_method("pgd_at+uiat", ctx, steps=5, lam=3.0)`` splits the flat keys by
  the two Params' fields (``method.steps=5`` reaches the base) and builds the pair. Every
  registered base without ``uiat_pluggable = False`` has a ``<base>+uiat`` name
  (:func:`robustrain.methods.method_names`); no class is generated per base.

Samples with no stored target (never drawn at T', e.g. with ``data.drop_last=true``) get no
KL term after T' (weight 0) rather than a made-up target; a sample's first momentum update
uses its current prediction (buffer ``momentum_seen``), so T = 0 or a skipped sample is
handled without reading tensors back to the host.

Cost: forward / backward passes per batch
-----------------------------------------
K = attack steps (10), n = instance-wise inverse steps (5). "bwd" counts backward passes
through the whole network: the attack's and the inverse steps' (w.r.t. the input only)
and the trainer's parameter backward. F(x) and F(x^) are computed once per batch (no grad, in
the generation ``bn_mode``, so that L_Inv compares features of one mode; ``adv_features=
training_forward`` reuses the training forward's features as F(x^) instead, one forward fewer,
the behaviour before issue 19); the z-gradient of every
class comes from ONE backward of sum_i L_Inv(x~_i) (indexing z[y] sums the per-class
gradients); nothing is read back to the host.

======================  ===============  ===============  ==========================
method                  forwards         backwards        extra over pgd_at
======================  ===============  ===============  ==========================
pgd_at                  K+1 = 11         K+1 = 11         --
iat                     K+n+4 = 19       K+n+1 = 16       F(x), F(x^), n steps, f(x~)
uiat                    K+5 = 15         K+2 = 12         F(x), F(x^), 1 step, f(x~)
uiat_oneoff, t < T'     K+2 = 12         K+1 = 11         f(x)
uiat_oneoff, t = T'     K+5 = 15         K+2 = 12         as uiat
uiat_oneoff, t > T'     K+1 = 11         K+1 = 11         none
<base>+uiat (one-off)   base +1/+2/+0    base +0/+1/+0    before / at / after T'
======================  ===============  ===============  ==========================

Without FR (beta = 0 or ``feature_reg=False``) the F(x) and F(x^) forwards are skipped (two
fewer). The CPU ratios below were measured before issue 19 added the F(x^) forward.
With ``detach_target=False`` the target forward carries gradient, so the parameter
backward also runs through it (one more backward). ``tests/test_inverse.py`` checks this
table by counting forwards and backwards. Measured CPU time per training step relative to
``pgd_at`` (``benchmarks/throughput.py``, small_cnn, batch 128, 2 CPU cores, interleaved
rounds in one run; see docs/results.md): iat 1.45, uiat 1.26 (1.21 with momentum),
uiat_oneoff 1.03 before T' and 0.99 after, pgd_at+uiat 1.11 before T' and 1.06 after.

Order and BatchNorm (issue 19, docs/teacher-forwards.md): GENERATION (the attack, F(x), F(x^),
the inverse steps) runs in ``bn_mode`` (default ``eval``, running statistics, as every
attack of the library); the detached TARGET forward softmax f(x~) (and one-off's f(x) before
T') runs in ``target_bn_mode``, default ``train_frozen_stats``: batch statistics, like the
student f(x^), without counting the batch in the running statistics a second time. The old
default computed the target in ``bn_mode`` (eval): early in training the running statistics
lag, the eval-mode network gives one class to the whole batch with logits 1.4-2x the
student's, and with lam = 3.5 > 1 the KL term drove training to one class (held-out accuracy
at chance in every seed of the study). ``target_bn_mode=eval`` keeps that behaviour for the
ablation; a run saved before issue 19 resumes with it. The training forward on x^ runs in
the trainer's mode (train) BEFORE the inverse generation, so the inverse step sees running
statistics already updated by this batch's training forward.

State (saved in every checkpoint, restored by ``load_state_dict``)
-----------------------------------------------------------------
Every method HOLDS an :class:`InverseTargets` component (``method.targets``; no shared base
class) that owns the buffers and the generation steps: ``targets.z`` (C x image, universal
variants), ``targets.momentum_p`` / ``targets.momentum_seen`` (N x C / N, ``uiat`` with
momentum), ``targets.oneoff_p`` / ``targets.oneoff_seen`` (N x C / N, one-off variants); a
plug-in's base method's state sits under ``base.``. Checkpoints written before this layout
(flat ``z``, ``momentum_p``, ...) still load: each method renames them on
``load_state_dict`` (:func:`~robustrain.methods.inverse.targets.upgrade_legacy_state_dict`).
Which branch runs is a function of the epoch given by ``set_epoch`` (the trainer calls it
after ``load_state_dict`` on resume; the method passes it to its targets), so a resumed run
continues identically.

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

Layout of the package
---------------------
* :mod:`~robustrain.methods.inverse.ops`: the pure functions (:func:`momentum_update`,
  :func:`universal_sign_step`, :func:`apply_universal_perturbation`,
  :func:`epoch_from_fraction`) and small forward helpers.
* :mod:`~robustrain.methods.inverse.targets`: :class:`InverseTargets`, the component that
  owns ``z`` and the per-sample targets and runs the generation steps.
* :mod:`~robustrain.methods.inverse.iat`: ``iat``, ``uiat`` and their Params;
  :mod:`~robustrain.methods.inverse.oneoff`: ``uiat_oneoff``;
  :mod:`~robustrain.methods.inverse.plugin`: :class:`UIATPlugin` (``<base>+uiat``).
"""

from robustrain.methods.inverse.iat import IAT, UIAT, IATParams, InverseParams, UIATParams
from robustrain.methods.inverse.oneoff import UIATOneOff, UIATOneOffParams
from robustrain.methods.inverse.ops import (
    apply_universal_perturbation,
    epoch_from_fraction,
    momentum_update,
    universal_sign_step,
)
from robustrain.methods.inverse.plugin import UIATPlugin, UIATPluginParams
from robustrain.methods.inverse.targets import InverseTargets

__all__ = [
    "IAT",
    "IATParams",
    "InverseParams",
    "InverseTargets",
    "UIAT",
    "UIATOneOff",
    "UIATOneOffParams",
    "UIATParams",
    "UIATPlugin",
    "UIATPluginParams",
    "apply_universal_perturbation",
    "epoch_from_fraction",
    "momentum_update",
    "universal_sign_step",
]
