"""Loading a trained model for evaluation and analysis.

One entry point, :func:`load_model`, turns a file written by robustrain into a ready
[0,1]-input model in eval mode plus the facts an evaluation needs (dataset, class count,
normalisation, which weights were used). Training checkpoints (``best.pt`` / ``last.pt``)
are read with ``weights_only=True`` through :func:`robustrain.train.checkpoint.load_checkpoint`.

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

__all__ = ["LoadedModel", "load_model"]


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
        meta: anything else the file carried (method name, model name, ...).
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
    """Load a training checkpoint as an eval-mode model.

    Args:
        path: a ``best.pt`` / ``last.pt`` written by ``robustrain train``.
        device: where to put the model.
        ema: use the EMA weights when the checkpoint has them (the DESIGN.md protocol).

    Raises:
        CheckpointError: missing, corrupt or foreign file.
    """
    from robustrain.config import config_from_dict
    from robustrain.data import get_dataset_info
    from robustrain.train.checkpoint import load_checkpoint
    from robustrain.train.trainer import build_model

    ckpt = load_checkpoint(path, map_location=device)
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
        meta={"method": cfg.method.name, "model": cfg.model.name},
    )
