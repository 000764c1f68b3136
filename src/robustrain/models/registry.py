"""The model registry and the one factory, :func:`create_model`, that builds every model.

A registered factory has the signature
``factory(num_classes, *, in_channels=3, activation="relu", **arch_kwargs) -> Classifier``;
its extra keyword-only arguments (with defaults) are the model's tunable parameters, read by
:func:`model_params` so the config layer can reject unknown keys before anything runs.
Registry metadata ``smoke_kwargs`` gives a cheap configuration of the same architecture for
tests and CLI smoke runs (e.g. a depth-10 width-1 WRN), so a new entry is tested for free; a
family's ``check`` (``check(params, prefix)``) validates its parameters without building the
net, so :func:`check_model_params` refuses ``depth=7`` or ``width=0`` when a config is loaded.

A *model family* (:data:`MODEL_FAMILIES`) names architectures of another library as
``<prefix>:<architecture>`` (``timm:resnet50``, :mod:`robustrain.models.timm_backbone`): every
function here accepts such a name. A family factory also takes the architecture and the image
size (``factory(arch, num_classes, *, in_channels, activation, image_size, **params)``); its
``check(arch, params, prefix)`` validates both, ``versions()`` says which library version built
the model (recorded in model cards), and ``init_params`` are the parameters that only choose the
initial weights (``pretrained``), left out when a model is rebuilt to load saved weights.

Example:
    >>> import torch
    >>> from robustrain.models import create_model
    >>> model = create_model("small_cnn", 10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    >>> logits, feats = model(torch.rand(2, 3, 32, 32), return_features=True)
    >>> tuple(logits.shape), tuple(feats.shape)
    ((2, 10), (2, 256))
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from robustrain.utils.checks import check_int, short_repr
from robustrain.utils.registry import Registry
from .activations import ACTIVATIONS, check_activation
from .base import Classifier, Normalize, NormalizedClassifier

__all__ = [
    "MAX_PARAMETERS",
    "MODELS",
    "MODEL_FAMILIES",
    "ModelFamily",
    "check_model_params",
    "check_size",
    "create_model",
    "model_params",
    "register_model",
    "register_model_family",
    "COMMON_PARAMS",
    "init_params",
    "model_versions",
]

#: the most parameters a model may have: 4 GB of fp32 weights, well above WRN-70-16 (267M)
MAX_PARAMETERS = 10**9

ModelFactory = Callable[..., Classifier]

MODELS: Registry[ModelFactory] = Registry("model")

# Arguments every factory takes; create_model owns them, so model_params leaves them out.
COMMON_PARAMS: tuple[str, ...] = ("num_classes", "in_channels", "activation")
# what create_model also gives a family factory
_FAMILY_ARGS: tuple[str, ...] = ("arch", "image_size")


@dataclass(frozen=True)
class ModelFamily:
    """Architectures of another library, named ``<prefix>:<architecture>`` (see the module docstring)."""

    factory: ModelFactory
    check: Callable[[str, dict[str, Any], str], None]
    versions: Callable[[], dict[str, str]] = dict
    init_params: tuple[str, ...] = ()


#: model families by prefix (``timm``)
MODEL_FAMILIES: Registry[ModelFamily] = Registry("model family")


def register_model_family(prefix: str, family: ModelFamily, *, help: str) -> None:
    """Add a family: ``<prefix>:<architecture>`` names then work wherever a model name does."""
    MODEL_FAMILIES.add(prefix, family, help=help)


def _family(name: str) -> tuple[ModelFamily, str] | None:
    """(family, architecture) of a ``<prefix>:<architecture>`` name, None for a plain model name.

    Raises:
        KeyError: an unknown prefix, or no architecture after it.
    """
    if ":" not in name:
        return None
    prefix, arch = name.split(":", 1)
    if not arch:
        raise KeyError(f"model {name!r} names no architecture; write {prefix}:<architecture>, e.g. timm:resnet18")
    return MODEL_FAMILIES.get(prefix), arch


def _factory(name: str) -> ModelFactory:
    found = _family(name)
    return MODELS.get(name) if found is None else found[0].factory


def init_params(name: str) -> tuple[str, ...]:
    """Parameters of model ``name`` that only choose its initial weights (a family's ``pretrained``)."""
    found = _family(name)
    return () if found is None else found[0].init_params


def model_versions(name: str) -> dict[str, str]:
    """The library versions that build model ``name`` (``{"timm": "1.0.31"}``), empty for robustrain's own."""
    found = _family(name)
    return {} if found is None else dict(found[0].versions())


def register_model(
    name: str, *, help: str = "", smoke_kwargs: dict[str, Any] | None = None,
    check: Callable[[dict[str, Any], str], None] | None = None,
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator adding a factory to :data:`MODELS` after checking it follows the contract.

    Args:
        name: registry name used in configs and on the command line.
        help: one-line description for ``robustrain list`` (defaults to the docstring's first line).
        smoke_kwargs: architecture kwargs giving a tiny, fast variant for tests.
        check: ``check(params, prefix)`` raising ``ValueError`` for invalid architecture
            parameters (all of them given, defaults filled in), each message starting with
            ``prefix + name`` (``model.depth``); cheap, nothing is built.

    Raises:
        TypeError: the factory lacks ``num_classes``, ``in_channels`` or ``activation``, or has
            an architecture parameter without a default (configs could not omit it).
    """

    def deco(factory: ModelFactory) -> ModelFactory:
        params = inspect.signature(factory).parameters
        missing = [p for p in COMMON_PARAMS if p not in params]
        if missing:
            raise TypeError(f"model factory {name!r} lacks parameter(s) {missing}")
        no_default = [
            p.name
            for p in params.values()
            if p.name not in COMMON_PARAMS and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        if no_default:
            raise TypeError(f"model factory {name!r}: parameter(s) {no_default} need a default")
        MODELS.add(name, factory, help=help, smoke_kwargs=dict(smoke_kwargs or {}), check=check)
        return factory

    return deco


def model_params(name: str) -> dict[str, Any]:
    """Architecture parameters of model ``name`` mapped to their defaults.

    ``num_classes``, ``in_channels`` and ``activation`` (taken by every model) and
    ``mean``/``std`` (owned by :func:`create_model`) are not included.

    Raises:
        KeyError: ``name`` is not registered (the message lists the known names).

    Example:
        >>> model_params("wrn34_10")
        {'depth': 34, 'width': 10, 'dropout': 0.0}
    """
    params = inspect.signature(_factory(name)).parameters
    return {
        p.name: p.default
        for p in params.values()
        if p.name not in COMMON_PARAMS + _FAMILY_ARGS and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def check_model_params(name: str, params: dict[str, Any], *, prefix: str = "") -> None:
    """Validate model ``name``'s parameters as a config gives them, without building it.

    Checks the keys, ``activation`` and the family's own rules (registry ``check``: WRN depth
    6n+4, positive widths, at most :data:`MAX_PARAMETERS` parameters).

    Args:
        name: registered model.
        params: ``activation`` and architecture parameters (missing ones take their defaults).
        prefix: prepended to parameter names in messages (``"model."`` in a config).

    Raises:
        KeyError: unknown model.
        ValueError: unknown parameter or invalid value; the message names ``prefix + key``,
            the allowed values and the value given.

    Example:
        >>> check_model_params("wrn28_10", {"depth": 7}, prefix="model.")
        Traceback (most recent call last):
        ...
        ValueError: model.depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 34, 40, ...) for a Wide ResNet, got 7; e.g. model.depth=28
    """
    found = _family(name)
    entry = MODELS.entry(name) if found is None else None
    valid = model_params(name)
    unknown = sorted(set(params) - set(valid) - {"activation"})
    if unknown:
        raise ValueError(f"unknown parameter {(prefix + str(unknown[0]))[:80]} for model {name!r}; valid: "
                         f"{', '.join(['activation', *sorted(valid)])}")
    activation = params.get("activation", "relu")
    try:
        check_activation(activation)
    except ValueError:
        raise ValueError(f"{prefix}activation must be one of {', '.join(sorted(ACTIVATIONS))}, "
                         f"got {short_repr(activation)}") from None
    resolved = {**valid, **{k: v for k, v in params.items() if k != "activation"}}
    if found is not None:
        if activation != "relu":  # "relu" is the default every model section carries
            raise ValueError(f"{prefix}activation does not apply to {name} (a {name.split(':')[0]} model keeps its "
                             f"own activations); leave {prefix}activation out")
        found[0].check(found[1], resolved, prefix)
        return
    check = entry.meta.get("check")
    if check is not None:
        check(resolved, prefix)


def check_size(key: str, estimate: float, what: str) -> None:
    """Refuse a model of more than :data:`MAX_PARAMETERS` (estimated) parameters."""
    if estimate > MAX_PARAMETERS:
        raise ValueError(f"{key}: {what} gives about {estimate:.2g} parameters; at most {MAX_PARAMETERS:.0e} "
                         f"(4 GB of fp32 weights) are allowed: lower {key}")


def _check_stats(
    label: str, values: Sequence[float] | None, in_channels: int, default: float
) -> tuple[float, ...]:
    if values is None:
        return (default,) * in_channels
    values = tuple(float(v) for v in values)
    if len(values) != in_channels:
        raise ValueError(f"{label} has {len(values)} values but in_channels={in_channels}")
    return values


def create_model(
    name: str,
    num_classes: int,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    in_channels: int = 3,
    activation: str = "relu",
    image_size: Sequence[int] | None = None,
    **kwargs: Any,
) -> NormalizedClassifier:
    """Build registered model ``name`` taking pixels in [0, 1].

    The result is always ``NormalizedClassifier(Normalize(mean, std), backbone)``. Without
    mean/std the normalisation is the identity (mean 0, std 1): every model then has the same
    structure and state_dict keys (``normalize.*``, ``backbone.*``), so checkpoints, EMA copies
    and feature hooks never depend on whether a dataset had statistics.

    Args:
        name: a name in :data:`MODELS` (``resnet18``, ``preact_resnet18``, ``wrn28_10``,
            ``wrn34_10``, ``small_cnn``, ...).
        num_classes: number of output logits.
        mean: per-channel dataset mean (length ``in_channels``); give both mean and std or neither.
        std: per-channel dataset standard deviation, positive.
        in_channels: image channels (1 for MNIST).
        activation: ``relu`` or ``silu``, used for every activation inside the net.
        image_size: (H, W) of the input images; robustrain's own models take any size, a family
            model (``timm:deit_small_patch16_224``) may be built for one.
        **kwargs: architecture parameters, see :func:`model_params` (e.g. ``depth``, ``width``).

    Returns:
        A module mapping (N, in_channels, H, W) in [0, 1] to logits (N, num_classes), or to
        ``(logits, features)`` with ``return_features=True``.

    Raises:
        KeyError: unknown ``name``.
        ValueError: unknown architecture kwarg, bad activation, bad sizes or statistics.

    Example:
        >>> import torch
        >>> model = create_model("wrn28_10", 10, depth=10, width=1)
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    found = _family(name)
    factory = _factory(name)
    valid = model_params(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"model {name!r} got unknown argument(s) {unknown}; its parameters are {sorted(valid)} "
            f"(plus num_classes, in_channels, activation, mean, std)"
        )
    check_int("num_classes", num_classes)
    check_int("in_channels", in_channels)
    check_activation(activation)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    mean_t = _check_stats("mean", mean, in_channels, 0.0)
    std_t = _check_stats("std", std, in_channels, 1.0)

    if found is not None:
        found[0].check(found[1], {**valid, **kwargs}, "")
        size = None if image_size is None else tuple(int(v) for v in image_size)
        backbone = factory(found[1], num_classes, in_channels=in_channels, activation=activation, image_size=size,
                           **kwargs)
    else:
        backbone = factory(num_classes, in_channels=in_channels, activation=activation, **kwargs)
    if not isinstance(backbone, Classifier):
        raise TypeError(f"model factory {name!r} returned {type(backbone).__name__}, not a Classifier")
    return NormalizedClassifier(Normalize(mean_t, std_t), backbone)
