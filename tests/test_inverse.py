"""Tests of the UIAT family (robustrain.methods.inverse): each equation against a hand
computation, the schedules across T and T', the ablation configs, the state round-trip (and
the old flat state_dict layout), and the ``<base>+uiat`` plug-in composition. The contract tests of tests/test_methods.py cover
these methods too (they are parametrised over the registry)."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks import bn_mode
from robustrain.config import config_from_dict, load_config
from robustrain.utils.errors import ConfigError
from robustrain.data.batch import Batch
from robustrain.methods import (
    METHODS,
    PLUGINS,
    MethodContext,
    create_method,
    method_fields,
    method_names,
    method_params,
)
from robustrain.methods.at import PGDATParams
from robustrain.methods.inverse import UIATPluginParams
from robustrain.methods.registry import PluggedParams
from robustrain.methods import inverse as inv
from robustrain.methods.base import LossOutput, Method
from robustrain.methods.losses import inverse_loss, kl_div, l1_per_example, uiat_loss, uiat_regulariser
from robustrain.models.base import Classifier
from robustrain.utils.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
C = 4
IMAGE = (3, 8, 8)
N_TRAIN = 32


def ctx(epochs: int = 4) -> MethodContext:
    return MethodContext(num_classes=C, image_shape=IMAGE, num_train=N_TRAIN, epochs=epochs)


class TinyNet(Classifier):
    """conv + BatchNorm + linear head; counts forward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.head = nn.Linear(32, C)
        self.calls = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x, return_features=False):
        self.calls += 1
        return super().forward(x, return_features=return_features)



@pytest.fixture
def model() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet()
    # give BatchNorm non-trivial running statistics, then freeze them: eval mode makes every
    # forward deterministic, so the expected values below can be recomputed by hand
    with torch.no_grad():
        net.train()
        for _ in range(3):
            net(torch.rand(16, *IMAGE))
    return net.eval()


def make_batch(n: int = 16, seed: int = 0, offset: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *IMAGE, generator=g)
    y = torch.arange(n) % C  # every class present
    return Batch(x, y, torch.arange(offset, offset + n))


def softmax_rows(logits: torch.Tensor) -> torch.Tensor:
    return F.softmax(logits, dim=1)


