"""Tests of robustrain.methods.single_step: the formulas on tiny hand-checked tensors, the
perturbation geometry of FGSM / RS-FGSM / N-FGSM, GradAlign's regulariser, and the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.data.batch import Batch
from robustrain.methods import METHODS, MethodContext, create_method, method_names, method_params
from robustrain.methods.single_step import (
    GRAD_ALIGN_LAMBDA_CIFAR10,
    grad_align_penalty,
    input_gradient,
    n_fgsm,
    n_fgsm_noise,
    n_fgsm_perturb,
)

EPS = 8 / 255
CTX = MethodContext(num_classes=3, image_shape=(3, 4, 4), num_train=16, epochs=2)
NAMES = ("fgsm", "rs_fgsm", "n_fgsm", "grad_align")



def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)
    ).train()


def batch(n: int = 8, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    # include saturated pixels so the box constraint is exercised
    x = torch.rand(n, 3, 4, 4, generator=g)
    x[0] = 0.0
    x[1] = 1.0
    return Batch(x, torch.randint(0, 3, (n,), generator=g), torch.arange(n))


# --------------------------------------------------------------------------- N-FGSM
def test_n_fgsm_perturb_hand_computed():
    x = torch.tensor([0.5, 0.0, 1.0, 0.5])
    eta = torch.tensor([0.1, -0.1, 0.05, -0.2])
    grad = torch.tensor([1.0, -1.0, 1.0, 0.0])
    out = n_fgsm_perturb(x, eta, grad, alpha=0.2)
    # 0.5+0.1+0.2; clamp(0-0.1)=0 then -0.2 -> 0; clamp(1.05)=1 then +0.2 -> 1; sign(0)=0
    torch.testing.assert_close(out, torch.tensor([0.8, 0.0, 1.0, 0.3]))


def test_n_fgsm_noise_range_is_2eps():
    x = torch.zeros(20000)
    eta = n_fgsm_noise(x, EPS, k=2.0, generator=torch.Generator().manual_seed(0))
    assert eta.abs().max() <= 2 * EPS
    assert eta.abs().max() > 1.9 * EPS  # uses the whole range, not U(-eps, eps)
    assert abs(float(eta.mean())) < 0.05 * EPS


def test_n_fgsm_leaves_ball_but_never_the_box():
    model, b = tiny_model(), batch(16)
    x_adv = n_fgsm(model, b.x, b.y, eps=EPS, alpha=EPS, k=2.0, generator=torch.Generator().manual_seed(1))
    dist = (x_adv - b.x).abs().amax()
    assert dist > EPS + 1e-4  # not projected onto the eps ball
    assert dist <= 3 * EPS + 1e-6  # |eta| + alpha
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad and model.training


# --------------------------------------------------------------------------- RS-FGSM / FGSM
@pytest.mark.parametrize("name", ["fgsm", "rs_fgsm"])
def test_fgsm_and_rs_fgsm_stay_in_ball_and_box(name):
    model, b = tiny_model(), batch(16)
    method = create_method(name, CTX)
    x_adv = method.adversary(model, b.x, b.y)
    assert (x_adv - b.x).abs().amax() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_fgsm_is_one_sign_step_of_eps():
    model, b = tiny_model(), batch()
    model.eval()
    g = input_gradient(model, b.x, b.y)
    expected = (b.x + EPS * g.sign()).clamp(0, 1)
    torch.testing.assert_close(create_method("fgsm", CTX, bn_mode="eval").adversary(model, b.x, b.y), expected)


def test_defaults_follow_official_settings():
    assert method_params("fgsm")().eps == EPS
    rs = method_params("rs_fgsm")()
    assert rs.alpha == pytest.approx(1.25 * rs.eps)
    nf = method_params("n_fgsm")()
    assert (nf.alpha, nf.k) == (EPS, 2.0)
    assert method_params("grad_align")().cos_lambda == 0.2 == GRAD_ALIGN_LAMBDA_CIFAR10[8]
    for name in NAMES:
        # issue 13: the official scripts attack in train mode (single_step module docstring)
        assert method_params(name)().bn_mode == "train"
        assert create_method(name, CTX, bn_mode="eval").params.bn_mode == "eval"  # still an option
    with pytest.raises(ValueError, match="k"):
        create_method("n_fgsm", CTX, k=-1.0)
    with pytest.raises(ValueError, match="cos_lambda"):
        create_method("grad_align", CTX, cos_lambda=-0.1)


# --------------------------------------------------------------------------- GradAlign
def test_grad_align_penalty_zero_for_identical_gradients():
    g = torch.randn(5, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    assert abs(float(grad_align_penalty(g, g))) < 1e-6
    assert abs(float(grad_align_penalty(g, 3.0 * g))) < 1e-6  # scale invariant


def test_grad_align_penalty_hand_built_pair_and_zero_row_dropped():
    g1 = torch.tensor([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    g2 = torch.tensor([[1.0, 1.0], [4.0, 3.0], [2.0, 5.0], [0.0, 0.0]])
    # kept rows: cos = 1/sqrt(2) and 24/25; rows 2 and 3 have a zero gradient -> dropped
    expected = ((1 - 2 ** -0.5) + (1 - 24 / 25)) / 2
    torch.testing.assert_close(grad_align_penalty(g1, g2), torch.tensor(expected))
    # opposite gradients: 1 - (-1) = 2
    torch.testing.assert_close(grad_align_penalty(g1[:1], -g1[:1]), torch.tensor(2.0))


def test_grad_align_penalty_all_dropped_is_zero_and_grad_finite():
    g1 = torch.zeros(3, 4, requires_grad=True)
    g2 = torch.randn(3, 4, requires_grad=True)
    out = grad_align_penalty(g1, g2)
    assert float(out.detach()) == 0.0
    out.backward()
    assert torch.isfinite(g1.grad).all() and torch.isfinite(g2.grad).all()
    g1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]], requires_grad=True)
    g2 = torch.tensor([[1.0, 1.0], [1.0, 0.0]], requires_grad=True)
    grad_align_penalty(g1, g2).backward()
    assert torch.isfinite(g1.grad).all() and torch.isfinite(g2.grad).all()


def test_grad_align_regulariser_reaches_parameters_and_zero_lambda_is_fgsm():
    b = batch()
    model = tiny_model().eval()  # deterministic BN
    torch.manual_seed(0)
    out = create_method("grad_align", CTX, bn_mode="eval")(model, b)
    assert 0 <= float(out.metrics["loss_reg"]) <= 2
    torch.testing.assert_close(out.loss, out.metrics["loss_ce"] + 0.2 * out.metrics["loss_reg"])
    # the penalty alone back-propagates to the weights (double back-prop through g2)
    (reg_grad,) = torch.autograd.grad(out.loss - out.metrics["loss_ce"], [model[0].weight])
    assert reg_grad.abs().sum() > 0
    out0 = create_method("grad_align", CTX, cos_lambda=0.0, bn_mode="eval")(model, b)
    ce_fgsm = F.cross_entropy(model(create_method("fgsm", CTX, bn_mode="eval").adversary(model, b.x, b.y)), b.y)
    torch.testing.assert_close(out0.loss, ce_fgsm)


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", NAMES)
def test_registered_with_uiat_variant(name):
    assert name in METHODS.names() and f"{name}+uiat" in method_names()


@pytest.mark.parametrize("name", [*NAMES, "n_fgsm+uiat"])
def test_one_training_step(name):
    model, b = tiny_model(), batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = create_method(name, CTX)(model, b)
    assert out.logits.shape == (len(b.y), 3) and torch.isfinite(out.loss)
    assert all(v.shape == () and not v.requires_grad for v in out.metrics.values())
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    assert any(not torch.equal(p0, p) for p0, p in zip(before, model.parameters()))


# --------------------------------------------------------------------------- issue 13: train-mode adversary
def test_default_adversary_uses_batch_statistics_and_restores_the_mode():
    """The default (train) adversary is the gradient of the train-mode (batch-statistics)
    function, not the eval-mode one; the model comes back in the mode it was in."""
    for mode in (True, False):
        model, b = tiny_model().train(mode), batch()
        running = model[1].running_mean.clone()
        adv = create_method("fgsm", CTX).adversary(model, b.x, b.y)
        assert model.training is mode
        model.train()
        expected = (b.x + EPS * input_gradient(model, b.x, b.y).sign()).clamp(0, 1)
        torch.testing.assert_close(adv, expected)
        # train mode: the attack forward moved the running statistics (as the official scripts)
        assert not torch.equal(model[1].running_mean, running)
    model = tiny_model().eval()
    adv_eval = create_method("fgsm", CTX, bn_mode="eval").adversary(model, batch().x, batch().y)
    assert not torch.equal(adv_eval, expected)  # the two modes differ on a BN model


@pytest.mark.parametrize("name", ["fgsm", "n_fgsm+uiat"])
def test_guard_runs_with_train_mode_adversary(tmp_path, name):
    """The catastrophic-overfitting guard still measures every epoch (eval mode, fixed training
    batch) when the single-step adversary runs in train mode (the collapse logic: test_train.py)."""
    from robustrain.config import load_config
    from robustrain.train import fit

    cfg = load_config(None, [
        "data.name=synthetic", f"method={name}", "model.width=4", "train.epochs=2", "eval.n=32",
        "eval.final_n=32", "eval.attack=pgd20", "eval.final_attacks=natural", "guard.n=32",
        "train.device=cpu", f"out_dir={tmp_path}", "data.val_n=64",
    ])
    assert cfg.method.params.bn_mode == "train"
    summary = fit(cfg, progress=False, verbose=False)
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        assert 0.0 <= r["guard"]["pgd"] <= 1.0 and r["guard"]["best"] >= r["guard"]["pgd"]
        assert "catastrophic_overfitting" not in r or r["catastrophic_overfitting"] is True
