"""Tests of robustrain.attacks: contracts (ball, box, detach, modes, grads), strength, sign
conventions, and equality with a plain reference PGD loop."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks import (
    ATTACKS,
    CW,
    PGD,
    bn_mode,
    create_attack,
    cw_inf,
    fgsm,
    margin_loss,
    neg_margin_loss,
    pgd,
)
from robustrain.attacks.bn import BN_MODES
from robustrain.attacks.objects import attack_defaults
from robustrain.models.base import Classifier

NUM_CLASSES = 4
IMAGE = (3, 8, 8)


class TinyNet(Classifier):
    """conv + BatchNorm + linear head: small, but BatchNorm makes bn_mode observable."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.head = nn.Linear(32, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable data: one random prototype image per class plus Gaussian noise, in [0, 1]."""
    protos = torch.rand(NUM_CLASSES, *IMAGE, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    x = (protos[y] + 0.15 * torch.randn(n, *IMAGE, generator=g)).clamp(0, 1)
    return x, y



@pytest.fixture(scope="module")
def trained() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = synthetic(2048, seed=1)
    for _ in range(150):
        i = torch.randint(0, len(x), (64,))
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


@pytest.fixture
def fresh() -> TinyNet:
    torch.manual_seed(1)
    return TinyNet()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def bn_state(model: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for name, b in model.named_buffers()]


def flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def assert_in_threat_model(x_adv, x, eps, norm):
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps * (1 + 1e-5) + 1e-6


# --------------------------------------------------------------------------- contracts
@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize("model_mode", ["train", "eval"])
def test_attack_contract(name, model_mode, fresh):
    attack = create_attack(name)
    x, y = synthetic(16, seed=3)
    fresh.train(model_mode == "train")
    before_flags, before_bn = flags(fresh), bn_state(fresh)

    x_adv = attack(fresh, x, y)

    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert_in_threat_model(x_adv, x, attack.eps, getattr(attack, "norm", "linf"))
    assert flags(fresh) == before_flags
    assert all(p.grad is None for p in fresh.parameters())
    # default bn_mode is eval: running statistics untouched
    assert all(torch.equal(a, b) for a, b in zip(before_bn, bn_state(fresh)))
    if attack.eps > 0:
        assert not torch.equal(x_adv, x)


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize("mode", BN_MODES)
def test_attack_bn_modes(name, mode, fresh):
    attack = create_attack(name, bn_mode=mode)
    x, y = synthetic(16, seed=4)
    fresh.train()
    before_flags, before_bn = flags(fresh), bn_state(fresh)
    tracking = [m.track_running_stats for m in fresh.modules() if isinstance(m, nn.BatchNorm2d)]

    x_adv = attack(fresh, x, y)

    assert flags(fresh) == before_flags
    assert tracking == [m.track_running_stats for m in fresh.modules() if isinstance(m, nn.BatchNorm2d)]
    unchanged = all(torch.equal(a, b) for a, b in zip(before_bn, bn_state(fresh)))
    assert unchanged == (mode != "train")
    assert_in_threat_model(x_adv, x, attack.eps, getattr(attack, "norm", "linf"))


def test_registry_presets():
    assert set(ATTACKS.names()) >= {"fgsm", "pgd", "pgd20", "cw30", "pgd_l2", "inverse"}
    pgd20 = attack_defaults("pgd20")
    assert pgd20["steps"] == 20 and pgd20["norm"] == "linf" and pgd20["loss"] == "ce"
    assert pgd20["eps"] == 8 / 255 and pgd20["alpha"] == 2 / 255 and pgd20["start"] == "uniform"
    cw30 = create_attack("cw30")
    assert isinstance(cw30, CW) and (cw30.steps, cw30.kappa, cw30.start) == (30, 50.0, "uniform")
    assert create_attack("inverse").descend and not create_attack("pgd").descend
    assert create_attack("pgd_l2").norm == "l2"


# --------------------------------------------------------------------------- bn_mode
def test_bn_mode_restores_mixed_flags_and_on_exception(fresh):
    fresh.train()
    fresh.body[1].eval()  # a frozen BN inside a training model must stay frozen
    fresh.body[1].track_running_stats = True
    before = flags(fresh)
    for mode in BN_MODES:
        with pytest.raises(RuntimeError):
            with bn_mode(fresh, mode):
                raise RuntimeError("boom")
        assert flags(fresh) == before
        assert fresh.body[1].track_running_stats


def test_bn_mode_train_frozen_stats_uses_batch_stats_without_update(fresh):
    x, _ = synthetic(32, seed=5)
    fresh.train()
    before = bn_state(fresh)
    with bn_mode(fresh, "train_frozen_stats"), torch.no_grad():
        frozen_out = fresh(x)
    assert all(torch.equal(a, b) for a, b in zip(before, bn_state(fresh)))
    with torch.no_grad():
        train_out = fresh(x)  # ordinary train mode: same batch statistics, but updates
    torch.testing.assert_close(frozen_out, train_out)
    assert not torch.equal(before[0], fresh.body[1].running_mean)
    fresh.eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), train_out)  # eval uses running stats: differs


