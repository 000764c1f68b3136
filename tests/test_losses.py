"""Loss formulas against hand computations in pure Python (math, not torch) on 2x3 logits."""

from __future__ import annotations

import math

import pytest
import torch

from robustrain.attacks import ce_loss
from robustrain.methods.losses import kl_div, kl_from_logits, mart_loss, trades_loss

NAT = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
ADV = [[0.3, 1.5, 2.0], [1.0, 0.0, -0.5]]
Y = [1, 2]


def softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def close(value: torch.Tensor, expected: float, tol: float = 1e-5) -> None:
    assert value.shape == ()
    assert abs(float(value) - expected) <= tol * max(1.0, abs(expected)), (float(value), expected)


def test_cross_entropy_hand():
    expected = [-math.log(softmax(r)[c]) for r, c in zip(NAT, Y)]
    got = ce_loss(t(NAT), torch.tensor(Y))
    assert got.shape == (2,)
    for g, e in zip(got, expected):
        close(g, e)
    # e.g. row 0: log(e^1 + e^2 + e^0.5) - 2
    close(got[0], math.log(math.e + math.e**2 + math.exp(0.5)) - 2.0)


def test_kl_from_logits_hand():
    per = [kl(softmax(n), softmax(a)) for n, a in zip(NAT, ADV)]
    close(kl_from_logits(t(NAT), t(ADV)), sum(per) / 2)  # batchmean
    close(kl_from_logits(t(NAT), t(ADV), reduction="sum"), sum(per))
    none = kl_from_logits(t(NAT), t(ADV), reduction="none")
    assert none.shape == (2,)
    for g, e in zip(none, per):
        close(g, e)
    close(kl_from_logits(t(NAT), t(NAT)), 0.0)
    with pytest.raises(ValueError, match="reduction"):
        kl_from_logits(t(NAT), t(ADV), reduction="mean")


def test_kl_div_zero_probabilities_are_zero_terms():
    p = t([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    log_q = torch.log(t([[0.2, 0.5, 0.3], [0.25, 0.25, 0.5]]))
    # row 0: 1·log(1/0.5); row 1: 2 · 0.5·log(0.5/0.25)
    expected = [math.log(2.0), math.log(2.0)]
    got = kl_div(p, log_q, reduction="none")
    for g, e in zip(got, expected):
        close(g, e)
    assert torch.isfinite(got).all()


def test_trades_loss_hand():
    beta = 6.0
    ce = sum(-math.log(softmax(r)[c]) for r, c in zip(NAT, Y)) / 2
    reg = sum(kl(softmax(n), softmax(a)) for n, a in zip(NAT, ADV)) / 2
    terms = trades_loss(t(NAT), t(ADV), torch.tensor(Y), beta)
    close(terms.ce, ce)
    close(terms.reg, reg)
    close(terms.total, ce + beta * reg)


def test_trades_gradient_flows_through_natural_target():
    nat = t(NAT).requires_grad_(True)
    adv = t(ADV).requires_grad_(True)
    # CE does not depend on f(x'): a nonzero adversarial gradient comes from the KL alone,
    # and the natural gradient differs from CE's alone because the target is not detached
    trades_loss(nat, adv, torch.tensor(Y), 6.0).total.backward()
    nat_ce = t(NAT).requires_grad_(True)
    ce_loss(nat_ce, torch.tensor(Y)).mean().backward()
    assert adv.grad.abs().sum() > 0
    assert not torch.allclose(nat.grad, nat_ce.grad)


def test_mart_loss_hand():
    beta = 6.0
    n = len(Y)
    bce, reg = 0.0, 0.0
    for nat, adv, y in zip(NAT, ADV, Y):
        q = softmax(adv)
        p = softmax(nat)
        y_wrong = max((j for j in range(3) if j != y), key=lambda j: q[j])
        bce += -math.log(q[y]) - math.log(1.0001 - q[y_wrong] + 1e-12)
        kl_i = sum(pj * (math.log(pj) - math.log(qj + 1e-12)) for pj, qj in zip(p, q))
        reg += kl_i * (1.0000001 - p[y])
    bce, reg = bce / n, reg / n
    terms = mart_loss(t(NAT), t(ADV), torch.tensor(Y), beta)
    close(terms.ce, bce)
    close(terms.reg, reg)
    close(terms.total, bce + beta * reg)


def test_mart_wrong_class_is_most_likely_wrong_one():
    # row 0: y=1 is the top class -> y' = runner-up 2; row 1: y=2 is last -> y' = top class 0
    adv = t([[0.0, 5.0, 3.0], [4.0, 1.0, 0.0]])
    y = torch.tensor([1, 2])
    q = [softmax(r) for r in adv.tolist()]
    expected_boost = (-math.log(1.0001 - q[0][2] + 1e-12) - math.log(1.0001 - q[1][0] + 1e-12)) / 2
    ce = (-math.log(q[0][1]) - math.log(q[1][2])) / 2
    close(mart_loss(adv, adv, y, beta=0.0).total, ce + expected_boost)


@pytest.mark.parametrize("scale", [1e3, 1e6])
def test_mart_and_trades_finite_when_saturated(scale):
    nat = (t(NAT) * scale).requires_grad_(True)
    adv = (t([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]) * scale).requires_grad_(True)
    y = torch.tensor([1, 2])
    for loss_fn in (mart_loss, trades_loss):
        terms = loss_fn(nat, adv, y, 6.0)
        assert all(torch.isfinite(v) for v in terms)
        nat.grad = adv.grad = None
        terms.total.backward()
        assert torch.isfinite(nat.grad).all() and torch.isfinite(adv.grad).all()


def test_kl_div_value_matches_official_kldivloss_and_gradient_is_finite():
    # the official code's nn.KLDivLoss(reduction="none")(log_q, p).sum(1): same values
    p = t([[0.0, 0.7, 0.3], [0.2, 0.0, 0.8]])
    log_q = torch.log(t([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]))
    official = torch.nn.KLDivLoss(reduction="none")(log_q, p).sum(1)
    torch.testing.assert_close(kl_div(p, log_q, reduction="none"), official)
    # where the official gradient through a saturated softmax is NaN, ours is finite
    z = t([[0.0, 200.0, 0.0]]).requires_grad_(True)
    kl_div(torch.softmax(z, 1), log_q[:1]).backward()
    assert torch.isfinite(z.grad).all()
