"""Tests for robustrain.models: the Classifier contract, the factory and every registered net.

Parametrised over ``MODELS.names()`` so a new registry entry is tested automatically; each
model is built with its registry ``smoke_kwargs`` (e.g. WRN depth 10 width 1) to stay fast.
"""

from __future__ import annotations

import copy
import functools
import inspect

import pytest
import torch
from torch import nn

from robustrain.models import (
    MODELS,
    Classifier,
    Normalize,
    NormalizedClassifier,
    create_model,
    logits_and_features,
    model_params,
)

NAMES = MODELS.names()



@functools.lru_cache(maxsize=None)
def _build(name: str, num_classes: int, kwargs: tuple) -> NormalizedClassifier:
    torch.manual_seed(0)
    kw = {**MODELS.entry(name).meta.get("smoke_kwargs", {}), **dict(kwargs)}
    return create_model(name, num_classes, **kw)


def smoke_model(name: str, num_classes: int = 10, **kwargs) -> NormalizedClassifier:
    """Model ``name`` in its cheapest registered configuration, seeded, in eval mode.

    Built once per argument set and deep-copied (cheaper than re-initialising ResNet-18),
    so tests may mutate what they get.
    """
    return copy.deepcopy(_build(name, num_classes, tuple(sorted(kwargs.items())))).eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_expected_models_registered():
    assert {"resnet18", "preact_resnet18", "wrn28_10", "wrn34_10", "small_cnn"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_features(name):
    model = smoke_model(name, num_classes=7)
    assert isinstance(model, NormalizedClassifier)
    assert isinstance(model.backbone, Classifier)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        logits2, feats = model(x, return_features=True)
    assert logits.shape == (2, 7)
    assert feats.shape == (2, model.feature_dim)
    assert model.feature_dim == model.backbone.head.in_features
    # Eval mode is deterministic, so the two calls must agree exactly.
    torch.testing.assert_close(logits2, logits, rtol=0, atol=0)
    # The features are what the head sees.
    torch.testing.assert_close(model.backbone.head(feats), logits)
    lf_logits, lf_feats = logits_and_features(model, x)
    torch.testing.assert_close(lf_logits, logits)
    torch.testing.assert_close(lf_feats, feats)


@pytest.mark.parametrize("name", NAMES)
def test_one_forward_pass_for_features(name):
    model = smoke_model(name)
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d))
    calls = []
    handle = first_conv.register_forward_hook(lambda *_: calls.append(1))
    try:
        model(torch.rand(2, 3, 32, 32), return_features=True)
    finally:
        handle.remove()
    assert len(calls) == 1


@pytest.mark.parametrize("name", NAMES)
def test_input_gradients_flow(name):
    model = smoke_model(name).train()  # attacks may run in train-mode BN too
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    logits, feats = model(x, return_features=True)
    (logits.sum() + feats.sum()).backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_silu_differs_from_relu(name):
    x = torch.rand(2, 3, 32, 32)
    relu, silu = smoke_model(name, activation="relu"), smoke_model(name, activation="silu")
    assert not any(isinstance(m, nn.SiLU) for m in relu.modules())
    assert not any(isinstance(m, nn.ReLU) for m in silu.modules())
    assert any(isinstance(m, nn.SiLU) for m in silu.modules())
    # Same seed, so same weights: only the activation differs.
    with torch.no_grad():
        assert not torch.allclose(relu(x), silu(x))


@pytest.mark.parametrize("name", NAMES)
def test_one_channel_28x28(name):
    model = smoke_model(name, in_channels=1, mean=(0.1307,), std=(0.3081,))
    logits, feats = model(torch.rand(2, 1, 28, 28), return_features=True)
    assert logits.shape == (2, 10) and feats.shape == (2, model.feature_dim)


@pytest.mark.parametrize("name", NAMES)
def test_small_and_non_square_inputs(name):
    model = smoke_model(name)
    assert model(torch.rand(2, 3, 16, 24)).shape == (2, 10)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    a, b = smoke_model(name), smoke_model(name)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("name", NAMES)
def test_factory_follows_registry_contract(name):
    params = inspect.signature(MODELS.get(name)).parameters
    for common in ("num_classes", "in_channels", "activation"):
        assert common in params
    assert set(MODELS.entry(name).meta.get("smoke_kwargs", {})) <= set(model_params(name))


def test_normalize_matches_hand_computation():
    mean, std = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    x = torch.rand(2, 3, 4, 5)
    expected = torch.empty_like(x)
    for c in range(3):
        expected[:, c] = (x[:, c] - mean[c]) / std[c]
    torch.testing.assert_close(Normalize(mean, std)(x), expected)


