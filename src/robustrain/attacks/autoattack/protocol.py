"""What an AutoAttack evaluation may ask for, and its checks: versions, attacks, threat models.

:class:`SpecFields` holds the validated fields of an AutoAttack configuration; the public
:class:`~robustrain.attacks.autoattack.spec.AutoAttackSpec` adds the methods that run it. They
are two classes so that the runner (:mod:`.run`) can validate its arguments with these checks
while the spec's methods call the runner, without an import circle.

Example:
    >>> canonical_norm("l2"), default_eps("linf") == 8 / 255
    ('L2', True)
    >>> SpecFields("custom", ("apgd-ce",)).describe()
    'AutoAttack custom (apgd-ce; official pyautoattack)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from robustrain.utils.checks import check_int

__all__ = [
    "AA_ATTACKS",
    "AA_NORMS",
    "AA_VERSIONS",
    "FLAGS_DOC",
    "INSTALL_HINT",
    "PARTS",
    "SpecFields",
    "canonical_norm",
    "default_eps",
    "require_pyautoattack",
]

INSTALL_HINT = ("AutoAttack needs the pyautoattack package, a robustrain dependency that is missing here: "
                "pip install 'pyautoattack>=0.2' (or reinstall robustrain: pip install -e .)")
FLAGS_DOC = "https://github.com/fra31/auto-attack/blob/master/flags_doc.md"

#: the package's attack names (usable in a custom list)
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
#: version -> attacks it runs (as set by pyautoattack's ``_set_version``); custom: user's list
AA_VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
    "custom": (),
}
#: threat model -> default radius (8/255: the CIFAR Linf protocol; 0.5: RobustBench CIFAR L2)
AA_NORMS: dict[str, float] = {"Linf": 8 / 255, "L2": 0.5}
#: option prefix -> attribute of pyautoattack.AutoAttack holding that attack object
PARTS = {"apgd": "apgd", "apgd_targeted": "apgd_targeted", "fab": "fab", "square": "square"}


def canonical_norm(norm: str) -> str:
    """``"linf"`` / ``"Linf"`` -> ``"Linf"``, ``"l2"`` -> ``"L2"``; ValueError otherwise.

    Example:
        >>> canonical_norm("linf"), canonical_norm("L2")
        ('Linf', 'L2')
    """
    for name in AA_NORMS:
        if isinstance(norm, str) and norm.lower() == name.lower():
            return name
    raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(AA_NORMS)}")


def default_eps(norm: str) -> float:
    """The protocol's radius for ``norm``: 8/255 (Linf) or 0.5 (L2)."""
    return AA_NORMS[canonical_norm(norm)]


def require_pyautoattack():
    """The ``pyautoattack`` module; ImportError saying how to install it when missing."""
    try:
        import pyautoattack
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return pyautoattack


@dataclass(frozen=True)
class SpecFields:
    """The checked fields of an AutoAttack configuration (arguments: see
    :class:`~robustrain.attacks.autoattack.spec.AutoAttackSpec`, which adds running it).

    Raises:
        ValueError: unknown version, attack, norm or option; an attack list for a named
            version or none for ``custom``; eps not positive; chunk_size not an int >= 1.
    """

    version: str = "standard"
    attacks: tuple[str, ...] = ()
    norm: str = "Linf"
    eps: float | None = None
    chunk_size: int = 1000
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.version not in AA_VERSIONS:
            raise ValueError(f"unknown AutoAttack version {self.version!r}; use one of {', '.join(AA_VERSIONS)}")
        object.__setattr__(self, "attacks", tuple(self.attacks))
        object.__setattr__(self, "norm", canonical_norm(self.norm))
        self._check_attacks()
        if self.eps is None:
            object.__setattr__(self, "eps", AA_NORMS[self.norm])
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not self.eps > 0:
            raise ValueError(f"AutoAttack eps must be a positive number, got {self.eps!r}")
        object.__setattr__(self, "eps", float(self.eps))
        self._check_options()
        check_int("chunk_size", self.chunk_size)

    def _check_attacks(self) -> None:
        if self.version == "custom":
            if not self.attacks:
                raise ValueError("a custom AutoAttack needs attacks, e.g. aa:apgd-ce+apgd-t")
            bad = [a for a in self.attacks if a not in AA_ATTACKS]
            if bad:
                raise ValueError(f"unknown AutoAttack attack {bad[0]!r}; use {', '.join(AA_ATTACKS)}")
            if len(set(self.attacks)) != len(self.attacks):
                raise ValueError(f"AutoAttack attack list {'+'.join(self.attacks)} repeats an attack; list each once")
        elif self.attacks:
            raise ValueError(f"AutoAttack version {self.version!r} fixes its attacks; use version='custom' for a list")

    def _check_options(self) -> None:
        options = self.options.items() if isinstance(self.options, Mapping) else self.options
        object.__setattr__(self, "options", tuple(sorted((str(k), v) for k, v in options)))
        if self.options and self.version != "custom":
            raise ValueError("AutoAttack options change the attacks; they need a custom list (aa:ATTACK+...)")
        for key, _ in self.options:
            part, _, attr = key.partition(".")
            if part not in PARTS or not attr:
                raise ValueError(f"unknown AutoAttack option {key!r}; use PART.ATTR with PART in {', '.join(PARTS)}")

    @property
    def attacks_to_run(self) -> tuple[str, ...]:
        """The attacks this configuration runs, in order."""
        return self.attacks if self.version == "custom" else AA_VERSIONS[self.version]

    def describe(self) -> str:
        """One line for protocol statements, e.g. ``AutoAttack standard (apgd-ce, ...)``."""
        opts = "".join(f", {k}={v}" for k, v in self.options)
        return f"AutoAttack {self.version} ({', '.join(self.attacks_to_run)}{opts}; official pyautoattack)"
