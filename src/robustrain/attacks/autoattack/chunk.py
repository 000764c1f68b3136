"""One chunk of an AutoAttack evaluation: build the package's attack, attack, check.

:func:`build_for` builds ``pyautoattack.AutoAttack`` for a configuration (its options applied,
its targeted attacks fitted to the number of classes); :func:`attack_chunk` runs it on one
chunk of images and re-evaluates the adversarial examples here, adding the adapter's own
checks (examples outside the eps-ball or [0, 1], predictions that change when re-evaluated).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustrain.attacks.autoattack.protocol import PARTS, SpecFields

__all__ = ["attack_chunk", "build_for"]


def _build(pyautoattack, model: nn.Module, spec: SpecFields, *, seed: int, device: torch.device,
           num_classes: int) -> tuple[Any, list[str]]:
    aa = pyautoattack.AutoAttack(model, attacks=list(spec.attacks) if spec.version == "custom" else None,
                                 device=device, eps=spec.eps, norm=spec.norm, seed=seed, version=spec.version)
    for key, value in spec.options:
        part, _, attr = key.partition(".")
        target = getattr(aa, PARTS[part])
        if not hasattr(target, attr):
            raise ValueError(f"unknown AutoAttack option {key!r}: {type(target).__name__} has no attribute {attr!r}")
        setattr(target, attr, value)
    notes = []
    # targeted attacks aim at the 9 runner-up classes; with fewer classes the package would
    # index past the logits, so aim at all C - 1 other classes instead (and say so)
    for part, label in ((aa.apgd_targeted, "apgd-t"), (aa.fab, "fab-t")):
        if label in aa.attacks_to_run and part.n_target_classes > num_classes - 1:
            notes.append(f"{label}: {num_classes} classes, so {num_classes - 1} target classes "
                         f"instead of {part.n_target_classes}")
            part.n_target_classes = max(num_classes - 1, 1)
    return aa, notes


def build_for(pyautoattack, model: nn.Module, spec: SpecFields, x: Tensor, *, seed: int,
              device: torch.device) -> tuple[Any, list[str]]:
    """(``pyautoattack.AutoAttack`` for ``spec``, notes on what was adapted), with the number of
    classes read from the model's output on ``x[:1]``.

    Raises:
        ValueError: an option names an attribute the package's attack object lacks.
    """
    with torch.no_grad():
        num_classes = int(model(x[:1].to(device)).shape[1])
    return _build(pyautoattack, model, spec, seed=seed, device=device, num_classes=num_classes)


def _predict(model: nn.Module, x: Tensor, device: torch.device, batch_size: int) -> Tensor:
    """Predicted labels of ``x`` (on the host), with ONE device-to-host copy per call, not one per batch."""
    with torch.no_grad():
        preds = [model(x[i : i + batch_size].to(device)).argmax(1) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.long)


def _perturbation_norm(delta: Tensor, norm: str) -> Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(p=2, dim=1)


def attack_chunk(aa: Any, model: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: float,
                 device: torch.device, batch_size: int) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    """(x_adv, clean-correct flags, robust flags, adapter flags) for one chunk (all on CPU)."""
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    x_adv = x_adv.detach().cpu()  # a no-op: the package returns its examples where x is (the host)
    clean = _predict(model, x, device, batch_size) == y
    again = _predict(model, x_adv, device, batch_size) == y
    notes = []
    size = _perturbation_norm(x_adv - x, norm)
    outside = int((size > eps * (1 + 1e-5) + 1e-7).sum()) + int(((x_adv < 0) | (x_adv > 1)).flatten(1).any(1).sum())
    if outside:
        notes.append(f"{outside} adversarial examples lie outside the {norm} eps-ball or [0, 1]; "
                     "the reported accuracy is not valid for this threat model")
    flipped = int((~again & (x_adv == x).flatten(1).all(1) & clean).sum())
    if flipped:
        notes.append(f"{flipped} unperturbed images changed prediction when re-evaluated: the model is not "
                     "deterministic in eval mode (randomised defence? use aa-rand)")
    return x_adv, clean, clean & again, notes
