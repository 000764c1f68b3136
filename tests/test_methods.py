"""Tests of robustrain.methods: the LossOutput contract for every registered method, Params
validation, the factory, forward counts / BatchNorm updates, and saturation safety."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.data.batch import Batch
from robustrain.methods import (
    METHODS,
    PLUGINS,
    LossOutput,
    Method,
    MethodContext,
    create_method,
    method_fields,
    method_names,
    method_params,
    split_method_name,
)
from robustrain.models.base import Classifier

NUM_CLASSES = 4
IMAGE = (3, 8, 8)
CTX = MethodContext(num_classes=NUM_CLASSES, image_shape=IMAGE, num_train=64, epochs=2)


class TinyNet(Classifier):
    """conv + BatchNorm + linear head (BatchNorm makes the attack's bn_mode observable)."""

    def __init__(self, logit_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.head = nn.Linear(32, NUM_CLASSES)
        self.logit_scale = logit_scale
        self.calls = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x, return_features=False):
        self.calls += 1
        logits, feats = super().forward(x, return_features=True)
        logits = logits * self.logit_scale
        return (logits, feats) if return_features else logits



def make_method(name: str, **params) -> Method:
    """``create_method`` plus what a method needs beyond its Params (HAT's helper model)."""
    method = create_method(name, CTX, **params)
    if hasattr(method, "set_helper"):
        torch.manual_seed(1)
        method.set_helper(TinyNet())
    return method


def make_batch(n: int = 16, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, *IMAGE, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g), torch.arange(n))


@pytest.fixture
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().train()


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", method_names())
def test_method_contract(name, model):
    method = make_method(name)
    base, plugin = split_method_name(name)
    if plugin is None:
        assert isinstance(method, Method) and isinstance(method.params, method_params(name))
    else:  # <base>+<plugin>: the plug-in holds the base instance, each with its own Params
        assert isinstance(method, PLUGINS.get(plugin)) and isinstance(method.params, PLUGINS.get(plugin).Params)
        assert isinstance(method.base, METHODS.get(base)) and isinstance(method.base.params, method_params(base))
    batch = make_batch()
    out = method(model, batch)

    assert isinstance(out, LossOutput)
    assert out.loss.shape == () and torch.isfinite(out.loss) and out.loss.requires_grad
    assert out.logits.shape == (len(batch.y), NUM_CLASSES)
    assert out.metrics and all(
        isinstance(v, torch.Tensor) and v.shape == () and not v.requires_grad for v in out.metrics.values()
    )
    assert model.training  # the method never changes the model's mode
    assert all(p.grad is None for p in model.parameters())  # the attack left no gradients
    out.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", method_names())
def test_state_dict_round_trip_and_set_epoch(name, model):
    method = make_method(name)
    method(model, make_batch())
    method.set_epoch(1)
    assert method.epoch == 1
    clone = make_method(name)
    clone.load_state_dict(method.state_dict())
    assert clone.state_dict().keys() == method.state_dict().keys()
    for k, v in method.state_dict().items():
        assert torch.equal(v, clone.state_dict()[k])


@pytest.mark.parametrize("name", method_names())
def test_params_are_typed_frozen_dataclasses(name):
    base, plugin = split_method_name(name)
    parts = [method_params(base)] + ([PLUGINS.get(plugin).Params] if plugin else [])
    for params_cls in parts:
        assert dataclasses.is_dataclass(params_cls)
        hints = typing.get_type_hints(params_cls)
        for f in dataclasses.fields(params_cls):
            assert hints[f.name] in (float, int, str, bool), (name, f.name, hints[f.name])
        params = params_cls()
        if dataclasses.fields(params_cls):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(params, dataclasses.fields(params_cls)[0].name, 0)
    assert [f.name for f in method_fields(name)] == [f.name for p in parts for f in dataclasses.fields(p)]