def kl_by_hand(p: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(1/N) sum_i sum_j p_ij (log p_ij - log q_ij), q = softmax(logits), in float64."""
    p, q = p.detach().double(), F.softmax(logits.detach().double(), dim=1)
    return (p * (p.log() - q.log())).sum() / p.shape[0]


# --------------------------------------------------------------------------- pure functions
def hand_ce(row: list[float], label: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[label]


def test_inverse_loss_hand_with_and_without_feature_reg():
    logits = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
    y = [1, 2]
    f_inv = [[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 1.0, 2.0]]
    f_nat = [[0.0, -1.0, 0.5, 1.0], [0.5, 1.0, 0.0, 2.0]]
    f_adv = [[3.0, 2.0, -0.5, 0.0], [0.0, 0.0, 1.0, 4.0]]
    t = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    ce = [hand_ce(r, c) for r, c in zip(logits, y)]
    l1 = lambda a, b: sum(abs(u - v) for u, v in zip(a, b)) / len(a)  # noqa: E731  mean over D
    # row 0: L1(inv, nat) = (1 + 1 + 0 + 1) / 4 = 0.75, L1(inv, adv) = (2 + 4 + 1 + 0) / 4 = 1.75
    assert l1(f_inv[0], f_nat[0]) == 0.75 and l1(f_inv[0], f_adv[0]) == 1.75
    torch.testing.assert_close(l1_per_example(t(f_inv), t(f_nat)), t([0.75, 0.375]))

    no_fr = inverse_loss(t(logits), torch.tensor(y))
    torch.testing.assert_close(no_fr, t(ce))
    for beta in (1.0, 0.5):
        expected = [c + beta * (l1(a, n) - l1(a, d)) for c, a, n, d in zip(ce, f_inv, f_nat, f_adv)]
        got = inverse_loss(t(logits), torch.tensor(y), t(f_inv), t(f_nat), t(f_adv), beta)
        assert got.shape == (2,)
        torch.testing.assert_close(got, t(expected))
    # beta = 0: the features are not needed and do not matter
    torch.testing.assert_close(inverse_loss(t(logits), torch.tensor(y), t(f_inv), t(f_nat), t(f_adv), 0.0), t(ce))
    with pytest.raises(ValueError, match="feat"):
        inverse_loss(t(logits), torch.tensor(y), beta=1.0)


def test_kl_direction_and_training_loss_hand():
    p = torch.tensor([[0.5, 0.5]])
    logits = torch.log(torch.tensor([[0.25, 0.75]]))
    kl_pq = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # 0.1438
    kl_qp = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # 0.1308
    assert abs(kl_pq - kl_qp) > 0.01
    assert float(uiat_regulariser(logits, p)) == pytest.approx(kl_pq, abs=1e-6)
    terms = uiat_loss(logits, torch.tensor([1]), p, lam=3.5)
    assert float(terms.reg) == pytest.approx(kl_pq, abs=1e-6)
    assert float(terms.ce) == pytest.approx(-math.log(0.75), abs=1e-6)
    assert float(terms.total) == pytest.approx(-math.log(0.75) + 3.5 * kl_pq, abs=1e-5)
    # batch mean, per-example weights
    p2 = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    l2 = torch.log(torch.tensor([[0.25, 0.75], [0.6, 0.4]]))
    kl2 = 0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4)
    assert float(uiat_regulariser(l2, p2)) == pytest.approx((kl_pq + kl2) / 2, abs=1e-6)
    assert float(uiat_regulariser(l2, p2, torch.tensor([0.0, 1.0]))) == pytest.approx(kl2 / 2, abs=1e-6)


def test_momentum_update_and_universal_step_hand():
    torch.testing.assert_close(
        inv.momentum_update(torch.tensor([0.2, 0.8]), torch.tensor([0.6, 0.4]), 0.9),
        torch.tensor([0.9 * 0.2 + 0.1 * 0.6, 0.9 * 0.8 + 0.1 * 0.4]),
    )
    z = torch.tensor([[0.0, 0.1], [0.05, -0.1], [0.02, 0.02]])
    grad = torch.tensor([[1.0, -2.0], [-0.5, 0.0], [3.0, 3.0]])
    present = torch.tensor([True, True, False])
    got = inv.universal_sign_step(z, grad, alpha=0.08, eps=0.1, present=present)
    expected = torch.tensor([[-0.08, 0.1], [0.1, -0.1], [0.02, 0.02]])  # clip to ±0.1; class 2 absent
    torch.testing.assert_close(got, expected)
    assert inv.epoch_from_fraction(0.75, 100) == 75 and inv.epoch_from_fraction(0.875, 400) == 350
    assert inv.epoch_from_fraction(0.8, 100) == 80 and inv.epoch_from_fraction(0.75, 4) == 3


# --------------------------------------------------------------------------- universal inverse step
def test_z_stays_in_eps_ball_and_images_in_range(model):
    method = create_method("uiat", ctx(), alpha_universal=1.0)  # steps far larger than eps'
    batch = make_batch()
    x = batch.x.clone()
    x[:4] = 0.0
    x[4:8] = 1.0  # saturated pixels: x + z must be clipped
    eps = method.params.eps_inv
    for _ in range(3):
        x_inv = method.targets.universal_inverse(model, x, batch.y, None, None, 0.0)
        assert method.targets.z.abs().max() <= eps + 1e-7
        assert x_inv.min() >= 0 and x_inv.max() <= 1
        assert (x_inv - x).abs().max() <= eps + 1e-6
    assert method.targets.z.abs().max() == pytest.approx(eps)  # a sign step of 1.0 lands on the boundary
    out = method(model, batch._replace(x=x))
    assert torch.isfinite(out.loss)
    assert method.targets.z.abs().max() <= eps + 1e-7


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_one_universal_step_lowers_the_class_loss(model, beta):
    torch.manual_seed(1)
    method = create_method("uiat", ctx(), beta=beta)
    method.targets.z.zero_()
    g = torch.Generator().manual_seed(3)
    n = 64
    x = torch.rand(n, *IMAGE, generator=g)
    y = torch.full((n,), 2)  # one class: its z_c is the universal direction for all of them
    feat_nat = method.targets.features(model, x) if beta else None
    x_far = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)  # stands in for x^
    feat_adv = method.targets.features(model, x_far) if beta else None
    with torch.no_grad():
        ce_before = F.cross_entropy(model(x), y, reduction="none")
    x_inv = method.targets.universal_inverse(model, x, y, feat_nat, feat_adv, beta)
    with torch.no_grad():
        ce_after = F.cross_entropy(model(x_inv), y, reduction="none")
    assert method.targets.z[2].abs().max() > 0 and method.targets.z[[0, 1, 3]].abs().max() == 0  # only class 2 moved
    assert (ce_after < ce_before).float().mean() >= 0.8  # "most" examples of the class (Eq. 5)
    assert ce_after.mean() < ce_before.mean()


def test_instance_inverse_is_in_the_ball_and_lowers_the_loss(model):
    method = create_method("iat", ctx(), beta=0.0)
    batch = make_batch(32)
    x_inv = method.targets.instance_inverse(model, batch.x, batch.y, None, None, 0.0)
    assert (x_inv - batch.x).abs().max() <= method.params.eps_inv + 1e-6
    assert x_inv.min() >= 0 and x_inv.max() <= 1
    with torch.no_grad():
        before = F.cross_entropy(model(batch.x), batch.y, reduction="none")
        after = F.cross_entropy(model(x_inv), batch.y, reduction="none")
    assert (after < before).all()


# --------------------------------------------------------------------------- schedules
def target_forward(model, x: torch.Tensor) -> torch.Tensor:
    """A detached target as the methods compute it by default: softmax f(x) with BatchNorm on
    the batch's own statistics and the running statistics untouched (issue 19)."""
    with torch.no_grad(), bn_mode(model, "train_frozen_stats"):
        return softmax_rows(model(x))


def expected_target(model, method, batch) -> torch.Tensor:
    """softmax f(clip(x + z_y)) with the method's (updated) z, batch statistics."""
    return target_forward(model, inv.apply_universal_perturbation(batch.x, method.targets.z, batch.y))


def test_momentum_arithmetic_across_T(model):
    method = create_method("uiat", ctx(epochs=4), steps=1, momentum_start=0.75)
    assert method.targets.momentum_start_epoch == 3
    batch = make_batch()
    # epoch 2 (< T): p = softmax f(x~), stored
    method.set_epoch(2)
    out = method(model, batch)
    p2 = expected_target(model, method, batch)
    torch.testing.assert_close(method.targets.momentum_p[batch.idx], p2)
    assert float(out.metrics["loss_reg"]) == pytest.approx(float(kl_by_hand(p2, out.logits)), abs=1e-5)
    # the target ignores the previous value before T
    method.set_epoch(2)
    method(model, batch)
    torch.testing.assert_close(method.targets.momentum_p[batch.idx], expected_target(model, method, batch))
    prev = method.targets.momentum_p[batch.idx].clone()
    # epoch 3 (= T): p <- gamma p + (1 - gamma) softmax f(x~)
    method.set_epoch(3)
    out = method(model, batch)
    expected = 0.9 * prev + 0.1 * expected_target(model, method, batch)
    torch.testing.assert_close(method.targets.momentum_p[batch.idx], expected)
    assert float(out.metrics["loss_reg"]) == pytest.approx(float(kl_by_hand(expected, out.logits)), abs=1e-5)
    ce = F.cross_entropy(out.logits.detach(), batch.y)
    hand = float(ce) + 3.5 * float(kl_by_hand(expected, out.logits))
    assert float(out.loss.detach()) == pytest.approx(hand, abs=1e-4)
    # a sample never seen before T starts from its current prediction (no momentum on zeros)
    fresh = make_batch(8, seed=5, offset=16)
    assert not method.targets.momentum_seen[fresh.idx].any()
    method(model, fresh)
    torch.testing.assert_close(method.targets.momentum_p[fresh.idx], expected_target(model, method, fresh))


def test_momentum_off_and_instance_wise_switches(model):
    method = create_method("uiat", ctx(), steps=1, universal=False, momentum=False, steps_inv=2)
    assert not hasattr(method.targets, "z") and not hasattr(method.targets, "momentum_p")
    out = method(model, make_batch())
    assert torch.isfinite(out.loss) and set(out.metrics) == {"loss_ce", "loss_reg", "acc_adv", "acc_target",
                                                          "target_p_max", "target_majority"}


class Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_oneoff_schedule_across_T_prime(model):
    K = 2
    method = create_method("uiat_oneoff", ctx(epochs=4), steps=K, oneoff_epoch=0.5)
    assert method.targets.oneoff_epoch_index == 2
    gen = method.targets.universal_inverse = Counter(method.targets.universal_inverse)
    batches = [make_batch(16, seed=0, offset=0), make_batch(12, seed=1, offset=16)]  # ids 0..27 of 32
    z0 = method.targets.z.clone()
    for epoch in (0, 1):  # before T': natural target, nothing stored, z untouched
        method.set_epoch(epoch)
        for b in batches:
            model.calls = 0
            out = method(model, b)
            assert model.calls == K + 2
            p_nat = target_forward(model, b.x)
            assert float(out.metrics["loss_reg"]) == pytest.approx(float(kl_by_hand(p_nat, out.logits)), abs=1e-5)
    assert gen.calls == 0 and not method.targets.oneoff_seen.any() and torch.equal(method.targets.z, z0)

    method.set_epoch(2)  # T': universal inverse adversaries, targets stored
    for b in batches:
        model.calls = 0
        out = method(model, b)
        assert model.calls == K + 5  # + F(x), F(x^), one universal step, f(x~)
        p_inv = expected_target(model, method, b)
        torch.testing.assert_close(method.targets.oneoff_p[b.idx], p_inv)
        assert float(out.metrics["loss_reg"]) == pytest.approx(float(kl_by_hand(p_inv, out.logits)), abs=1e-5)
    assert gen.calls == 2 and not torch.equal(method.targets.z, z0)
    assert method.targets.oneoff_seen[:28].all() and not method.targets.oneoff_seen[28:].any()
    stored, z_at = method.targets.oneoff_p.clone(), method.targets.z.clone()

    method.set_epoch(3)  # after T': stored targets, no inverse generation at all
    for b in batches:
        model.calls = 0
        out = method(model, b)
        assert model.calls == K + 1  # as pgd_at
        assert float(out.metrics["loss_reg"]) == pytest.approx(float(kl_by_hand(stored[b.idx], out.logits)), abs=1e-5)
    assert gen.calls == 2 and torch.equal(method.targets.z, z_at) and torch.equal(method.targets.oneoff_p, stored)
    # a sample that missed T' has no target: weight 0 in the KL mean
    mixed = Batch(torch.rand(4, *IMAGE), torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 30, 31]))
    out = method(model, mixed)
    kl_rows = kl_div(stored[:2], F.log_softmax(out.logits[:2].detach(), dim=1), reduction="sum")
    assert float(out.metrics["loss_reg"]) == pytest.approx(float(kl_rows) / 4, abs=1e-5)