def test_bn_mode_unknown():
    with pytest.raises(ValueError, match="bn_mode"):
        with bn_mode(nn.Linear(2, 2), "frozen"):
            pass


# --------------------------------------------------------------------------- strength
def test_pgd_stronger_than_fgsm(trained):
    x, y = synthetic(256, seed=6)
    eps = 16 / 255
    nat = accuracy(trained, x, y)
    acc_fgsm = accuracy(trained, fgsm(trained, x, y, eps=eps), y)
    acc_pgd = accuracy(trained, pgd(trained, x, y, eps=eps, alpha=eps / 8, steps=20), y)
    acc_cw = accuracy(trained, cw_inf(trained, x, y, eps=eps, alpha=eps / 8, steps=20), y)
    assert nat > 0.95
    assert acc_fgsm < nat - 0.2
    assert acc_pgd < acc_fgsm - 0.03
    assert acc_cw < acc_fgsm - 0.03


def test_inverse_lowers_loss(trained):
    x, y = synthetic(256, seed=7)
    x_inv = create_attack("inverse")(trained, x, y)
    with torch.no_grad():
        ce_nat = F.cross_entropy(trained(x), y, reduction="none")
        ce_inv = F.cross_entropy(trained(x_inv), y, reduction="none")
        ce_adv = F.cross_entropy(trained(create_attack("pgd", eps=4 / 255)(trained, x, y)), y, reduction="none")
    assert ce_inv.mean() < 0.5 * ce_nat.mean()
    assert (ce_inv <= ce_nat).float().mean() > 0.95
    assert ce_adv.mean() > ce_nat.mean()  # the same code ascending goes the other way


def test_targeted_reaches_target_more_often(trained):
    x, y = synthetic(128, seed=8)
    target = (y + 1) % NUM_CLASSES
    kw = dict(eps=16 / 255, alpha=2 / 255, steps=20)
    hit = lambda x_: (trained(x_).argmax(1) == target).float().mean().item()  # noqa: E731
    with torch.no_grad():
        hit_nat = hit(x)
    hit_untargeted = hit(pgd(trained, x, y, **kw))
    hit_targeted = hit(pgd(trained, x, target, targeted=True, **kw))
    assert hit_targeted > hit_untargeted + 0.1 and hit_targeted > hit_nat + 0.3


def test_margin_loss_hand_computed():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 5.0, 1.0], [1.0, 2.0, 90.0]])
    y = torch.tensor([0, 0, 0])
    # z_y - max_{i != y} z_i: 3 - 1 = 2; 0 - 5 = -5; 1 - 90 = -89 -> clamped at -50
    assert margin_loss(logits, y).tolist() == [2.0, -5.0, -50.0]
    assert margin_loss(logits, y, kappa=2.0).tolist() == [2.0, -2.0, -2.0]
    assert neg_margin_loss(logits, y).tolist() == [-2.0, 5.0, 50.0]


def test_margin_attack_pushes_true_logit_down(trained):
    x, y = synthetic(128, seed=9)
    with torch.no_grad():
        m_nat = margin_loss(trained(x), y)
    x_adv = create_attack("cw30", eps=8 / 255, steps=10)(trained, x, y)
    with torch.no_grad():
        m_adv = margin_loss(trained(x_adv), y)
    assert (m_adv < m_nat).float().mean() > 0.95
    # targeted on the margin pushes the target's logit UP
    target = (y + 1) % NUM_CLASSES
    with torch.no_grad():
        t_nat = margin_loss(trained(x), target)
    x_t = pgd(trained, x, target, eps=8 / 255, alpha=2 / 255, steps=10, loss="margin", targeted=True)
    with torch.no_grad():
        assert (margin_loss(trained(x_t), target) > t_nat).float().mean() > 0.95


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("start", ["uniform", "zero", "normal"])
def test_zero_eps_returns_x(trained, norm, start):
    x, y = synthetic(8, seed=10)
    x_adv = pgd(trained, x, y, eps=0.0, alpha=0.1, steps=3, norm=norm, start=start)
    assert torch.equal(x_adv, x)


def reference_linf_pgd(model, x, y, eps, alpha, steps, gen):
    """The textbook loop (GAIRAT / TRADES-style), independent of the library's code."""
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps, generator=gen)).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)  # mean: a power-of-two batch keeps signs exact
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * g.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv


