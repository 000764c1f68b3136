"""Loading a trained model for evaluation and analysis.

One entry point, :func:`load_model`, turns a file written by robustrain into a ready
[0,1]-input model in eval mode plus the facts an evaluation needs (dataset, class count,
normalisation, which weights were used). Training checkpoints (``best.pt`` / ``last.pt``)
are read with ``weights_only=True`` through :func:`robustrain.train.checkpoint.load_checkpoint`;
files written by ``robustrain export`` (a plain state_dict ``OUT.pt`` plus its model card
``OUT.json``, see :mod:`robustrain.export`) are rebuilt from the card.
:func:`check_dataset` says whether a loaded model can be evaluated on a given dataset.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from robustrain.config import load_config
    >>> from robustrain.config import config_to_dict
    >>> from robustrain.train.checkpoint import FORMAT, save_checkpoint
    >>> from robustrain.train.trainer import build_model
    >>> cfg = load_config(None, ["data.name=synthetic", "model.name=small_cnn"])
    >>> net = build_model(cfg)
    >>> d = Path(tempfile.mkdtemp())
    >>> save_checkpoint({"format": FORMAT, "config": config_to_dict(cfg), "model": net.state_dict(),
    ...                  "ema": None, "epoch": 3}, d / "last.pt")
    >>> loaded = load_model(d / "last.pt")
    >>> loaded.dataset, loaded.num_classes, loaded.weights, loaded.model.training
    ('synthetic', 10, 'model', False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["LoadedModel", "check_dataset", "load_model"]


@dataclass
class LoadedModel:
    """A model ready for evaluation and what is known about it.

    Attributes:
        model: the [0,1]-input classifier (normalisation inside), in eval mode, on ``device``.
        dataset: dataset registry name it was trained on.
        num_classes: number of output classes.
        mean, std: the per-channel normalisation composed in front of the network.
        weights: ``"ema"`` or ``"model"``.
        epoch: training epoch of the weights (None when unknown).
        config: the run's resolved config (a Config), None for files without one.
        meta: anything else the file carried: ``method``, ``model`` (names), ``source``
            (``checkpoint`` | ``export``), ``image_shape`` (C, H, W) and, for exports, ``card``.
    """

    model: nn.Module
    dataset: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str
    epoch: int | None = None
    config: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_model(path: str | Path, device: torch.device | str = "cpu", *, ema: bool = True) -> LoadedModel:
    """Load a training checkpoint, or weights written by ``robustrain export``, as an
    eval-mode model.

    Args:
        path: a ``best.pt`` / ``last.pt`` written by ``robustrain train``, or an exported
            ``OUT.pt`` with its model card ``OUT.json`` beside it.
        device: where to put the model.
        ema: use the EMA weights when the checkpoint has them (the DESIGN.md protocol); an
            export holds one set of weights (named in its card), so this is ignored there.

    Raises:
        CheckpointError: missing, corrupt or foreign file; exported weights whose model card
            is missing, corrupt or does not match them.
    """
    from robustrain.train.checkpoint import CheckpointError, load_checkpoint

    path = Path(path)
    try:
        ckpt = load_checkpoint(path, map_location=device)
    except CheckpointError:
        state = _plain_state_dict(path, device)
        if state is None:
            raise
        return _load_exported(path, state, device)
    return _load_checkpoint(ckpt, device, ema)


def _load_checkpoint(ckpt: dict[str, Any], device: torch.device | str, ema: bool) -> LoadedModel:
    from robustrain.config import config_from_dict
    from robustrain.data import get_dataset_info
    from robustrain.train.trainer import build_model

    cfg = config_from_dict(ckpt["config"])
    info = get_dataset_info(cfg.data.name)
    model = build_model(cfg, device)
    weights = "ema" if ema and ckpt.get("ema") is not None else "model"
    model.load_state_dict(ckpt[weights])
    model.eval()
    return LoadedModel(
        model=model,
        dataset=cfg.data.name,
        num_classes=info.num_classes,
        mean=tuple(info.mean),
        std=tuple(info.std),
        weights=weights,
        epoch=ckpt.get("epoch"),
        config=cfg,
        meta={"method": cfg.method.name, "model": cfg.model.name, "source": "checkpoint",
              "image_shape": tuple(info.image_shape)},
    )


def _plain_state_dict(path: Path, device: torch.device | str) -> dict[str, torch.Tensor] | None:
    """The file as a flat name -> tensor dict (an export), None when it is something else."""
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # unreadable: the checkpoint loader's message already says so
        return None
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        return obj
    return None


def _load_exported(path: Path, state: dict[str, torch.Tensor], device: torch.device | str) -> LoadedModel:
    from robustrain.export import export_info_path, read_export_info
    from robustrain.models import create_model
    from robustrain.train.checkpoint import CheckpointError

    info = read_export_info(path)
    card = export_info_path(path)
    fix = f"re-export it with `robustrain export CHECKPOINT {path}`"
    try:
        shape = tuple(int(v) for v in info["image_shape"])
        mean = tuple(float(v) for v in info["mean"])
        std = tuple(float(v) for v in info["std"])
        num_classes = int(info["num_classes"])
        model = create_model(info["model"]["name"], num_classes, mean=mean, std=std, in_channels=shape[0],
                             **dict(info["model"].get("params") or {}))
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise CheckpointError(f"model card {card} cannot rebuild the model ({str(e)[:150]}); {fix}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not match its model card {card} ({first[:150]}); {fix}") from None
    # the normalisation lives in the weights: the card must describe those, not something else
    inside = (model.normalize.mean.flatten().tolist(), model.normalize.std.flatten().tolist())
    if not (torch.allclose(torch.tensor(inside[0]), torch.tensor(mean))
            and torch.allclose(torch.tensor(inside[1]), torch.tensor(std))):
        raise CheckpointError(f"model card {card} gives mean/std {mean}/{std} but the weights hold "
                              f"{tuple(inside[0])}/{tuple(inside[1])}; {fix}")
    model.to(device).eval()
    return LoadedModel(
        model=model,
        dataset=str(info["dataset"]),
        num_classes=num_classes,
        mean=mean,
        std=std,
        weights=str(info.get("weights", "model")),
        epoch=info.get("epoch"),
        config=None,
        meta={"method": info.get("method"), "model": info["model"]["name"], "source": "export",
              "image_shape": shape, "card": info},
    )


def check_dataset(loaded: LoadedModel, dataset: str) -> Any:
    """The :class:`~robustrain.data.DatasetInfo` of ``dataset`` if ``loaded`` can be evaluated
    on it, else ValueError with one line naming both.

    The class count and the image shape must match. The normalisation need not: every
    robustrain model (checkpoint or export) carries its own ``Normalize`` front end in its
    weights and takes [0, 1] pixels, so it applies the statistics it was trained with
    whatever dataset the pixels come from; :func:`load_model` already refuses an export
    whose card disagrees with the normalisation inside its weights.

    Example:
        >>> import torch
        >>> from robustrain.models import create_model
        >>> m = LoadedModel(create_model("small_cnn", 10, width=4), "synthetic", 10, (0.0,) * 3, (1.0,) * 3,
        ...                 "model", meta={"image_shape": (3, 32, 32)})
        >>> check_dataset(m, "cifar10").num_classes
        10
        >>> check_dataset(m, "cifar100")
        Traceback (most recent call last):
        ...
        ValueError: the model has 10 classes (trained on synthetic) but cifar100 has 100; evaluate it on a 10-class dataset (--dataset synthetic)
    """
    from robustrain.data import get_dataset_info

    try:
        info = get_dataset_info(dataset)
    except KeyError as e:
        raise ValueError(f"{e.args[0]}") from None
    if info.num_classes != loaded.num_classes:
        raise ValueError(
            f"the model has {loaded.num_classes} classes (trained on {loaded.dataset}) but {dataset} has "
            f"{info.num_classes}; evaluate it on a {loaded.num_classes}-class dataset (--dataset {loaded.dataset})"
        )
    shape = tuple(loaded.meta.get("image_shape") or ())
    if shape and tuple(info.image_shape) != shape:
        raise ValueError(
            f"the model takes {'x'.join(map(str, shape))} images (trained on {loaded.dataset}) but {dataset} has "
            f"{'x'.join(map(str, info.image_shape))}; evaluate it on a dataset of that shape "
            f"(--dataset {loaded.dataset})"
        )
    return info