def test_oneoff_epoch_is_clamped_to_the_run():
    assert create_method("uiat_oneoff", ctx(epochs=1)).targets.oneoff_epoch_index == 0
    assert create_method("uiat_oneoff", ctx(epochs=100)).targets.oneoff_epoch_index == 80
    assert create_method("uiat_oneoff", ctx(epochs=10), oneoff_epoch=1.0).targets.oneoff_epoch_index == 9


# --------------------------------------------------------------------------- passes
def test_forward_and_backward_counts(model):
    """The pass table of the module docstring (K = 3 attack steps, n = 2 inverse steps).

    Backward passes are counted with a hook on every forward's logits: it fires once per
    backward that goes through that forward (attack / inverse steps and the parameter
    backward of the loss, which runs through the training forward only).
    """
    K, n = 3, 2
    batch = make_batch()
    cases = [  # name, params, epoch (of 4), forwards, backwards incl. the parameter backward
        ("pgd_at", {}, 0, K + 1, K + 1),
        ("iat", {"steps_inv": n}, 0, K + n + 4, K + n + 1),
        ("iat", {"steps_inv": n, "adv_features": "training_forward"}, 0, K + n + 3, K + n + 1),
        ("iat", {"steps_inv": n, "beta": 0.0}, 0, K + n + 2, K + n + 1),
        ("uiat", {}, 0, K + 5, K + 2),
        ("uiat", {"feature_reg": False}, 0, K + 3, K + 2),
        ("uiat", {"universal": False, "steps_inv": n}, 0, K + n + 4, K + n + 1),
        ("uiat", {"detach_target": False}, 0, K + 5, K + 3),  # the loss also backs through f(x~)
        ("uiat_oneoff", {}, 0, K + 2, K + 1),  # before T' (epochs=4 -> T' = 3)
        ("uiat_oneoff", {}, 3, K + 5, K + 2),
        ("uiat_oneoff", {"oneoff_epoch": 0.5}, 3, K + 1, K + 1),  # after T' = 2
        ("pgd_at+uiat", {}, 0, K + 1 + 1, K + 1),
        ("pgd_at+uiat", {}, 3, K + 1 + 2, K + 1 + 1),
        ("pgd_at+uiat", {"oneoff": False}, 0, K + 1 + 2, K + 1 + 1),
    ]
    backwards = []
    original = model.forward

    def counting_forward(x, return_features=False):
        out = original(x, return_features=return_features)
        logits = out[0] if return_features else out
        if logits.requires_grad:
            logits.register_hook(lambda g: backwards.append(1))
        return out

    model.forward = counting_forward
    for name, kw, epoch, fwd, bwd in cases:
        method = create_method(name, ctx(epochs=4), steps=K, **kw)
        method.set_epoch(epoch)
        model.calls = 0
        backwards.clear()
        out = method(model, batch)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        assert (model.calls, len(backwards)) == (fwd, bwd), (name, kw, epoch)


