"""Robust accuracy under the evaluation protocol of DESIGN.md.

Evaluation is always fp32 and in eval mode (whatever the training precision), with a fixed
seed for the attacks' random starts, so the same checkpoint gives the same table twice.

Attack names: ``natural`` (clean accuracy), the per-batch attacks of the ``ATTACKS``
registry (``pgd20``, ``cw30``, ``eot-pgd`` and ``eot-pgdSTEPSxSAMPLES`` for randomized defences,
e.g. ``eot-pgd20x16``: every attack is scored by one ordinary forward of the model on its final
x_adv, random for a randomized model) and AutoAttack through the official package: ``aa``
(standard), ``aa-plus``, ``aa-rand`` and custom lists such as ``aa:apgd-ce+apgd-t`` (see
:mod:`robustrain.attacks.autoattack`). ``eps`` and ``norm`` set the threat model: ``eps=None``
keeps each attack's default (8/255 for Linf, 0.5 for L2); ``norm="L2"`` turns the PGD
attacks into L2 PGD (step eps/4) and AutoAttack into its L2 version, and refuses Linf-only
attacks (CW∞, FGSM). Attacks registered for another norm (``pgd_l2`` under Linf) keep their
own radius and are stated as such in the protocol line.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    >>> x = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    >>> y = torch.randint(0, 10, (8,))
    >>> res = evaluate_robustness(net, x, y, ["natural", "pgd20"], batch_size=4, progress=False)
    >>> sorted(res.accuracy), res.n
    (['natural', 'pgd20'], 8)
    >>> print(describe_protocol(build_eval_attacks(["natural", "pgd20", "aa"], eps=4/255)))
    Linf eps=4/255; PGD-20: step 2/255, uniform start, CE; AutoAttack standard (apgd-ce, apgd-t, fab-t, square; official pyautoattack); fp32, eval mode
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from robustrain.artifacts import LoadedModel, load_model
from robustrain.attacks import ATTACKS, CW, EOTPGD, FGSM, PGD, create_attack
from robustrain.attacks.autoattack import (
    AutoAttackResult,
    AutoAttackSpec,
    canonical_norm,
    default_eps,
    parse_autoattack_name,
)
from robustrain.attacks.objects import parse_attack_name
from robustrain.data import to_unit_float
from robustrain.utils import distributed as ddp
from robustrain.utils.runtime import fp32_eval, preserved_rng
from robustrain.utils.units import format_eps

__all__ = [
    "EvalRecord",
    "PROTOCOL",
    "RobustEvaluation",
    "build_eval_attacks",
    "describe_protocol",
    "evaluate_checkpoint",
    "evaluate_robustness",
    "format_table",
]

#: a one-line statement of the default protocol, printed with every table
PROTOCOL = (
    "Linf eps=8/255; PGD-20: step 2/255, uniform start, CE; CW30: 30-step PGD on the "
    "margin loss max(z_y - max_i!=y z_i, -50), step 2/255; fp32, eval mode"
)

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _threat(attack: Any) -> tuple[str, float] | None:
    """(norm, eps) of an attack object, None for clean accuracy or an unknown callable."""
    if attack is None or not dataclasses.is_dataclass(attack) or not hasattr(attack, "eps"):
        return None
    return canonical_norm(getattr(attack, "norm", "linf")), float(attack.eps)


def _build_one(name: str, eps: float | None, norm: str, overrides: Mapping[str, Any]) -> Attack | None:
    if name == "natural":
        return None
    aa = parse_autoattack_name(name, norm=norm, eps=eps)
    if aa is not None:
        return aa
    base, _ = parse_attack_name(name)  # clear KeyError for unknown names
    entry = ATTACKS.entry(base)
    fields = {f.name for f in dataclasses.fields(entry.obj)}
    own_norm = canonical_norm(entry.meta.get("preset", {}).get("norm", "linf"))
    kw = dict(overrides)
    if "norm" not in fields and norm != "Linf":
        raise ValueError(f"{name} is a Linf-only attack; drop it or evaluate with norm Linf")
    if own_norm == norm:
        if eps is not None:
            kw["eps"] = eps
    elif own_norm == "Linf":  # a Linf PGD preset asked for another norm: same steps, step eps/4
        radius = default_eps(norm) if eps is None else eps
        kw.update(norm=norm.lower(), eps=radius, alpha=radius / 4)
    return create_attack(name, **kw)


def build_eval_attacks(
    names: Iterable[str], *, eps: float | None = None, norm: str = "Linf", **overrides: Any
) -> dict[str, Attack | None]:
    """Attacks by name; ``natural`` maps to None (clean accuracy), ``aa...`` to an
    :class:`~robustrain.attacks.autoattack.AutoAttackSpec`.

    Args:
        names: ``natural``, names of the ``ATTACKS`` registry (and ``eot-pgdSTEPSxSAMPLES``), ``aa``, ``aa-plus``,
            ``aa-rand`` or ``aa:ATTACK+ATTACK...``.
        eps: threat-model radius; None keeps each attack's default (8/255 Linf, 0.5 L2).
        norm: ``Linf`` (default) or ``L2`` (see the module docstring).
        overrides: other fields passed to every registry attack (e.g. ``alpha=1/255``).

    Raises:
        KeyError: an unknown attack name (the message lists the known ones).
        ValueError: a malformed AutoAttack name, a Linf-only attack under L2, a bad value.

    Example:
        >>> a = build_eval_attacks(["natural", "pgd20", "aa-plus"], norm="L2")
        >>> a["natural"], a["pgd20"].norm, a["pgd20"].eps, a["aa-plus"].eps
        (None, 'l2', 0.5, 0.5)
    """
    norm = canonical_norm(norm)
    return {name: _build_one(name, eps, norm, overrides) for name in names}


def _describe_one(attack: Any, with_threat: bool) -> str:
    threat = ""
    if with_threat and _threat(attack) is not None:
        n, e = _threat(attack)
        threat = f"{n} eps={format_eps(e)}, "
    if isinstance(attack, AutoAttackSpec):
        return attack.describe() + (f", {threat[:-2]}" if threat else "")
    if isinstance(attack, CW):
        return (f"CW{attack.steps}: {threat}{attack.steps}-step PGD on the margin loss "
                f"max(z_y - max_i!=y z_i, -{attack.kappa:g}), step {format_eps(attack.alpha)}")
    if isinstance(attack, EOTPGD):
        return (f"EOT-PGD-{attack.steps}x{attack.samples}: {threat}step {format_eps(attack.alpha)}, {attack.start} "
                f"start, {attack.loss.upper()}, gradient averaged over {attack.samples} random forwards, "
                "accuracy of one random forward")
    if isinstance(attack, FGSM):
        return f"FGSM: {threat}one signed-gradient step of eps, {attack.loss.upper()}"
    if isinstance(attack, PGD):
        loss = "CE" if attack.loss == "ce" else "CW margin"
        extra = ", targeted" if attack.targeted else ""
        return f"PGD-{attack.steps}: {threat}step {format_eps(attack.alpha)}, {attack.start} start, {loss}{extra}"
    return f"{type(attack).__name__}: {threat}custom attack"


def describe_protocol(attacks: Mapping[str, Attack | None]) -> str:
    """One line stating the evaluation protocol of ``attacks`` (printed with every table).

    The threat model is stated once when every attack shares it (as :data:`PROTOCOL`), else
    per attack; AutoAttack is named with its version and attacks when it is used.

    Example:
        >>> describe_protocol(build_eval_attacks(["natural", "pgd20", "cw30"])) == PROTOCOL
        True
    """
    threats = {t for t in map(_threat, attacks.values()) if t is not None}
    shared = len(threats) == 1
    parts = []
    if shared:
        n, e = next(iter(threats))
        parts.append(f"{n} eps={format_eps(e)}")
    parts += [_describe_one(a, not shared) for a in attacks.values() if a is not None]
    parts.append("fp32, eval mode")
    return "; ".join(parts)


@dataclass
class RobustEvaluation:
    """Everything one evaluation found.

    Attributes:
        accuracy: attack name -> accuracy in [0, 1] (``natural`` = clean accuracy).
        protocol: the one-line protocol statement (:func:`describe_protocol`).
        n: number of images.
        autoattack: AutoAttack name -> its full result (flags, settings, resume info).
        correct: with ``per_image=True``: attack name -> bool tensor (CPU, length ``n``),
            True where the image is classified correctly under that attack (``natural``: the
            clean image; AutoAttack: robust, i.e. correct on the clean image and on its
            adversarial example), so ``correct[name].float().mean() == accuracy[name]``.
            Empty otherwise.
    """

    accuracy: dict[str, float]
    protocol: str
    n: int
    autoattack: dict[str, AutoAttackResult] = field(default_factory=dict)
    correct: dict[str, torch.Tensor] = field(default_factory=dict)

    def worst_case(self) -> torch.Tensor:
        """Per image: correct under EVERY evaluated attack (natural included), the per-image
        worst case over the attacks; needs ``per_image=True``.

        Raises:
            ValueError: the evaluation has no per-image results.

        Example:
            >>> r = RobustEvaluation({"a": 0.5, "b": 0.5}, "", 2,
            ...                      correct={"a": torch.tensor([True, False]), "b": torch.tensor([False, True])})
            >>> r.worst_case().tolist()
            [False, False]
        """
        if not self.correct:
            raise ValueError("worst_case needs per-image results: evaluate with per_image=True")
        out = torch.ones(self.n, dtype=torch.bool)
        for mask in self.correct.values():
            out &= mask.bool()
        return out

    @property
    def flags(self) -> dict[str, tuple[str, ...]]:
        """AutoAttack name -> its sanity flags, only for runs that raised any."""
        return {k: r.flags for k, r in self.autoattack.items() if r.flags}


def evaluate_robustness(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Iterable[str] | Mapping[str, Attack | None],
    *,
    eps: float | None = None,
    norm: str = "Linf",
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = True,
    aa_state: str | Path | None = None,
    aa_log: str | Path | None = None,
    aa_verbose: bool = False,
    shard: bool = False,
    per_image: bool = False,
    warn_flags: bool = False,
) -> RobustEvaluation:
    """Accuracy of ``model`` under each attack, with the protocol line and AutoAttack flags.

    Args:
        model: a [0,1]-input classifier (evaluated in fp32, eval mode; its mode is restored).
        images: uint8 (N, C, H, W) in 0..255 or float in [0, 1].
        labels: int64 (N,).
        attacks: names (see :func:`build_eval_attacks`) or a mapping of name -> attack
            callable (None = clean accuracy; an AutoAttackSpec runs over all images at once).
        eps: threat-model radius for attack names (None: each attack's default, 8/255 Linf).
        norm: ``Linf`` (default) | ``L2``, for attack names.
        batch_size: evaluation batch size (default 256).
        device: where to run; default: the model's device.
        seed: seeds the attacks' random starts and AutoAttack (the global RNG is restored).
        progress: show a progress bar per attack.
        aa_state: folder for AutoAttack's resume state (None: no resume).
        aa_log: file for AutoAttack's verbose output (default: beside its state, or none).
        aa_verbose: also print AutoAttack's output.
        shard: under DDP, rank r evaluates images r, r + W, ... and the correct counts are
            all-reduced, so every rank gets the same accuracies (exact integer sums); the
            protocol is unchanged, only which random start an image draws differs from a
            one-process evaluation. Without a process group: no effect.
        per_image: also return, per attack, which images are classified correctly
            (:attr:`RobustEvaluation.correct`; under ``shard`` gathered over ranks into the
            original order). Default False (accuracies only).
        warn_flags: also issue AutoAttack's sanity flags as ``UserWarning``
            (``AutoAttack flag (aa): ...``), so a caller that keeps only the accuracies never loses them.

    Raises:
        ValueError: mismatched shapes, eps/norm given with a mapping of built attacks, or
            an invalid attack setting.
        ImportError: an AutoAttack name without the pyautoattack package.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if isinstance(attacks, Mapping):
        if eps is not None or canonical_norm(norm) != "Linf":
            raise ValueError("eps and norm apply to attack names; build the attack objects with them instead")
    else:
        attacks = build_eval_attacks(attacks, eps=eps, norm=norm)
    if device is None:
        device = next(model.parameters()).device
    if shard and ddp.is_distributed():
        return _evaluate_sharded(model, images, labels, attacks, batch_size=batch_size, device=device, seed=seed,
                                 progress=progress, aa_state=aa_state, aa_log=aa_log, aa_verbose=aa_verbose,
                                 per_image=per_image, warn_flags=warn_flags)
    n = images.shape[0]
    results: dict[str, float] = {}
    aa_results: dict[str, AutoAttackResult] = {}
    masks: dict[str, torch.Tensor] = {}
    with preserved_rng(), fp32_eval(model):
        for name, attack in attacks.items():
            if isinstance(attack, AutoAttackSpec):
                # whole-set run: AutoAttack only attacks what is still robust, and resumes by chunk
                res = attack.evaluate(model, images, labels, batch_size=batch_size, device=device, seed=seed,
                                      state_dir=aa_state, log_path=aa_log, progress=progress,
                                      verbose=aa_verbose, desc=f"eval {name}")
                aa_results[name], hit = res, res.robust.bool().cpu() if per_image else None
                results[name] = res.accuracy
            else:
                torch.manual_seed(seed)
                count, hit = _batched_correct(model, images, labels, attack, batch_size=batch_size, device=device,
                                              per_image=per_image, desc=f"eval {name}" if progress else None)
                results[name] = count / max(n, 1)
            if per_image:
                masks[name] = hit
    out = RobustEvaluation(results, describe_protocol(attacks), int(n), aa_results, masks)
    if warn_flags:
        _warn_flags(out)
    return out


def _batched_correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack: Attack | None, *,
                     batch_size: int, device: torch.device | str, per_image: bool,
                     desc: str | None) -> tuple[int, torch.Tensor | None]:
    """Correct predictions on ``attack``'s inputs (clean ones for None), batch by batch: the count,
    and with ``per_image`` the per-image flags on the CPU. One host sync, at the end."""
    correct = torch.zeros((), dtype=torch.long, device=device)
    parts: list[torch.Tensor] = []
    n = images.shape[0]
    for start in tqdm(range(0, n, batch_size), desc=desc, leave=False, disable=desc is None, unit="batch"):
        x = to_unit_float(images[start : start + batch_size].to(device, non_blocking=True))
        y = labels[start : start + batch_size].to(device, non_blocking=True)
        if attack is not None:
            x = attack(model, x, y)
        with torch.no_grad():
            hit = model(x).argmax(1) == y
        correct += hit.sum()
        if per_image:
            parts.append(hit.cpu())
    mask = (torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)) if per_image else None
    return int(correct.item()), mask


