"""Frozen, validated attack objects for configs, and the ``ATTACKS`` registry.

Each object holds the hyper-parameters of one functional attack and is called as
``attack(model, x, y) -> x_adv``. Fields are plain float / int / str / bool so a config
layer can type-check them generically from ``dataclasses.fields``; ranges are checked in
``__post_init__`` (``ValueError``).

Example:
    >>> import torch
    >>> attack = create_attack("pgd20", eps=4/255)
    >>> attack.steps, round(attack.eps * 255)
    (20, 4)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    >>> attack(model, torch.rand(2, 3, 2, 2), torch.tensor([0, 1])).shape
    torch.Size([2, 3, 2, 2])
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from robustrain.utils.checks import check_choice, check_field_types, check_int, check_keys, check_nonnegative
from robustrain.attacks.eot import eot_pgd
from robustrain.attacks.functional import (
    ATTACK_LOSSES,
    STARTS,
    cw_inf,
    fgsm,
    pgd,
    validate_attack_args,
)
from robustrain.utils.registry import Registry

__all__ = ["ATTACKS", "CW", "EOTPGD", "FGSM", "PGD", "Inverse", "attack_defaults", "create_attack", "parse_attack_name"]


@dataclass(frozen=True)
class PGD:
    """Projected gradient attack (Madry et al. 2018); see :func:`robustrain.attacks.pgd`.

    Threat model: ``norm`` ball of radius ``eps`` ∩ [0, 1].

    Args:
        eps: radius ε (default 8/255).
        alpha: step size α (default 2/255).
        steps: number of steps (default 10: PGD-10, the training attack of PGD-AT / UIAT).
        norm: ``"linf"`` | ``"l2"`` (default ``"linf"``).
        loss: ``"ce"`` | ``"margin"`` (default ``"ce"``).
        start: ``"uniform"`` | ``"zero"`` | ``"normal"`` (default ``"uniform"``).
        init_std: std of the ``"normal"`` start (default 0.001).
        targeted: y are target labels (default False).
        descend: minimise the loss: inverse adversarial examples (default False).
        bn_mode: ``"eval"`` | ``"train"`` | ``"train_frozen_stats"`` (default ``"eval"``).

    Shapes: x (N, C, H, W) in [0, 1], y (N,) -> x_adv (N, C, H, W).
    """

    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 10
    norm: str = "linf"
    loss: str = "ce"
    start: str = "uniform"
    init_std: float = 0.001
    targeted: bool = False
    descend: bool = False
    bn_mode: str = "eval"

    def __post_init__(self) -> None:
        check_field_types(self)
        validate_attack_args(
            eps=self.eps, alpha=self.alpha, steps=self.steps, norm=self.norm,
            bn_mode=self.bn_mode, init_std=self.init_std, clip=(0.0, 1.0),
        )
        check_choice("loss", self.loss, ATTACK_LOSSES.names())
        check_choice("start", self.start, STARTS)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return pgd(model, x, y, **dataclasses.asdict(self))


@dataclass(frozen=True)
class Inverse(PGD):
    """Inverse adversarial examples: PGD descending the loss (UIAT, Dong et al. 2023, Eq. 3).

    Same fields as :class:`PGD`; the defaults are the instance-wise inverse adversary of
    the UIAT paper (Appendix A.2): radius ε' = 4/255, step α' = 2/255, 5 steps, start
    x + 0.001 · N(0, 1) (Algorithm 2, line 5), CE loss, ``descend=True``.
    """

    eps: float = 4 / 255
    steps: int = 5
    start: str = "normal"
    descend: bool = True


@dataclass(frozen=True)
class FGSM:
    """Fast gradient sign method (Goodfellow et al. 2015); see :func:`robustrain.attacks.fgsm`.

    Args:
        eps: radius ε and step size (default 8/255).
        loss: ``"ce"`` | ``"margin"`` (default ``"ce"``).
        targeted: y are target labels (default False).
        bn_mode: default ``"eval"``.
    """

    eps: float = 8 / 255
    loss: str = "ce"
    targeted: bool = False
    bn_mode: str = "eval"

    def __post_init__(self) -> None:
        check_field_types(self)
        validate_attack_args(
            eps=self.eps, alpha=self.eps, steps=1, norm="linf", bn_mode=self.bn_mode,
            init_std=0.0, clip=(0.0, 1.0),
        )
        check_choice("loss", self.loss, ATTACK_LOSSES.names())

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return fgsm(model, x, y, **dataclasses.asdict(self))


@dataclass(frozen=True)
class CW:
    """CW∞: Linf PGD on the CW margin loss; see :func:`robustrain.attacks.cw_inf`.

    Defaults are the CW∞ evaluation of DESIGN.md / the GAIRAT-LRAT code: ε = 8/255,
    α = 2/255, 30 steps, κ = 50, uniform random start.
    """

    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 30
    kappa: float = 50.0
    start: str = "uniform"
    init_std: float = 0.001
    targeted: bool = False
    bn_mode: str = "eval"

    def __post_init__(self) -> None:
        check_field_types(self)
        validate_attack_args(
            eps=self.eps, alpha=self.alpha, steps=self.steps, norm="linf",
            bn_mode=self.bn_mode, init_std=self.init_std, clip=(0.0, 1.0),
        )
        check_nonnegative("kappa", self.kappa)
        check_choice("start", self.start, STARTS)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return cw_inf(model, x, y, **dataclasses.asdict(self))


@dataclass(frozen=True)
class EOTPGD:
    """PGD on the mean gradient over ``samples`` random forwards (EOT); see
    :func:`robustrain.attacks.eot_pgd`. For randomized defences; on a deterministic model it is PGD.

    Threat model: ``norm`` ball of radius ``eps`` ∩ [0, 1]. Accuracy under it is one ordinary
    (random) forward on the final x_adv.

    Args:
        eps: radius ε (default 8/255).
        alpha: step size α (default 2/255).
        steps: number of steps (default 20, as PGD-20).
        samples: forward-backward passes averaged per step (default 16).
        norm, loss, start, init_std, targeted, bn_mode: as :class:`PGD`.

    Names: ``eot-pgd`` (20 steps x 16 samples) and ``eot-pgdSTEPSxSAMPLES``, e.g. ``eot-pgd50x32``.
    """

    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 20
    samples: int = 16
    norm: str = "linf"
    loss: str = "ce"
    start: str = "uniform"
    init_std: float = 0.001
    targeted: bool = False
    bn_mode: str = "eval"

    def __post_init__(self) -> None:
        check_field_types(self)
        validate_attack_args(
            eps=self.eps, alpha=self.alpha, steps=self.steps, norm=self.norm,
            bn_mode=self.bn_mode, init_std=self.init_std, clip=(0.0, 1.0),
        )
        check_int("samples", self.samples)
        check_choice("loss", self.loss, ATTACK_LOSSES.names())
        check_choice("start", self.start, STARTS)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return eot_pgd(model, x, y, **dataclasses.asdict(self))


#: name -> attack class; ``meta["preset"]`` holds the preset's non-default field values.
ATTACKS: Registry[type] = Registry("attack")
ATTACKS.add("fgsm", FGSM, help="FGSM, Linf 8/255, one sign step from x")
ATTACKS.add("pgd", PGD, help="PGD-10, Linf 8/255, step 2/255, uniform start, CE (training attack)")
ATTACKS.add(
    "pgd20", PGD, preset={"steps": 20},
    help="PGD-20, Linf 8/255, step 2/255, uniform start, CE (evaluation protocol)",
)
ATTACKS.add("cw30", CW, help="CW-inf: 30-step Linf PGD on the margin loss (kappa 50), 8/255, step 2/255")
# eps 0.5 is RobustBench's CIFAR-10 L2 radius; 10 steps of 0.1 travel 2·eps, enough to
# reach any point of the ball from the random start
ATTACKS.add(
    "pgd_l2", PGD, preset={"norm": "l2", "eps": 0.5, "alpha": 0.1, "steps": 10},
    help="PGD-10, L2 eps 0.5, step 0.1, uniform start, CE",
)
ATTACKS.add("inverse", Inverse, help="inverse adversary (UIAT): descending PGD, Linf 4/255, 5 steps of 2/255")
ATTACKS.add(
    "eot-pgd", EOTPGD,
    help="EOT-PGD for randomized defences: PGD-20 on the mean gradient of 16 random forwards, Linf 8/255, step "
         "2/255, CE; eot-pgdSTEPSxSAMPLES sets both, e.g. eot-pgd50x32",
)

#: ``eot-pgdSTEPSxSAMPLES``: the ``eot-pgd`` entry with its steps and samples in the name
_EOT_NAME = re.compile(r"eot-pgd(\d+)x(\d+)")


def parse_attack_name(name: str) -> tuple[str, dict[str, Any]]:
    """The registry entry a per-batch attack name refers to, and the fields its name sets.

    A registered name is itself with no fields; ``eot-pgdSTEPSxSAMPLES`` is the ``eot-pgd`` entry
    with ``steps`` and ``samples``.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
        ValueError: ``eot-pgd0x16`` and the like (steps and samples must be >= 1).

    Example:
        >>> parse_attack_name("eot-pgd20x16"), parse_attack_name("pgd20")
        (('eot-pgd', {'steps': 20, 'samples': 16}), ('pgd20', {}))
    """
    match = _EOT_NAME.fullmatch(name)
    if match is None:
        ATTACKS.entry(name)  # KeyError with the known names
        return name, {}
    steps, samples = (int(v) for v in match.groups())
    if steps < 1 or samples < 1:
        raise ValueError(f"attack {name!r}: steps and samples must be >= 1, e.g. eot-pgd20x16")
    return "eot-pgd", {"steps": steps, "samples": samples}


def create_attack(name: str, **overrides: Any) -> PGD | FGSM | CW | EOTPGD:
    """Build the registered attack ``name`` with ``overrides`` on top of its preset (names of
    the ``eot-pgdSTEPSxSAMPLES`` grammar too, see :func:`parse_attack_name`).

    Raises:
        KeyError: unknown ``name`` (the message lists the known ones).
        ValueError: an override that is not a field of the attack (the message lists the
            valid ones) or an invalid value.
    """
    base, from_name = parse_attack_name(name)
    entry = ATTACKS.entry(base)
    cls = entry.obj
    check_keys(f"attack {name!r}", overrides, [f.name for f in dataclasses.fields(cls)])
    return cls(**{**entry.meta.get("preset", {}), **from_name, **overrides})


def attack_defaults(name: str) -> dict[str, Any]:
    """The resolved field values of the registered attack ``name`` (for ``list`` / configs)."""
    return dataclasses.asdict(create_attack(name))