def test_detach_target_false_trains_through_the_target(model):
    model.train()
    bn = model.body[1]
    for detach, updates in ((True, 1), (False, 2)):
        method = create_method("uiat", ctx(), steps=1, detach_target=detach)
        tracked = int(bn.num_batches_tracked)
        out = method(model, make_batch())
        assert int(bn.num_batches_tracked) - tracked == updates  # x^ (+ x~ as a training forward)
        out.loss.backward()
        assert model.training and all(torch.isfinite(p.grad).all() for p in model.parameters())
        model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------- configs
TABLE6 = {  # row: (UAG, FR, IAM)
    1: (False, False, False),
    2: (True, False, False),
    3: (True, True, False),
    4: (True, False, True),
    5: (True, True, True),
}


@pytest.mark.parametrize("row", sorted(TABLE6))
def test_ablation_configs_build_the_intended_combination(row):
    paths = sorted((ROOT / "configs").rglob(f"uiat_ablation_row{row}_*.yaml"))
    assert len(paths) >= 1
    for path in paths:
        cfg = load_config(path)
        method = create_method(cfg.method.name, ctx(epochs=cfg.train.epochs), cfg.method.params)
        uag, fr, iam = TABLE6[row]
        assert (method.universal, method.params.effective_beta > 0, method.use_momentum) == (uag, fr, iam), path
        assert hasattr(method.targets, "z") == uag and hasattr(method.targets, "momentum_p") == iam
        p = method.params
        assert (p.lam, p.eps_inv, p.gamma, p.momentum_start) == (3.5, 4 / 255, 0.9, 0.75)
        if uag:
            assert p.alpha_universal == 4 / 255
        else:  # instance-wise IAT: 5 steps of 2/255 (Appendix A.2)
            assert (p.alpha_inv, p.steps_inv) == (2 / 255, 5)
        if fr:
            assert p.beta == 1.0
        assert f"robustrain train --config configs/{path.parent.name}/{path.name}" in path.read_text()
        # the switches still train, with the batch-statistics target and with the old eval-mode one
        for params in (p, dataclasses.replace(p, target_bn_mode="eval", adv_features="training_forward")):
            net = TinyNet().train()
            out = create_method(cfg.method.name, ctx(epochs=cfg.train.epochs), params)(net, make_batch())
            out.loss.backward()
            assert torch.isfinite(out.loss) and all(torch.isfinite(q.grad).all() for q in net.parameters()), path


