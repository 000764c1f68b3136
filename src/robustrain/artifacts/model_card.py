"""``ModelSpec`` and model cards: everything needed to rebuild a model, stored inside every checkpoint and export.

A checkpoint (``"model_card"`` key) and an export's model card both carry one, so a model can
be rebuilt without a :class:`~robustrain.config.Config` or the trainer: registry name and its
resolved parameters, class count, image shape, and the normalisation composed in front of the
backbone. Checkpoints written before model cards existed are rebuilt from their config dict
(:meth:`ModelSpec.from_config_dict`), by the same rule the trainer used.

A card comes from a file, so what it may ask for is bounded before anything is allocated
(:meth:`ModelSpec.check_size`): integer architecture parameters up to
:data:`MAX_ARCH_INT`, then the model is built on PyTorch's ``meta`` device (no memory) and its
parameter count must stay under :data:`MAX_PARAMETERS`.

Example:
    >>> spec = ModelSpec(model="small_cnn", params={"width": 4}, num_classes=10, image_shape=(3, 32, 32),
    ...                  mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), dataset="synthetic")
    >>> ModelSpec.from_dict(spec.to_dict()) == spec
    True
    >>> net = spec.build()
    >>> type(net).__name__, net.normalize.std.flatten().tolist()
    ('NormalizedClassifier', [0.25, 0.25, 0.25])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from robustrain.data import get_dataset_info
from robustrain.models import create_model
from robustrain.models.registry import MAX_PARAMETERS, init_params, model_versions
from robustrain.utils.errors import CheckpointError

__all__ = ["EXPORT_FORMAT", "MAX_ARCH_INT", "MAX_PARAMETERS", "ModelSpec", "export_info_path", "read_export_info"]

EXPORT_FORMAT = "robustrain-export-v1"
#: keys a model card must have for :func:`robustrain.artifacts.load_model` to rebuild the model
REQUIRED_KEYS = ("format", "model", "dataset", "num_classes", "image_shape", "mean", "std")
#: the most parameters (and buffer elements) a model card may ask for: the models' own limit
#: (4 GB of fp32 weights, well above WRN-70-16's 267M)
#: the largest integer architecture parameter (width, depth ...) a card may give: keeps even the
#: ``meta``-device build of :meth:`ModelSpec.check_size` under a few seconds
MAX_ARCH_INT = 512
#: bounds of the other integers of a card: class count, image channels and side
_MAX_CLASSES, _MAX_CHANNELS, _MAX_SIDE = 1_000_000, 1024, 8192


def export_info_path(weights: str | Path) -> Path:
    """The model card beside exported weights: ``OUT.pt`` -> ``OUT.json``."""
    return Path(weights).with_suffix(".json")


def read_export_info(weights: str | Path) -> dict[str, Any]:
    """The model card of exported weights, checked for the keys needed to rebuild the model.

    Raises:
        CheckpointError: the JSON is missing, unreadable, not a robustrain export or
            incomplete (the message names the file and the fix).
    """
    path = export_info_path(weights)
    fix = f"re-create it with `robustrain export CHECKPOINT {Path(weights)}`"
    if not path.is_file():
        raise CheckpointError(f"exported weights {weights} need their model card {path}, which is missing; {fix}")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"model card {path} is not valid JSON ({str(e)[:120]}); {fix}") from None
    if not isinstance(info, dict) or info.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path} is not a robustrain model card (expected format {EXPORT_FORMAT!r}); {fix}")
    missing = [k for k in REQUIRED_KEYS if k not in info]
    model = info.get("model")
    if not missing and not (isinstance(model, dict) and isinstance(model.get("name"), str)):
        missing = ["model.name"]
    if missing:
        raise CheckpointError(f"model card {path} lacks {', '.join(missing)}; {fix}")
    return info


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a [0,1]-input model.

    Attributes:
        model: model registry name (``robustrain list models``).
        params: the model's parameters (``activation``, ``width`` ...); missing ones take the
            registry defaults.
        num_classes: number of outputs.
        image_shape: (C, H, W) of one input image.
        mean, std: per-channel normalisation inside the model (``Normalize``).
        dataset: the dataset registry name the model was trained on.
        versions: the libraries that built the model and their versions, for a model of another
            library (``timm:resnet50`` -> ``{"timm": "1.0.31"}``); empty for robustrain's own.
    """

    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    num_classes: int = 10
    image_shape: tuple[int, int, int] = (3, 32, 32)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    dataset: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "versions", {str(k): str(v) for k, v in dict(self.versions).items()})
        object.__setattr__(self, "image_shape", tuple(int(v) for v in self.image_shape))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "num_classes", int(self.num_classes))

    def __hash__(self) -> int:  # params is a dict: hash what identifies the spec
        return hash((self.model, tuple(sorted(self.params.items())), self.num_classes, self.image_shape))

    def build(self, device: torch.device | str = "cpu", *, initial_weights: bool = True) -> nn.Module:
        """The model with freshly initialised weights, on ``device``.

        ``initial_weights=False`` leaves out the parameters that only choose the initial weights
        (a timm model's ``pretrained`` file): for a model whose saved weights are loaded next, so a
        card never makes robustrain read a file it names.
        """
        skip = set(init_params(self.model)) if not initial_weights else set()
        params = {k: v for k, v in self.params.items() if k not in skip}
        net = create_model(self.model, self.num_classes, mean=self.mean, std=self.std,
                           in_channels=self.image_shape[0], image_size=self.image_shape[1:], **params)
        return net.to(device)

    def check_size(self, max_parameters: int = MAX_PARAMETERS) -> int:
        """Refuse a spec asking for an absurd model before it is built; returns its parameter count.

        Integers (architecture parameters, classes, image shape) are bounded first, then the model
        is built on the ``meta`` device (shapes only, nothing allocated) and its parameters and
        buffers are counted.

        Raises:
            CheckpointError: a value out of range, a model that cannot be built from the spec, or
                more than ``max_parameters`` elements (the message says how many).

        Example:
            >>> ModelSpec("small_cnn", {"width": 4}).check_size()
            6736
            >>> ModelSpec("small_cnn", {"width": 10**6}).check_size()
            Traceback (most recent call last):
            ...
            robustrain.utils.errors.CheckpointError: the model card asks for model small_cnn with width=1000000; integer architecture parameters must be at most 512
        """
        for key, value in self.params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and value != value:
                raise CheckpointError(f"the model card gives model parameter {key}=nan")
            if isinstance(value, int) and not -MAX_ARCH_INT <= value <= MAX_ARCH_INT:
                raise CheckpointError(f"the model card asks for model {self.model} with {key}={value}; integer "
                                      f"architecture parameters must be at most {MAX_ARCH_INT}")
        c, h, w = (self.image_shape + (0, 0, 0))[:3]
        if len(self.image_shape) != 3 or not (0 < c <= _MAX_CHANNELS and 0 < h <= _MAX_SIDE and 0 < w <= _MAX_SIDE):
            raise CheckpointError(f"the model card gives image_shape {list(self.image_shape)}; expected [C, H, W] "
                                  f"with 1..{_MAX_CHANNELS} channels and sides 1..{_MAX_SIDE}")
        if not 0 < self.num_classes <= _MAX_CLASSES:
            raise CheckpointError(f"the model card gives num_classes={self.num_classes}; expected 1..{_MAX_CLASSES}")
        stats = self.mean + self.std
        if not all(v == v and abs(v) != float("inf") for v in stats) or min(self.std, default=1.0) <= 0:
            raise CheckpointError(f"the model card gives mean {list(self.mean)} / std {list(self.std)}; expected "
                                  "finite values and a positive std")
        try:
            with torch.device("meta"):
                net = self.build("meta", initial_weights=False)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            first = (str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)).strip().splitlines()
            raise CheckpointError(f"the model card cannot rebuild model {self.model} "
                                  f"({first[0][:150] if first else type(e).__name__})") from None
        count = sum(t.numel() for t in net.parameters()) + sum(t.numel() for t in net.buffers())
        if count > max_parameters:
            raise CheckpointError(f"the model card asks for model {self.model} with {count:.3g} parameters "
                                  f"(limit {max_parameters:.0e}: about {4 * count / 2**30:.0f} GiB of weights)")
        return count

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON- and ``weights_only``-safe)."""
        d = {"model": self.model, "params": dict(self.params), "num_classes": self.num_classes,
             "image_shape": list(self.image_shape), "mean": list(self.mean), "std": list(self.std),
             "dataset": self.dataset}
        if self.versions:  # only models of another library have them: older cards stay as they were
            d["versions"] = dict(self.versions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict`.

        Raises:
            CheckpointError: a field is missing or malformed.
        """
        try:
            return cls(model=str(d["model"]), params=dict(d.get("params") or {}), num_classes=d["num_classes"],
                       image_shape=tuple(d["image_shape"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                       dataset=str(d.get("dataset", "")), versions=dict(d.get("versions") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"malformed model card ({type(e).__name__}: {str(e)[:100]})") from None

    @classmethod
    def for_dataset(cls, model: str, params: Mapping[str, Any], dataset: str) -> "ModelSpec":
        """The spec of model ``model`` with ``params`` trained on registry dataset ``dataset``
        (its class count, image shape and normalisation)."""
        info = get_dataset_info(dataset)
        return cls(model=model, params=params, num_classes=info.num_classes, image_shape=tuple(info.image_shape),
                   mean=tuple(info.mean), std=tuple(info.std), dataset=dataset, versions=model_versions(model))

    @classmethod
    def from_config_dict(cls, config: Mapping[str, Any]) -> "ModelSpec":
        """The spec a run config (as a dict: ``{"model": {"name": ..., **params}, "data": {"name": ...}}``)
        describes; the fallback for checkpoints written before model cards."""
        try:
            model = dict(config["model"])
            name = model.pop("name")
            dataset = config["data"]["name"]
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"the checkpoint's config names no model or dataset ({e})") from None
        try:
            return cls.for_dataset(name, model, dataset)
        except KeyError as e:
            raise CheckpointError(f"the checkpoint's config: {e.args[0]}") from None
