"""Tests of robustrain.methods.reweight: GAIRAT's geometry value κ, tanh weights and burn-in;
LRAT's per-pair weights (sum to one, floor ρ) and loss. Tiny tensors only (< a few s)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks import pgd
from robustrain.data.batch import Batch
from robustrain.methods import MethodContext, create_method, method_names
from robustrain.methods.reweight import (
    VULNERABILITIES,
    gair_weights,
    geometry_pgd,
    lrat_loss,
    lrat_weights,
    parse_attack_list,
)

CTX4 = MethodContext(num_classes=3, image_shape=(3, 2, 2), num_train=8, epochs=4)



def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()


def tiny_batch(seed: int = 0, n: int = 8) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, 3, 2, 2, generator=g), torch.randint(0, 3, (n,), generator=g), torch.arange(n))


def test_registered():
    assert {"gairat", "lrat", "gairat+uiat", "lrat+uiat"} <= set(method_names())


# --------------------------------------------------------------------------- GAIRAT
def test_kappa_hand_constructed_linear_model():
    # z = [sum(x) - 1.85, 0]; y = 0; each PGD step lowers sum(x) by 4 * 0.01 (zero start):
    # s_t = 4 x0 - 0.04 t - 1.85, checked at t = 0..K-1 (the start counts, x'_K does not)
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        lin.bias.copy_(torch.tensor([-1.85, 0.0]))
    x = torch.tensor([0.5, 0.3, 0.9]).repeat_interleave(4).view(3, 4)
    y = torch.zeros(3, dtype=torch.long)
    x_adv, kappa = geometry_pgd(lin, x, y, eps=0.1, alpha=0.01, steps=10, start="zero")
    # 0.5: s_t = 0.15 - 0.04 t > 0 for t = 0..3 -> 4; 0.3: s_0 < 0 -> 0; 0.9: s_t >= 1.35 -> 10
    assert kappa.tolist() == [4.0, 0.0, 10.0]
    torch.testing.assert_close(x_adv, x - 0.1)


def test_kappa_matches_reference_loop_and_pgd():
    model = tiny_model()
    b = tiny_batch()
    eps, alpha, steps = 0.3, 0.05, 6
    x_adv, kappa = geometry_pgd(model, b.x, b.y, eps=eps, alpha=alpha, steps=steps, start="zero")
    # reference: the official GA_PGD loop (count before each step)
    ref_kappa = torch.zeros(len(b.y))
    xa = b.x.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        out = model(xa)
        ref_kappa += (out.argmax(1) == b.y).float()
        (g,) = torch.autograd.grad(F.cross_entropy(out, b.y), xa)
        xa = torch.min(torch.max(xa.detach() + alpha * g.sign(), b.x - eps), b.x + eps).clamp(0, 1)
    assert torch.equal(kappa, ref_kappa)
    assert 0 < kappa.sum() < steps * len(b.y)  # a non-trivial case
    torch.testing.assert_close(x_adv, xa)
    torch.testing.assert_close(x_adv, pgd(model, b.x, b.y, eps=eps, alpha=alpha, steps=steps, start="zero"))


def test_gair_weights_hand_computation():
    kappa = torch.tensor([0.0, 5.0, 10.0, 3.0])
    raw = [(1 + math.tanh(-1 + 5 * (1 - 2 * k / 10))) / 2 for k in kappa.tolist()]
    expected = torch.tensor([r * 4 / sum(raw) for r in raw])
    w = gair_weights(kappa, 10, -1.0)
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    assert w[0] > w[3] > w[1] > w[2]  # closer to the boundary (small κ) -> larger weight
    # equal κ -> uniform weights
    torch.testing.assert_close(gair_weights(torch.full((5,), 7.0), 10, -1.0), torch.ones(5))


def test_gairat_burn_in_switch():
    method = create_method("gairat", CTX4, steps=5)
    p = method.params
    assert (p.gair_lambda, p.burn_in, p.steps) == (-1.0, 0.5, 5)
    model, b = tiny_model(), tiny_batch()
    # official GAIRAT.py L141: (epoch + 1) >= begin_epoch, begin_epoch = floor(0.5 * 4) = 2
    assert method.begin_epoch == 2
    for epoch, reweighted in [(0, False), (1, True), (2, True), (3, True)]:
        method.set_epoch(epoch)
        assert method.reweighting() is reweighted
        torch.manual_seed(1)
        out = method(model, b)
        torch.manual_seed(1)
        x_adv, kappa = geometry_pgd(model, b.x, b.y, eps=p.eps, alpha=p.alpha, steps=5)
        ce = F.cross_entropy(model(x_adv), b.y, reduction="none")
        w = gair_weights(kappa, 5, -1.0) if reweighted else torch.ones(len(b.y))
        torch.testing.assert_close(out.loss, (w * ce).mean())
    assert not torch.allclose(gair_weights(kappa, 5, -1.0), torch.ones(len(b.y)))  # the switch matters


def test_gairat_params_validation():
    with pytest.raises(ValueError, match="burn_in"):
        create_method("gairat", CTX4, burn_in=1.5)
    with pytest.raises(ValueError, match="gair_lambda"):
        create_method("gairat", CTX4, gair_lambda=float("inf"))
    with pytest.raises(ValueError, match="eps"):
        create_method("gairat", CTX4, eps=-1.0)


# --------------------------------------------------------------------------- LRAT
@pytest.mark.parametrize("rho", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("num_attacks", [1, 2, 3])
def test_lrat_weights_sum_to_one_and_respect_floor(rho, num_attacks):
    g = torch.Generator().manual_seed(num_attacks)
    v = torch.rand(64, num_attacks, generator=g)
    v[:4] = 0.0  # extreme vulnerabilities
    v[4:8] = 1.0
    v[8, 0] = 1.0
    w_nat, w_adv = lrat_weights(v, rho)
    torch.testing.assert_close(w_nat + w_adv.sum(1), torch.ones(64))
    assert (w_nat >= rho - 1e-6).all() and (w_adv >= 0).all()
    torch.testing.assert_close(w_nat[:4], torch.ones(4))  # invulnerable: natural term only
    torch.testing.assert_close(w_nat[4:8], torch.full((4,), max(rho, 0.0)))  # fully vulnerable: the floor
    torch.testing.assert_close(w_adv[4:8], torch.full((4, num_attacks), (1 - rho) / num_attacks))


def test_lrat_weights_hand_values():
    v = torch.tensor([[1.0, 0.0], [0.5, 0.5], [1.0, 0.6], [0.0, 0.0]])
    w_nat, w_adv = lrat_weights(v, 0.2)
    # a = v / 2; S = [.5, .5, .8, 0]; s = min(1, .8 / S) = [1, 1, 1, 1]
    torch.testing.assert_close(w_adv, torch.tensor([[0.5, 0.0], [0.25, 0.25], [0.5, 0.3], [0.0, 0.0]]))
    torch.testing.assert_close(w_nat, torch.tensor([0.5, 0.5, 0.2, 1.0]))
    w_nat, w_adv = lrat_weights(torch.tensor([[1.0, 0.8]]), 0.4)
    # S = 0.9 > 0.6: s = 0.6 / 0.9
    torch.testing.assert_close(w_adv, torch.tensor([[0.5, 0.4]]) * (0.6 / 0.9))
    torch.testing.assert_close(w_nat, torch.tensor([0.4]))
    # monotone in the vulnerability to that attack
    _, w_lo = lrat_weights(torch.tensor([[0.2, 0.5]]), 0.2)
    _, w_hi = lrat_weights(torch.tensor([[0.6, 0.5]]), 0.2)
    assert w_hi[0, 0] > w_lo[0, 0]


def test_lrat_loss_hand_computation():
    ce_nat = torch.tensor([1.0, 2.0])
    ce_adv = torch.tensor([[3.0, 4.0], [5.0, 6.0]])
    w_nat = torch.tensor([0.5, 0.2])
    w_adv = torch.tensor([[0.25, 0.25], [0.4, 0.4]])
    expected = ((0.5 * 1 + 0.25 * 3 + 0.25 * 4) + (0.2 * 2 + 0.4 * 5 + 0.4 * 6)) / 2
    torch.testing.assert_close(lrat_loss(ce_nat, ce_adv, w_nat, w_adv), torch.tensor(expected))


def test_vulnerabilities():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    y = torch.tensor([0, 0])
    p = F.softmax(logits, 1)[:, 0]
    torch.testing.assert_close(VULNERABILITIES["one_minus_py"](logits, y), 1 - p)
    torch.testing.assert_close(VULNERABILITIES["margin"](logits, y), torch.sigmoid(torch.tensor([-2.0, 3.0])))
    torch.testing.assert_close(VULNERABILITIES["error"](logits, y), torch.tensor([0.0, 1.0]))


def test_lrat_method_loss_matches_hand_computation():
    method = create_method("lrat", CTX4, steps=3, rho=0.3)
    assert list(method.attacks) == ["pgd", "cw"]
    model, b = tiny_model(), tiny_batch()
    torch.manual_seed(2)
    out = method(model, b)
    torch.manual_seed(2)
    x_advs = [method.attacks[n](model, b.x, b.y) for n in ("pgd", "cw")]
    with torch.no_grad():
        ce_nat = F.cross_entropy(model(b.x), b.y, reduction="none")
        loss = ce_nat.clone()
        zs = [model(xa) for xa in x_advs]
        v = torch.stack([1 - F.softmax(z, 1).gather(1, b.y[:, None]).squeeze(1) for z in zs], 1)
        a = v / 2
        s = torch.clamp(0.7 / a.sum(1), max=1.0)
        w = s[:, None] * a
        loss = ((1 - w.sum(1)) * ce_nat + sum(w[:, k] * F.cross_entropy(zs[k], b.y, reduction="none") for k in range(2)))
    torch.testing.assert_close(out.loss, loss.mean())
    torch.testing.assert_close(out.logits, zs[0])
    assert set(out.metrics) >= {"acc_adv_pgd", "acc_adv_cw", "w_nat"}
    assert float(out.metrics["w_nat"]) >= 0.3


def test_lrat_params_validation():
    assert parse_attack_list(" pgd , cw ") == ("pgd", "cw")
    assert list(create_method("lrat", CTX4, attacks="cw").attacks) == ["cw"]
    for bad in ("", "pgd,", "pgd,pgd", "fgsm"):
        with pytest.raises(ValueError, match="attacks"):
            create_method("lrat", CTX4, attacks=bad)
    with pytest.raises(ValueError, match="rho"):
        create_method("lrat", CTX4, rho=1.2)
    with pytest.raises(ValueError, match="vulnerability"):
        create_method("lrat", CTX4, vulnerability="entropy")


@pytest.mark.parametrize("epochs, burn_in, first", [(120, 0.5, 59), (100, 0.5, 49), (4, 0.5, 1), (10, 0.7, 6),
                                                    (5, 0.5, 1), (10, 0.0, 0), (10, 1.0, 9)])
def test_gairat_starts_as_the_official_rule(epochs, burn_in, first):
    """Issue 13: reweighting on from the 0-based epoch e with (e + 1) >= begin_epoch (official
    GAIRAT.py: ``--begin_epoch 60`` of 120 -> on from 0-based epoch 59), begin_epoch =
    floor(burn_in * epochs)."""
    ctx = MethodContext(num_classes=3, image_shape=(3, 4, 4), num_train=8, epochs=epochs)
    method = create_method("gairat", ctx, burn_in=burn_in)
    on = []
    for e in range(epochs):
        method.set_epoch(e)
        on.append(method.reweighting())
    assert on == [e >= first for e in range(epochs)]