def test_family_configs_name_their_methods():
    for pattern, name in [("iat_*", "iat"), ("uiat_small*", "uiat"), ("uiat_resnet*", "uiat"),
                          ("uiat_oneoff_*", "uiat_oneoff"), ("pgd_at+uiat_*", "pgd_at+uiat")]:
        paths = sorted((ROOT / "configs").rglob(f"{pattern}.yaml"))
        assert paths, pattern
        for path in paths:
            assert load_config(path).method.name == name


def test_defaults_follow_the_paper():
    u, o, i = method_params("uiat")(), method_params("uiat_oneoff")(), method_params("iat")()
    for p in (u, o, i):
        assert (p.lam, p.beta, p.eps_inv, p.init_std_inv) == (3.5, 1.0, 4 / 255, 0.001)
        assert (p.eps, p.alpha, p.steps, p.start, p.bn_mode) == (8 / 255, 2 / 255, 10, "uniform", "eval")
        assert p.detach_target
    assert (i.alpha_inv, i.steps_inv) == (2 / 255, 5)
    assert (u.universal, u.feature_reg, u.momentum, u.alpha_universal, u.gamma, u.momentum_start) == (
        True, True, True, 4 / 255, 0.9, 0.75)
    assert (o.alpha_universal, o.oneoff_epoch) == (4 / 255, 0.8)
    plug = UIATPluginParams()
    assert (plug.lam, plug.oneoff, plug.oneoff_epoch) == (3.5, True, 0.8)
    assert (plug.eps_inv, plug.alpha_universal) == (4 / 255, 4 / 255)