def test_registry_names():
    assert set(METHODS.names()) >= {"standard", "pgd_at", "trades", "mart"}
    # METHODS holds the bases; the <base>+uiat composites are names only
    assert set(method_names()) >= set(METHODS.names()) | {"pgd_at+uiat", "trades+uiat"}
    assert not any("+" in n for n in METHODS.names())


# --------------------------------------------------------------------------- factory
def test_create_method_validation():
    with pytest.raises(ValueError, match="valid: beta, eps, alpha, steps"):
        create_method("trades", CTX, betta=1.0)
    with pytest.raises(ValueError, match="beta"):
        create_method("mart", CTX, beta=-1.0)
    with pytest.raises(ValueError, match="eps"):
        create_method("pgd_at", CTX, eps=-0.1)
    with pytest.raises(ValueError, match="steps"):
        create_method("pgd_at", CTX, steps=2.0)
    with pytest.raises(ValueError, match="bn_mode"):
        create_method("trades", CTX, bn_mode="frozen")
    with pytest.raises(ValueError, match="none"):
        create_method("standard", CTX, eps=0.1)
    with pytest.raises(KeyError, match="pgd_at"):
        create_method("pgd-at", CTX)
    with pytest.raises(TypeError, match="PGDATParams"):
        METHODS.get("pgd_at")({"eps": 0.1}, CTX)
    assert create_method("mart", CTX, beta=3).params.beta == 3.0


def test_defaults_follow_official_settings():
    assert method_params("trades")().beta == 6.0 and method_params("mart")().beta == 6.0
    for name in ("pgd_at", "trades", "mart"):
        p = method_params(name)()
        assert (p.eps, p.alpha, p.steps, p.bn_mode) == (8 / 255, 2 / 255, 10, "eval")
    assert method_params("trades")().init_std == 0.001 and method_params("mart")().init_std == 0.001


# --------------------------------------------------------------------------- behaviour
# forwards per step: attack steps + extra passes; only the training passes touch BN stats
EXPECTED = {
    "standard": {"calls": 1, "bn_updates": 1},
    "pgd_at": {"calls": 3 + 1, "bn_updates": 1},  # no natural forward: the loss does not need it
    "trades": {"calls": 1 + 3 + 2, "bn_updates": 2},  # KL target, attack, f(x) and f(x')
    "mart": {"calls": 3 + 2, "bn_updates": 2},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_count_and_bn_updates(name, model):
    kwargs = {} if name == "standard" else {"steps": 3}
    method = create_method(name, CTX, **kwargs)
    bn = model.body[1]
    tracked = int(bn.num_batches_tracked)
    model.calls = 0
    method(model, make_batch())
    assert model.calls == EXPECTED[name]["calls"]
    assert int(bn.num_batches_tracked) - tracked == EXPECTED[name]["bn_updates"]


@pytest.mark.parametrize("name", ["pgd_at", "trades", "mart"])
def test_zero_eps_reduces_to_natural_objective(name, model):
    model.eval()  # deterministic forwards: BN uses running statistics
    batch = make_batch()
    out = create_method(name, CTX, eps=0.0)(model, batch)
    with torch.no_grad():
        logits = model(batch.x)
        ce = F.cross_entropy(logits, batch.y)
    torch.testing.assert_close(out.logits, logits)
    if name == "pgd_at":
        torch.testing.assert_close(out.loss, ce)
    else:
        assert abs(float(out.metrics["loss_reg"])) < 1e-5
    if name == "trades":
        torch.testing.assert_close(out.loss, ce, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["trades", "mart"])
def test_regulariser_positive_under_attack(name, model):
    out = create_method(name, CTX, steps=3)(model, make_batch())
    assert float(out.metrics["loss_reg"]) > 0
    assert set(out.metrics) == {"loss_ce", "loss_reg", "acc_nat", "acc_adv"}


@pytest.mark.parametrize("name", method_names())
def test_no_nan_when_probabilities_saturate(name):
    torch.manual_seed(0)
    model = TinyNet(logit_scale=1e4).train()
    out = make_method(name)(model, make_batch())
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