def test_create_model_applies_normalization():
    mean, std = (0.5, 0.25, 0.125), (0.5, 0.25, 2.0)
    model = create_model("small_cnn", 10, mean=mean, std=std).eval()
    x = torch.rand(2, 3, 32, 32)
    by_hand = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.backbone(by_hand))


def test_without_stats_normalization_is_identity():
    model = create_model("small_cnn", 10)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(model.normalize(x), x)
    # Same structure either way, so checkpoints are interchangeable.
    with_stats = create_model("small_cnn", 10, mean=(0.5,) * 3, std=(0.2,) * 3)
    assert model.state_dict().keys() == with_stats.state_dict().keys()


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError, match="resnet18"):
        create_model("resnet19", 10)


def test_unknown_activation():
    with pytest.raises(ValueError, match="gelu.*relu.*silu|relu.*silu.*gelu"):
        create_model("small_cnn", 10, activation="gelu")


def test_unknown_kwarg_names_bad_and_valid_keys():
    with pytest.raises(ValueError, match=r"deph.*depth.*dropout.*width"):
        create_model("wrn28_10", 10, deph=10)
    with pytest.raises(ValueError, match="dropout"):
        create_model("resnet18", 10, dropout=0.1)


def test_model_params():
    assert model_params("wrn28_10") == {"depth": 28, "width": 10, "dropout": 0.0}
    assert model_params("wrn34_10") == {"depth": 34, "width": 10, "dropout": 0.0}
    assert model_params("resnet18") == {}
    assert model_params("small_cnn") == {"width": 32}
    with pytest.raises(KeyError):
        model_params("nope")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mean": (0.5, 0.5, 0.5)},  # std missing
        {"mean": (0.5,), "std": (0.2,)},  # wrong channel count
        {"mean": (0.5,) * 3, "std": (0.2, 0.0, 0.2)},  # non-positive std
        {"in_channels": 0},
    ],
)
def test_bad_statistics_and_channels(kwargs):
    with pytest.raises(ValueError):
        create_model("small_cnn", 10, **kwargs)


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        create_model("small_cnn", num_classes)


@pytest.mark.parametrize("depth", [12, 3, 29, "28"])
def test_wrn_depth_validated(depth):
    with pytest.raises(ValueError, match="depth"):
        create_model("wrn28_10", 10, depth=depth, width=1)


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"dropout": 1.0}])
def test_wrn_width_and_dropout_validated(kwargs):
    with pytest.raises(ValueError):
        create_model("wrn28_10", 10, **{"depth": 10, **kwargs})


def test_small_cnn_width_validated():
    with pytest.raises(ValueError, match="width"):
        create_model("small_cnn", 10, width=0)


def test_wrn_feature_dim_and_dropout():
    model = create_model("wrn34_10", 10, depth=16, width=2, dropout=0.3)
    assert model.feature_dim == 128
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules())


@pytest.mark.parametrize(
    "name, expected",
    [
        # Reference counts for 10 classes: kuangliu/TRADES ResNet-18; Rice et al.'s
        # PreActResNet-18 (with its final BN); TRADES/MART WRNs without the unused sub_block1.
        ("resnet18", 11_173_962),
        ("preact_resnet18", 11_172_170),
        ("wrn28_10", 36_479_194),
        ("wrn34_10", 46_160_474),
        ("small_cnn", 391_466),  # ours: 32-64-128-256 convs + Linear(256, 10)
    ],
)
def test_parameter_counts(name, expected):
    # Construction only (no forward), well under a second even for WRN-34-10.
    assert n_params(create_model(name, 10)) == expected


def test_feature_dims():
    assert create_model("resnet18", 10).feature_dim == 512
    assert create_model("preact_resnet18", 10).feature_dim == 512
    assert create_model("wrn28_10", 10, depth=10, width=3).feature_dim == 192
    assert create_model("small_cnn", 10, width=8).feature_dim == 64


def test_batchnorm_everywhere():
    for name in NAMES:
        assert any(isinstance(m, nn.BatchNorm2d) for m in smoke_model(name).modules()), name


def test_conv_init_is_kaiming_fan_out():
    torch.manual_seed(0)
    conv = create_model("resnet18", 10).backbone.layer3[0].conv2  # 256 -> 256, 3x3
    expected_std = (2.0 / (256 * 9)) ** 0.5
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wrn28_10", "wrn34_10", "resnet18", "preact_resnet18"])
def test_full_size_forward(name):
    model = create_model(name, 10).eval()
    with torch.no_grad():
        logits, feats = model(torch.rand(2, 3, 32, 32), return_features=True)
    assert logits.shape == (2, 10) and feats.shape == (2, model.feature_dim)