def _evaluate_sharded(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      attacks: Mapping[str, Attack | None], **kwargs: Any) -> RobustEvaluation:
    """:func:`evaluate_robustness` on this rank's shard, the correct counts summed over ranks
    (with ``per_image``, the per-image flags too: each rank fills its rows ``rank::world`` of a
    zero tensor and the sum over ranks is the whole set's, in the original order)."""
    xs, ys = ddp.shard(images), ddp.shard(labels)
    local = evaluate_robustness(model, xs, ys, attacks, **kwargs) if xs.shape[0] else None
    acc = local.accuracy if local is not None else {}
    device = next(model.parameters()).device
    counts = torch.tensor([round(acc.get(name, 0.0) * xs.shape[0]) for name in attacks],
                          dtype=torch.float64, device=device)
    accuracy = dict(zip(attacks, (ddp.all_reduce_sum(counts) / images.shape[0]).tolist()))
    masks: dict[str, torch.Tensor] = {}
    if kwargs.get("per_image"):
        n = int(images.shape[0])
        full = torch.zeros((len(attacks), n), dtype=torch.int32, device=device)
        if local is not None:
            for i, name in enumerate(attacks):
                full[i, ddp.get_rank()::ddp.get_world_size()] = local.correct[name].to(device, torch.int32)
        full = ddp.all_reduce_sum(full).cpu() > 0
        masks = {name: full[i] for i, name in enumerate(attacks)}
    return RobustEvaluation(accuracy, describe_protocol(attacks), int(images.shape[0]),
                            local.autoattack if local is not None else {}, masks)


