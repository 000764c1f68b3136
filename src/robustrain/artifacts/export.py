"""Export a trained model as plain weights plus a RobustBench-style model card.

``robustrain export CHECKPOINT OUT.pt`` writes two files, atomically and together (a failure leaves
the previous pair, if any, as it was):

- ``OUT.pt``: the ``state_dict`` of the whole [0,1]-input model, the ``Normalize`` front end
  included (``normalize.mean`` / ``normalize.std``), EMA weights when the run kept them
  (``ema=False``: the raw weights). A plain dict of tensors, so
  ``torch.load(OUT.pt, weights_only=True)`` reads it without robustrain. With
  ``--format safetensors`` (or an ``OUT.safetensors`` name) the same tensors go to
  ``OUT.safetensors``, the format timm and Hugging Face ship in
  (``safetensors.torch.load_file``; :mod:`robustrain.artifacts.weights_file`).
- ``OUT.json``: what is needed to rebuild and judge the model. The fields of RobustBench's
  ``model_info/*.json`` (``name``, ``architecture``, ``dataset``, ``eps`` as ``"8/255"``,
  ``clean_acc`` / ``autoattack_acc`` as percent strings, ``additional_data``,
  ``number_forward_passes``, ``reported``, ``link``, ``authors``, ``venue``, ``footnote``) and
  robustrain's own: ``format``, ``model`` (registry name + parameters), ``num_classes``,
  ``image_shape``, ``mean`` / ``std``, ``normalization`` (``"inside"``: the model takes [0, 1]
  pixels), ``threat_model`` (``Linf``), ``eps_value``, ``method`` (+ ``method_params``),
  ``weights``, ``epoch``, ``evaluations`` (every evaluation of exactly these weights found
  beside the checkpoint: the run's ``summary.json`` and ``<checkpoint>-eval.json`` files of
  ``robustrain eval``), ``weights_format`` (``pt`` | ``safetensors``), ``sha256`` of the weights
  file and the run's ``config``.

:func:`robustrain.artifacts.load_model` (and so ``robustrain eval``) reads the pair back. The card's
``model`` / ``num_classes`` / ``image_shape`` / ``mean`` / ``std`` / ``dataset`` are the fields of the
checkpoint's :class:`~robustrain.artifacts.model_card.ModelSpec`; no Config is needed on either side.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from robustrain.artifacts import FORMAT, ModelSpec, save_checkpoint
    >>> spec = ModelSpec.for_dataset("small_cnn", {"width": 4}, "synthetic")
    >>> config = {"model": {"name": "small_cnn", "width": 4}, "data": {"name": "synthetic"},
    ...           "method": {"name": "pgd_at", "eps": 8 / 255}}
    >>> d = Path(tempfile.mkdtemp())
    >>> save_checkpoint({"format": FORMAT, "config": config, "model_card": spec.to_dict(),
    ...                  "model": spec.build().state_dict(), "ema": None, "epoch": 2}, d / "last.pt")
    >>> pt, card = export_model(d / "last.pt", d / "model.pt")
    >>> state = torch.load(pt, weights_only=True)
    >>> [round(v, 3) for v in state["normalize.mean"].flatten().tolist()], "backbone.head.weight" in state
    ([0.52, 0.5, 0.507], True)
    >>> info = read_export_info(pt)
    >>> info["architecture"], info["dataset"], info["eps"], info["threat_model"]
    ('small_cnn', 'synthetic', '8/255', 'Linf')
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from robustrain import __version__
from robustrain.artifacts.loading import load_model
from robustrain.artifacts.model_card import EXPORT_FORMAT, export_info_path, read_export_info
from robustrain.artifacts.run_dir import RunDir
from robustrain.artifacts.weights_file import WEIGHT_FORMATS, encode_weights, require_safetensors, weights_format
from robustrain.utils.errors import UsageError
from robustrain.utils.fileio import atomic_open, unwritable_reason, write_json
from robustrain.utils.units import format_eps

__all__ = ["EXPORT_FORMAT", "export_info_path", "export_model", "read_export_info"]  # card reading: model_card

def _target(out: Path, fmt: str | None) -> tuple[Path, str]:
    """The weights path and format of an export to ``out`` in format ``fmt`` (None: from the suffix)."""
    if fmt is None:
        return out, weights_format(out)
    if fmt not in WEIGHT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    suffix = WEIGHT_FORMATS[fmt].suffix
    if not out.suffix:
        return out.with_suffix(suffix), fmt
    if weights_format(out) != fmt:  # the loader tells the formats apart by suffix
        raise UsageError(f"export target {out} ends in {out.suffix} but the format is {fmt}; name it "
                         f"{out.with_suffix(suffix)}")
    return out, fmt


def _percent(value: float | None) -> str | None:
    return None if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def _evaluations(checkpoint: Path, epoch: int | None, weights: str) -> list[dict[str, Any]]:
    """Evaluations of exactly these weights (same file, epoch and weight set) beside ``checkpoint``."""
    found = []
    candidates = [RunDir(checkpoint.parent).summary, *sorted(checkpoint.parent.glob(f"{checkpoint.stem}-eval*.json"))]
    for path in candidates:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # absent or unreadable: nothing to report from it
        if not isinstance(data, dict):
            continue
        if path.name == RunDir.SUMMARY:
            same = (data.get("checkpoint") == checkpoint.name and data.get("checkpoint_epoch") == epoch
                    and data.get("weights") == weights)
            acc, n = data.get("final"), data.get("n_test")
        else:
            same = data.get("epoch") == epoch and data.get("weights") == weights
            acc, n = data.get("accuracy"), data.get("n")
        if not same or not isinstance(acc, dict):
            continue
        found.append({
            "source": path.name, "n": n, "dataset": data.get("dataset"), "protocol": data.get("protocol"),
            "eps": data.get("eps"), "norm": data.get("norm", "Linf"), "accuracy": acc,
            "flags": data.get("autoattack_flags", {}),
        })
    return found


def _headline(evaluations: list[dict[str, Any]], dataset: str, key: str, eps: float) -> float | None:
    """``key`` accuracy from the largest evaluation on the training dataset at radius ``eps``."""
    best = None
    for ev in evaluations:
        if key not in ev["accuracy"] or (ev.get("dataset") not in (None, dataset)):
            continue
        if key != "natural" and (ev.get("norm") != "Linf" or not math.isclose(ev.get("eps") or 8 / 255, eps)):
            continue
        if best is None or (ev.get("n") or 0) > (best.get("n") or 0):
            best = ev
    return None if best is None else float(best["accuracy"][key])


def _checked_target(checkpoint: Path, out: Path, fmt: str | None) -> tuple[Path, str, Path]:
    """(weights path, format, card path) of an export, every check done before anything is read."""
    if out.suffix == ".json":
        raise UsageError(f"export target {out} ends in .json, the name of its model card; give a weights file "
                         "such as model.pt")
    out, fmt = _target(out, fmt)
    card_path = export_info_path(out)
    if fmt == "safetensors":
        require_safetensors()
    if out.resolve() == checkpoint.resolve() or card_path.resolve() == checkpoint.resolve():
        raise UsageError(f"export target {out} would overwrite the checkpoint; choose another OUT path")
    for target in (out, card_path):
        reason = unwritable_reason(target)
        if reason is not None:
            raise UsageError(f"cannot export to {target}: {reason}; give a file path in a writable folder, "
                             "e.g. models/model.pt")
    return out, fmt, card_path


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    *,
    ema: bool = True,
    name: str | None = None,
    fmt: str | None = None,
) -> tuple[Path, Path]:
    """Write ``out`` (plain state_dict) and ``out.with_suffix('.json')`` (model card).

    Args:
        checkpoint: a ``best.pt`` / ``last.pt`` written by ``robustrain train``.
        out: weights path, e.g. ``model.pt`` or ``model.safetensors``; its folder is created.
        ema: export the EMA weights when the checkpoint has them (default True).
        name: model name in the card (default ``<method>-<model>-<dataset>``).
        fmt: ``pt`` or ``safetensors`` (default: from ``out``'s suffix, ``pt`` unless it is
            ``.safetensors``); ``out`` without a suffix gets the format's.

    Returns:
        (weights path, model-card path).

    Raises:
        CheckpointError: missing, corrupt or foreign checkpoint.
        UsageError (a ValueError): ``out`` is the checkpoint itself or would overwrite its JSON, is
            a folder, or cannot be written, or its suffix names another format than ``fmt``
            (checked before anything is read or written); the checkpoint is already an export.
        MissingExtraError: ``safetensors`` is asked for but not installed (before any work).
        DiskFullError: the disk filled up while writing (the files there before are intact).
    """
    checkpoint = Path(checkpoint)
    out, fmt, card_path = _checked_target(checkpoint, Path(out), fmt)
    loaded = load_model(checkpoint, "cpu", ema=ema)
    if loaded.config is None:
        raise UsageError(f"{checkpoint} is already an export; copy it and {export_info_path(checkpoint)} instead")
    cfg = loaded.config  # the run's config dict
    state = {k: v.detach().clone().contiguous() for k, v in loaded.model.state_dict().items()}
    method_params = {k: v for k, v in cfg["method"].items() if k != "name"}
    method_name, model_name = cfg["method"]["name"], loaded.spec.model
    eps = float(method_params.get("eps", 8 / 255))
    evaluations = _evaluations(checkpoint, loaded.epoch, loaded.weights)
    clean = _headline(evaluations, loaded.dataset, "natural", eps)
    aa = _headline(evaluations, loaded.dataset, "aa", eps)
    card = {
        # RobustBench model_info fields
        "name": name or f"{method_name}-{model_name}-{loaded.dataset}",
        "link": None,
        "authors": None,
        "venue": None,
        "additional_data": (cfg.get("data", {}).get("extra") or {}).get("path") is not None,
        "number_forward_passes": 1,
        "dataset": loaded.dataset,
        "architecture": model_name,
        "eps": format_eps(eps),
        "clean_acc": _percent(clean),
        "reported": None,
        "autoattack_acc": _percent(aa),
        "footnote": None if aa is not None else "no AutoAttack evaluation of these weights was found",
        # robustrain fields
        "format": EXPORT_FORMAT,
        "robustrain_version": __version__,
        "model": {"name": model_name, "params": dict(loaded.spec.params),
                  **({"versions": dict(loaded.spec.versions)} if loaded.spec.versions else {})},
        "num_classes": loaded.num_classes,
        "image_shape": list(loaded.meta.get("image_shape", ())),
        "mean": list(loaded.mean),
        "std": list(loaded.std),
        "normalization": "inside",
        "threat_model": "Linf",
        "eps_value": eps,
        "method": method_name,
        "method_params": method_params,
        "weights": loaded.weights,
        "epoch": loaded.epoch,
        "source_checkpoint": str(checkpoint),
        "evaluations": evaluations,
        "config": cfg,
    }
    card["weights_format"] = fmt
    data = encode_weights(state, fmt)
    card["sha256"] = hashlib.sha256(data).hexdigest()
    # both files or neither: the weights are on disk (fsynced) before the card replaces the old one,
    # and a failure writing the card (disk full) drops the new weights, leaving the old pair intact
    with atomic_open(out, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        write_json(card, card_path)
    return out, card_path
