"""Loading a trained model for evaluation and analysis.

One entry point, :func:`load_model`, turns a file written by robustrain into a ready
[0,1]-input model in eval mode plus the facts an evaluation needs (dataset, class count,
normalisation, which weights were used). Training checkpoints (``best.pt`` / ``last.pt``)
are read with ``weights_only=True`` through :func:`robustrain.artifacts.checkpoint.load_checkpoint`
and rebuilt from their :class:`~robustrain.artifacts.model_card.ModelSpec` (``"model_card"``;
checkpoints written before it existed: from their config dict). Files written by
``robustrain export`` (a plain state_dict ``OUT.pt`` or ``OUT.safetensors`` plus its model card ``OUT.json``, see
:mod:`robustrain.artifacts.export`) are rebuilt from the card. Nothing here needs a Config or
the trainer.
:func:`eval_data` says which test data a loaded model is evaluated on (the data section of its
saved config, for streaming datasets too) and :func:`check_dataset` whether it can be evaluated
on a given dataset.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from robustrain.artifacts import FORMAT, ModelSpec, save_checkpoint
    >>> spec = ModelSpec.for_dataset("small_cnn", {"width": 4}, "synthetic")
    >>> config = {"model": {"name": "small_cnn", "width": 4}, "data": {"name": "synthetic"}, "method": {"name": "standard"}}
    >>> d = Path(tempfile.mkdtemp())
    >>> save_checkpoint({"format": FORMAT, "config": config, "model_card": spec.to_dict(),
    ...                  "model": spec.build().state_dict(), "ema": None, "epoch": 3}, d / "last.pt")
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

from robustrain.artifacts.checkpoint import load_checkpoint
from robustrain.artifacts.model_card import ModelSpec, export_info_path, read_export_info
from robustrain.artifacts.weights_file import decode_weights, require_safetensors, weights_format
from robustrain.data import EvalData, eval_data_info
from robustrain.models.registry import model_versions
from robustrain.utils.errors import CheckpointError

__all__ = ["LoadedModel", "check_dataset", "eval_data", "load_model"]


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
        config: the run's resolved config as a plain dict (``config_from_dict`` turns it into a
            Config), None for files without one (exports).
        spec: how the model was built (:class:`~robustrain.artifacts.model_card.ModelSpec`).
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
    config: dict[str, Any] | None = None
    spec: ModelSpec | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_model(path: str | Path, device: torch.device | str = "cpu", *, ema: bool = True) -> LoadedModel:
    """Load a training checkpoint, or weights written by ``robustrain export``, as an
    eval-mode model.

    Args:
        path: a ``best.pt`` / ``last.pt`` written by ``robustrain train``, or an exported
            ``OUT.pt`` / ``OUT.safetensors`` with its model card ``OUT.json`` beside it.
        device: where to put the model.
        ema: use the EMA weights when the checkpoint has them (the DESIGN.md protocol); an
            export holds one set of weights (named in its card), so this is ignored there.

    Raises:
        CheckpointError: missing, corrupt or foreign file; exported weights whose model card
            is missing, corrupt or does not match them.
    """
    path = Path(path)
    if weights_format(path) == "safetensors":  # an export: never a training checkpoint
        return _load_exported(path, _safetensors_state_dict(path), device)
    try:
        ckpt = load_checkpoint(path, map_location=device)
    except CheckpointError:
        state = _plain_state_dict(path, device)
        if state is None:
            raise
        return _load_exported(path, state, device)
    return _load_checkpoint(path, ckpt, device, ema)


def _build_checked(spec: ModelSpec, device: torch.device | str, where: str, fix: str) -> nn.Module:
    """``spec``'s model on ``device`` once :meth:`ModelSpec.check_size` accepts it."""
    try:
        spec.check_size()
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {e}; {fix}") from None
    try:
        return spec.build(device, initial_weights=False)  # the saved weights replace them
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as e:
        first = (str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)).strip().splitlines()
        raise CheckpointError(f"{where} cannot rebuild the model ({first[0][:150] if first else type(e).__name__}); "
                              f"{fix}") from None


def _versions_note(spec: ModelSpec) -> str:
    """`` (built with timm 1.0.31, installed 1.0.9)`` when the library that built the model has
    another version now (its architectures may have changed), else ``""``."""
    now = model_versions(spec.model) if spec.versions else {}
    changed = [f"{k} {v}, installed {now.get(k)}" for k, v in spec.versions.items() if now.get(k) != v]
    return f" (built with {'; '.join(changed)})" if changed else ""


