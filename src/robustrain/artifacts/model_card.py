"""``ModelSpec`` and model cards: everything needed to rebuild a model, stored inside every checkpoint and export.

A checkpoint (``"model_card"`` key) and an export's model card both carry one, so a model can
be rebuilt without a :class:`~robustrain.config.Config` or the trainer: registry name and its
resolved parameters, class count, image shape, and the normalisation composed in front of the
backbone. Checkpoints written before model cards existed are rebuilt from their config dict
(:meth:`ModelSpec.from_config_dict`), by the same rule the trainer used.

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
from robustrain.utils.errors import CheckpointError

__all__ = ["EXPORT_FORMAT", "ModelSpec", "export_info_path", "read_export_info"]

EXPORT_FORMAT = "robustrain-export-v1"
#: keys a model card must have for :func:`robustrain.artifacts.load_model` to rebuild the model
REQUIRED_KEYS = ("format", "model", "dataset", "num_classes", "image_shape", "mean", "std")


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
    """

    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    num_classes: int = 10
    image_shape: tuple[int, int, int] = (3, 32, 32)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    dataset: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "image_shape", tuple(int(v) for v in self.image_shape))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "num_classes", int(self.num_classes))

    def __hash__(self) -> int:  # params is a dict: hash what identifies the spec
        return hash((self.model, tuple(sorted(self.params.items())), self.num_classes, self.image_shape))

    def build(self, device: torch.device | str = "cpu") -> nn.Module:
        """The model with freshly initialised weights, on ``device``."""
        net = create_model(self.model, self.num_classes, mean=self.mean, std=self.std,
                           in_channels=self.image_shape[0], **self.params)
        return net.to(device)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON- and ``weights_only``-safe)."""
        return {"model": self.model, "params": dict(self.params), "num_classes": self.num_classes,
                "image_shape": list(self.image_shape), "mean": list(self.mean), "std": list(self.std),
                "dataset": self.dataset}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict`.

        Raises:
            CheckpointError: a field is missing or malformed.
        """
        try:
            return cls(model=str(d["model"]), params=dict(d.get("params") or {}), num_classes=d["num_classes"],
                       image_shape=tuple(d["image_shape"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                       dataset=str(d.get("dataset", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"malformed model card ({type(e).__name__}: {str(e)[:100]})") from None

    @classmethod
    def for_dataset(cls, model: str, params: Mapping[str, Any], dataset: str) -> "ModelSpec":
        """The spec of model ``model`` with ``params`` trained on registry dataset ``dataset``
        (its class count, image shape and normalisation)."""
        info = get_dataset_info(dataset)
        return cls(model=model, params=params, num_classes=info.num_classes, image_shape=tuple(info.image_shape),
                   mean=tuple(info.mean), std=tuple(info.std), dataset=dataset)

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