@dataclass
class EvalRecord:
    """What :func:`evaluate_checkpoint` measured, and on which weights.

    Attributes:
        path: the file evaluated.
        loaded: the model and what is known about it (dataset, weights, epoch, config dict).
        result: accuracies, protocol line, image count and AutoAttack details.
    """

    path: Path
    loaded: LoadedModel
    result: RobustEvaluation

    @property
    def accuracy(self) -> dict[str, float]:
        return self.result.accuracy


def evaluate_checkpoint(
    path: str | Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Iterable[str] | Mapping[str, Attack | None],
    *,
    device: torch.device | str = "cpu",
    ema: bool = True,
    warn_flags: bool = False,
    loaded: LoadedModel | None = None,
    **kwargs: Any,
) -> EvalRecord:
    """Load a checkpoint or exported model and evaluate it: the one checkpoint -> model -> table
    path, used by ``fit``'s final table, ``robustrain eval`` and the reproduce harness.

    Args:
        path: a ``best.pt`` / ``last.pt`` or an exported ``OUT.pt`` (with its card).
        images, labels: the evaluation set (uint8 or [0, 1] float images, int64 labels).
        attacks: attack names or built attacks, as :func:`evaluate_robustness`.
        device: where to load and run the model.
        ema: evaluate the EMA weights when the checkpoint has them (the protocol; default True).
        warn_flags: issue AutoAttack's sanity flags as ``UserWarning`` as well.
        loaded: ``path`` already loaded by :func:`~robustrain.artifacts.load_model` (e.g. to pick the
            dataset first); it is moved to ``device`` instead of reading the file again.
        **kwargs: the remaining arguments of :func:`evaluate_robustness` (``eps``, ``norm``,
            ``batch_size``, ``seed``, ``progress``, ``aa_state``, ``shard``, ``per_image`` ...).

    Raises:
        CheckpointError: a missing, corrupt or foreign file.
    """
    if loaded is None:
        loaded = load_model(path, device, ema=ema)
    else:
        loaded.model.to(device)
    result = evaluate_robustness(loaded.model, images, labels, attacks, device=device, warn_flags=warn_flags,
                                 **kwargs)
    return EvalRecord(Path(path), loaded, result)


def _warn_flags(result: RobustEvaluation) -> None:
    for name, flags in result.flags.items():
        for flag in flags:
            warnings.warn(f"AutoAttack flag ({name}): {flag}", stacklevel=3)


def format_table(rows: Mapping[str, Mapping[str, float]], columns: Iterable[str]) -> str:
    """A markdown table: one row per model/run, accuracies in percent."""
    columns = list(columns)
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, accs in rows.items():
        cells = [f"{100 * accs[c]:.2f}" if c in accs else "-" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