@pytest.mark.parametrize(
    "name,kw,fragment",
    [("uiat", {"gamma": 1.5}, "gamma"), ("uiat", {"momentum_start": -0.1}, "momentum_start"),
     ("uiat_oneoff", {"oneoff_epoch": 2.0}, "oneoff_epoch"), ("iat", {"steps_inv": 0}, "steps"),
     ("iat", {"lam": -1.0}, "lam"), ("uiat", {"bn_mode": "frozen"}, "bn_mode"),
     ("pgd_at+uiat", {"eps": -1.0}, "eps"), ("pgd_at+uiat", {"inv_bn_mode": "x"}, "inv_bn_mode"),
     ("standard+uiat", {"steps": 3}, "steps")],
)
def test_params_validation(name, kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        create_method(name, ctx(), **kw)


# --------------------------------------------------------------------------- state
def _run(method, model, epochs_batches):
    outs = []
    for epoch, batch in epochs_batches:
        method.set_epoch(epoch)
        outs.append(method(model, batch))
    return outs


@pytest.mark.parametrize(
    "name,kw,history,resume_epoch",
    [
        ("uiat", {"steps": 1}, [(2, 0), (3, 0), (3, 1)], 3),  # momentum running
        ("uiat_oneoff", {"steps": 1, "oneoff_epoch": 0.5}, [(1, 0), (2, 0), (2, 1)], 3),  # after T'
        ("pgd_at+uiat", {"steps": 1, "oneoff_epoch": 0.5}, [(2, 0), (2, 1)], 3),
        ("pgd_at+uiat", {"steps": 1, "oneoff": False}, [(3, 0), (3, 1)], 3),
    ],
)
def test_state_round_trip_continues_identically(model, name, kw, history, resume_epoch):
    batches = [make_batch(16, seed=0, offset=0), make_batch(16, seed=1, offset=16)]
    torch.manual_seed(0)
    method = create_method(name, ctx(epochs=4), **kw)
    _run(method, model, [(e, batches[b]) for e, b in history])
    state = {k: v.clone() for k, v in method.state_dict().items()}
    assert any(k in state for k in ("targets.z", "targets.momentum_p", "targets.oneoff_p"))

    torch.manual_seed(123)  # a different z init: the state must overwrite it
    clone = create_method(name, ctx(epochs=4), **kw)
    clone.load_state_dict(state)
    for k, v in method.state_dict().items():
        assert torch.equal(v, clone.state_dict()[k]), k
    outs = []
    for m in (method, clone):
        torch.manual_seed(7)  # same attack randomness
        outs.append(_run(m, model, [(resume_epoch, batches[0]), (resume_epoch, batches[1])]))
    for a, b in zip(*outs):
        torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)
        torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    for k, v in method.state_dict().items():
        assert torch.equal(v, clone.state_dict()[k]), k


# --------------------------------------------------------------------------- plug-in
@pytest.mark.parametrize("base", ["pgd_at", "standard"])
@pytest.mark.parametrize("epoch", [0, 1])  # epochs=2: T' = 1 (before / at T')
def test_plugin_adds_lam_kl_to_the_base_loss(model, base, epoch):
    method = create_method(f"{base}+uiat", ctx(epochs=2), **({"steps": 2} if base == "pgd_at" else {}), lam=2.0)
    assert method.targets.oneoff_epoch_index == 1
    batch = make_batch()
    method.set_epoch(epoch)
    out = method(model, batch)
    # the base loss from the returned logits: CE on the adversarial (pgd_at) / natural (standard) logits
    base_loss = F.cross_entropy(out.logits.detach(), batch.y)
    if epoch == 0:
        target = target_forward(model, batch.x)
    else:
        target = expected_target(model, method, batch)
    kl = kl_by_hand(target, out.logits)
    assert float(out.loss.detach()) == pytest.approx(float(base_loss) + 2.0 * float(kl), abs=1e-5)
    assert float(out.metrics["loss_uiat"]) == pytest.approx(float(kl), abs=1e-6)
    base_keys = {"pgd_at": {"loss_ce", "acc_adv"}, "standard": {"loss_ce", "acc_nat"}}[base]
    assert set(out.metrics) == base_keys | {"loss_uiat", "acc_target", "target_p_max", "target_majority"}
    if base == "standard":
        with torch.no_grad():
            torch.testing.assert_close(out.logits, model(batch.x))


def test_plugin_params_merge_and_reach_the_base():
    method = create_method("pgd_at+uiat", ctx(), steps=5, alpha=1 / 255, lam=2.0, oneoff=False)
    assert isinstance(method.base, METHODS.get("pgd_at"))
    assert (method.base.params.steps, method.base.params.alpha) == (5, 1 / 255)
    assert method.params.lam == 2.0 and not method.params.oneoff
    names = [f.name for f in method_fields("trades+uiat")]
    assert names[:6] == [f.name for f in dataclasses.fields(method_params("trades"))]
    assert names[6:] == [f.name for f in dataclasses.fields(UIATPluginParams)]
    assert {"lam", "oneoff", "inv_bn_mode"} <= set(names)
    cfg = load_config(None, ["method=pgd_at+uiat", "method.steps=5", "method.lam=3"])
    assert cfg.method.name == "pgd_at+uiat"
    assert (cfg.method.base.name, cfg.method.base.params) == ("pgd_at", PGDATParams(steps=5))
    assert cfg.method.plugin == UIATPluginParams(lam=3.0)
    assert cfg.method.params == PluggedParams(PGDATParams(steps=5), UIATPluginParams(lam=3.0))
    assert (cfg.method.params.steps, cfg.method.params.lam) == (5, 3.0)  # reads fall through to the parts
    # the typed config section builds the same method as the flat keywords
    built = create_method(cfg.method.name, ctx(), cfg.method.params)
    assert (built.base.params, built.params) == (PGDATParams(steps=5), UIATPluginParams(lam=3.0))
    assert create_method(cfg.method.name, ctx(), cfg.method).params.lam == 3.0
    method.set_epoch(2)
    assert method.base.epoch == 2