def _load_state(model: nn.Module, state: Any, problem: str, fix: str) -> None:
    """``model.load_state_dict(state)``; a :class:`CheckpointError` saying ``problem`` (which
    names the file) when the weights belong to another model (missing / unexpected keys, other
    shapes) or are no state_dict at all."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{problem} (the weights are a {type(state).__name__}, not a state_dict); {fix}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
        raise CheckpointError(f"{problem} ({detail[:200]}); {fix}") from None


def _load_checkpoint(path: Path, ckpt: dict[str, Any], device: torch.device | str, ema: bool) -> LoadedModel:
    fix = "use a checkpoint written by `robustrain train` for this run (best.pt / last.pt) or retrain"
    config = ckpt["config"]
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} has no config dict; {fix}")
    config = dict(config)
    card = ckpt.get("model_card")
    spec = ModelSpec.from_dict(card) if card is not None else ModelSpec.from_config_dict(config)
    model = _build_checked(spec, device, f"checkpoint {path}", fix)
    weights = "ema" if ema and ckpt.get("ema") is not None else "model"
    _load_state(model, ckpt[weights], f"the {weights} weights in {path} do not fit the model its "
                f"{'model card' if card is not None else 'config'} describes ({spec.model} {spec.params}): "
                f"another model's weights?{_versions_note(spec)}", fix)
    model.eval()
    method = config.get("method") or {}
    return LoadedModel(
        model=model,
        dataset=spec.dataset,
        num_classes=spec.num_classes,
        mean=spec.mean,
        std=spec.std,
        weights=weights,
        epoch=ckpt.get("epoch"),
        config=config,
        spec=spec,
        meta={"method": method.get("name") if isinstance(method, dict) else None, "model": spec.model,
              "source": "checkpoint", "image_shape": spec.image_shape},
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


def _safetensors_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an exported ``.safetensors`` file (on the CPU); a one-line
    :class:`CheckpointError` when it is missing or damaged."""
    fix = f"re-export it with `robustrain export CHECKPOINT {path} --format safetensors`"
    if not path.is_file():
        raise CheckpointError(f"exported weights {path} do not exist; {fix}")
    require_safetensors()  # a missing package is its own one-line error, not "damaged file"
    try:
        state = decode_weights(path.read_bytes(), "safetensors")
    except Exception as e:  # the reader raises its own error types for a truncated or foreign file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise CheckpointError(f"{path} is not a readable .safetensors file ({first}); {fix}") from None
    if not state:
        raise CheckpointError(f"{path} holds no tensors; {fix}")
    return state


def _load_exported(path: Path, state: dict[str, torch.Tensor], device: torch.device | str) -> LoadedModel:
    info = read_export_info(path)
    card = export_info_path(path)
    fix = f"re-export it with `robustrain export CHECKPOINT {path}`"
    try:
        spec = ModelSpec(model=info["model"]["name"], params=dict(info["model"].get("params") or {}),
                         num_classes=info["num_classes"], image_shape=tuple(info["image_shape"]),
                         mean=tuple(info["mean"]), std=tuple(info["std"]), dataset=str(info["dataset"]),
                         versions=dict(info["model"].get("versions") or {}))
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise CheckpointError(f"model card {card} cannot rebuild the model ({str(e)[:150]}); {fix}") from None
    shape, mean, std, num_classes = spec.image_shape, spec.mean, spec.std, spec.num_classes
    model = _build_checked(spec, "cpu", f"model card {card}", fix)
    _load_state(model, state, f"{path} does not match its model card {card}{_versions_note(spec)}", fix)
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
        spec=spec,
        meta={"method": info.get("method"), "model": info["model"]["name"], "source": "export",
              "image_shape": shape, "card": info},
    )


def eval_data(loaded: LoadedModel, dataset: str | None = None, data_root: str | None = None, *,
              download: bool = False) -> EvalData:
    """The test data ``loaded`` is evaluated on: its saved config's data section (for a streaming
    dataset: folder, test split and evaluation view), with ``dataset`` (``--dataset``) and
    ``data_root`` (``--data-root``: the folder moved) applied.

    An export's card keeps the run's config: its evaluation view is used, never its folders
    (paths of the training machine), so a streaming export needs ``data_root``; without a saved
    view the image size is the model's (its card's ``image_shape``).

    Example:
        >>> import torch
        >>> from robustrain.models import create_model
        >>> m = LoadedModel(create_model("small_cnn", 10, width=4), "imagefolder", 10, (0.0,) * 3, (1.0,) * 3,
        ...                 "model", config={"data": {"name": "imagefolder", "root": "/old", "image_size": 32,
        ...                                           "resize": 32}}, meta={"image_shape": (3, 32, 32)})
        >>> d = eval_data(m, data_root="/new")
        >>> d.name, d.root, d.image_size, d.resize
        ('imagefolder', '/new', 32, 32)
    """
    if loaded.config is not None:
        section = loaded.config.get("data") or {}
    else:  # an export: the card's config, without the training machine's folders
        card_config = (loaded.meta.get("card") or {}).get("config") or {}
        section = {k: v for k, v in (card_config.get("data") or {}).items() if k not in ("root", "test_root")}
        section.setdefault("name", loaded.dataset)
    section = {**section, "name": section.get("name") or loaded.dataset}
    return EvalData.from_section(section, name=dataset, root=data_root, image_shape=loaded.meta.get("image_shape"),
                                 download=download)


def check_dataset(loaded: LoadedModel, dataset: str | EvalData) -> Any:
    """The :class:`~robustrain.data.DatasetInfo` of ``dataset`` if ``loaded`` can be evaluated
    on it, else ValueError with one line naming both.

    ``dataset`` is a name (a streaming one is found through the model's saved config,
    :func:`eval_data`) or an :class:`~robustrain.data.EvalData`. The class count and the image
    shape must match. The normalisation need not: every
    robustrain model (checkpoint or export) carries its own ``Normalize`` front end in its
    weights and takes [0, 1] pixels, so it applies the statistics it was trained with
    whatever dataset the pixels come from; :func:`load_model` already refuses an export
    whose card disagrees with the normalisation inside its weights.

    Raises:
        ValueError: an unknown dataset, or another class count or image shape.
        DatasetFileError: a streaming dataset's folder is missing (one line naming ``--data-root``).

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
    data = eval_data(loaded, dataset) if isinstance(dataset, str) else dataset
    dataset = data.name
    try:
        info = eval_data_info(data)
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