def reference_l2_pgd(model, x, y, eps, alpha, steps, gen):
    n = x.shape[0]
    d = torch.randn(x.shape, generator=gen)
    r = torch.rand(n, generator=gen) * eps
    d = d * (r / d.view(n, -1).norm(dim=1)).view(n, 1, 1, 1)
    x_adv = (x + d).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y, reduction="sum"), x_adv)
        x_adv = x_adv.detach() + alpha * g / g.view(n, -1).norm(dim=1).view(n, 1, 1, 1)
        delta = x_adv - x
        scale = (eps / delta.view(n, -1).norm(dim=1)).clamp(max=1).view(n, 1, 1, 1)
        x_adv = (x + delta * scale).clamp(0, 1)
    return x_adv


def test_pgd_matches_reference_loop_linf(trained):
    x, y = synthetic(64, seed=11)
    ours = pgd(trained, x, y, eps=8 / 255, alpha=2 / 255, steps=10, generator=torch.Generator().manual_seed(5))
    ref = reference_linf_pgd(trained, x, y, 8 / 255, 2 / 255, 10, torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_pgd_matches_reference_loop_l2(trained):
    x, y = synthetic(64, seed=12)
    ours = pgd(trained, x, y, eps=0.5, alpha=0.1, steps=10, norm="l2", generator=torch.Generator().manual_seed(6))
    ref = reference_l2_pgd(trained, x, y, 0.5, 0.1, 10, torch.Generator().manual_seed(6))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_step_independent_of_batch_size(trained):
    x, y = synthetic(32, seed=13)
    kw = dict(eps=8 / 255, alpha=2 / 255, steps=5, start="zero")
    torch.testing.assert_close(pgd(trained, x, y, **kw)[:4], pgd(trained, x[:4], y[:4], **kw), atol=1e-6, rtol=0)


def test_global_seed_reproducible_and_generator(trained):
    x, y = synthetic(16, seed=14)
    torch.manual_seed(3)
    a = pgd(trained, x, y, eps=8 / 255, alpha=2 / 255, steps=2)
    torch.manual_seed(3)
    b = pgd(trained, x, y, eps=8 / 255, alpha=2 / 255, steps=2)
    assert torch.equal(a, b)


def test_explicit_start_is_projected(trained):
    x, y = synthetic(8, seed=15)
    start = torch.full_like(x[:1], 1.0)  # broadcast over the batch, far outside the ball
    x_adv = pgd(trained, x, y, eps=4 / 255, alpha=0.0, steps=1, start=start)
    torch.testing.assert_close(x_adv, torch.minimum(x + 4 / 255, torch.ones_like(x)))
    with pytest.raises(ValueError, match="broadcast"):
        pgd(trained, x, y, eps=4 / 255, alpha=0.0, steps=1, start=torch.zeros(3, 1, 1, 1))


def test_normal_start_scale(trained):
    x = torch.full((64, *IMAGE), 0.5)
    y = torch.zeros(64, dtype=torch.long)
    x_adv = pgd(trained, x, y, eps=1.0, alpha=0.0, steps=1, start="normal", init_std=1e-3)
    assert abs((x_adv - x).std().item() - 1e-3) < 1e-4


def test_works_under_no_grad_and_custom_loss(trained):
    x, y = synthetic(8, seed=16)
    with torch.no_grad():
        x_adv = pgd(trained, x, y, eps=8 / 255, alpha=2 / 255, steps=2, loss=lambda z, t: -z.gather(1, t[:, None])[:, 0])
    assert x_adv.shape == x.shape
    with pytest.raises(ValueError, match="per-example"):
        pgd(trained, x, y, eps=8 / 255, alpha=2 / 255, steps=1, loss=lambda z, t: z.sum())


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eps": -0.1}, "eps"),
        ({"alpha": float("nan")}, "alpha"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"norm": "l1"}, "norm"),
        ({"loss": "hinge"}, "loss"),
        ({"start": "gaussian"}, "start"),
        ({"bn_mode": "frozen"}, "bn_mode"),
        ({"clip": (1.0, 0.0)}, "clip"),
    ],
)
def test_pgd_validation(trained, kwargs, match):
    x, y = synthetic(2, seed=17)
    args = {"eps": 8 / 255, "alpha": 2 / 255, "steps": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        pgd(trained, x, y, **args)


def test_config_objects_validate():
    with pytest.raises(ValueError, match="valid: eps, alpha, steps"):
        create_attack("pgd", step=3)
    with pytest.raises(ValueError, match="eps"):
        create_attack("fgsm", eps=-1.0)
    with pytest.raises(ValueError, match="steps"):
        PGD(steps=True)
    with pytest.raises(ValueError, match="kappa"):
        CW(kappa=-1.0)
    with pytest.raises(KeyError, match="pgd20"):
        create_attack("pgd21")
    assert PGD(eps=0).eps == 0.0 and isinstance(PGD(eps=0).eps, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PGD().eps = 0.1  # type: ignore[misc]