def test_every_base_gets_a_plugin_and_new_bases_plug_in():
    inverse_family = (inv.IAT, inv.UIAT, inv.UIATOneOff)
    assert set(PLUGINS.names()) == {"uiat"}
    for entry in METHODS:
        assert "+" not in entry.name  # the registry holds base methods only
        pluggable = getattr(entry.obj, "uiat_pluggable", True)
        # the inverse family opts out, and so does HAT (its gamma clashes with the plug-in's)
        assert pluggable == (not issubclass(entry.obj, inverse_family) and entry.name != "hat"), entry.name
        assert (f"{entry.name}+uiat" in method_names()) == pluggable, entry.name
    assert method_names() == sorted(method_names())
    with pytest.raises(KeyError, match="unknown method 'hat\\+uiat'"):
        create_method("hat+uiat", ctx())

    @dataclasses.dataclass(frozen=True)
    class FakeParams:
        eps: float = 8 / 255

    class Fake(Method):
        """a future single-step base"""

        Params = FakeParams

        def forward(self, model, batch):
            logits = model(batch.x)
            return LossOutput(F.cross_entropy(logits, batch.y), logits, {})

    reg: Registry = Registry("method")
    reg.add("fake_fgsm", Fake)
    reg.add("uiat", METHODS.get("uiat"))
    assert method_names(reg) == ["fake_fgsm", "fake_fgsm+uiat", "uiat"]
    # composition by constructor: the plug-in takes the base INSTANCE
    method = inv.UIATPlugin(Fake(FakeParams(eps=0.01), ctx()), UIATPluginParams(lam=2.0), ctx())
    assert method.base.params.eps == 0.01 and method.params.lam == 2.0
    with pytest.raises(TypeError, match="Method instance"):
        inv.UIATPlugin(FakeParams(), UIATPluginParams(), ctx())


def test_plugin_param_clash_is_a_config_error(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class ClashParams:
        lam: float = 1.0

    class Clash(Method):
        Params = ClashParams

    reg: Registry = Registry("method")
    reg.add("clash", Clash)
    monkeypatch.setattr("robustrain.methods.registry.METHODS", reg)
    monkeypatch.setattr("robustrain.config.validate.METHODS", reg)
    with pytest.raises(ConfigError, match=r"clash.*\['lam'\].*clash with the uiat plug-in's"):
        config_from_dict({"method": {"name": "clash+uiat"}})
    with pytest.raises(ValueError, match="clash"):
        create_method("clash+uiat", ctx())


def test_create_method_takes_params_a_mapping_or_keywords():
    a = create_method("trades", ctx(), beta=3.0)
    b = create_method("trades", ctx(), {"beta": 3.0})
    c = create_method("trades", ctx(), method_params("trades")(beta=3.0))
    d = create_method("trades", ctx(), method_params("trades")(), beta=3.0)
    assert a.params == b.params == c.params == d.params
    cfg = load_config(None, ["method=trades", "method.beta=3"])
    assert create_method(cfg.method.name, ctx(), cfg.method.params).params == a.params
    with pytest.raises(ValueError, match="got the params of method 'trades'"):
        create_method("mart", ctx(), cfg.method)
    with pytest.raises(TypeError, match="TRADESParams"):
        create_method("mart", ctx(), a.params)
    with pytest.raises(KeyError, match="composite"):
        method_params("pgd_at+uiat")
    plugged = PluggedParams(PGDATParams(steps=3), UIATPluginParams())
    m = create_method("pgd_at+uiat", ctx(), plugged, lam=1.0, steps=2)
    assert (m.base.params.steps, m.params.lam) == (2, 1.0)


@pytest.mark.parametrize(
    "name,kw,epoch",
    [("uiat", {"steps": 1}, 3), ("uiat_oneoff", {"steps": 1, "oneoff_epoch": 0.5}, 2),
     ("pgd_at+uiat", {"steps": 1, "oneoff_epoch": 0.5}, 2), ("pgd_at+uiat", {"steps": 1, "oneoff": False}, 3)],
)
def test_old_flat_state_dict_layout_loads(model, name, kw, epoch):
    """Checkpoints written before the buffers moved into ``method.targets`` (keys ``z``,
    ``momentum_p``, ... at the top; a plug-in's base under ``base.``) load, strict."""
    torch.manual_seed(0)
    method = create_method(name, ctx(epochs=4), **kw)
    method.set_epoch(epoch)
    method(model, make_batch())
    state = method.state_dict()
    old = {k.removeprefix("targets."): v.clone() for k, v in state.items()}
    assert "z" in old and not any(k.startswith("targets.") for k in old)
    torch.manual_seed(1)
    clone = create_method(name, ctx(epochs=4), **kw)
    clone.load_state_dict(old)  # strict
    assert clone.state_dict().keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(v, clone.state_dict()[k]), k
    # nested, as in a parent module's state_dict
    holder, holder_clone = nn.ModuleDict({"m": method}), nn.ModuleDict({"m": create_method(name, ctx(epochs=4), **kw)})
    holder_clone.load_state_dict({f"m.{k}": v for k, v in old.items()})
    for k, v in holder.state_dict().items():
        assert torch.equal(v, holder_clone.state_dict()[k]), k


def test_no_host_syncs_in_the_methods():
    pkg = ROOT / "src" / "robustrain" / "methods" / "inverse"
    src = "\n".join(p.read_text() for p in sorted(pkg.glob("*.py")))
    # doctest lines (>>> and ... continuations) may read values back; the code may not
    code = "\n".join(line for line in src.splitlines() if not line.strip().startswith((">>>", "...")))
    assert not re.search(r"\.(item|cpu|numpy|tolist)\(", code)


# --------------------------------------------------------------------------- issue 19: BN mode of the target
def _perturb_running_stats(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 5 + 0.1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_regulariser_gradient_vanishes_when_target_input_is_the_student_input(model, seed):
    """x~ = x^ and a detached target: KL(p || f(x^)) has zero gradient on the logits whatever
    the running statistics, because the target forward uses the student's batch statistics.
    An eval-mode target (running statistics) does not: the old default pulled the student
    toward a different, sharper prediction (issue 19)."""
    _perturb_running_stats(model, seed)
    x = make_batch().x
    model.train()
    for mode, zero in (("train_frozen_stats", True), ("train", True), ("eval", False)):
        t = inv.InverseTargets(ctx(), eps_inv=4 / 255, init_std_inv=0.001, bn_mode="eval", target_bn_mode=mode,
                           detach_target=True)
        running = [b.clone() for b in model.buffers()]
        target = t.predict(model, x)
        if mode == "train_frozen_stats":  # the target forward leaves the running statistics alone
            assert all(torch.equal(a, b) for a, b in zip(running, model.buffers()))
        logits = model(x).detach().requires_grad_(True)  # the student: train mode, batch statistics
        (grad,) = torch.autograd.grad(uiat_regulariser(logits, target), logits)
        # d KL / d logits = (q - p) / N: zero exactly when the target equals the student
        if zero:
            assert float(grad.abs().max()) < 1e-6, mode
        else:
            assert float(grad.abs().max()) > 1e-3, mode


def test_target_bn_mode_defaults_and_legacy_values():
    for name in ("iat", "uiat", "uiat_oneoff", "pgd_at+uiat"):
        method = create_method(name, ctx())
        assert method.targets.target_bn_mode == "train_frozen_stats" and method.targets.bn_mode == "eval"
    for name in ("uiat", "uiat_oneoff"):
        assert create_method(name, ctx()).params.adv_features == "generation"
    old = create_method("uiat", ctx(), target_bn_mode="eval", adv_features="training_forward")
    assert old.targets.target_bn_mode == "eval"
    with pytest.raises(ValueError, match="target_bn_mode"):
        create_method("uiat", ctx(), target_bn_mode="batch")
    with pytest.raises(ValueError, match="adv_features"):
        create_method("uiat", ctx(), adv_features="nope")


def test_feature_triplet_is_in_the_generation_mode(model, monkeypatch):
    """F(x), F(x^) and F(x~) of L_Inv all come from forwards in the generation bn_mode by default;
    ``adv_features=training_forward`` reuses the train-mode forward's features for F(x^)."""
    modes = []
    real = inv.targets.logits_and_features

    def spy(net, x):
        modes.append(net.training)
        return real(net, x)

    monkeypatch.setattr(inv.targets, "logits_and_features", spy)
    model.train()
    method = create_method("uiat", ctx(), steps=1)
    method(model, make_batch())
    assert modes == [False, False, False]  # F(x), F(x^) (features()), F(x~) (the z step), all eval
    modes.clear()
    method = create_method("uiat", ctx(), steps=1, adv_features="training_forward")
    method(model, make_batch())
    assert modes == [False, False]  # F(x) and F(x~); F(x^) came from the training forward


def test_target_metrics_report_collapse_signs(model):
    method = create_method("uiat", ctx(), steps=1)
    out = method(model, make_batch())
    for key in ("target_p_max", "target_majority"):
        assert 0.0 < float(out.metrics[key]) <= 1.0
    assert float(out.metrics["target_majority"]) >= 1.0 / C
