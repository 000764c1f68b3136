"""An AutoAttack configuration that runs: :class:`AutoAttackSpec`, and the attack-name grammar.

Names (:func:`parse_autoattack_name`): ``aa`` (standard), ``aa-plus``, ``aa-rand`` and
``aa:ATTACK+ATTACK...`` (custom, e.g. ``aa:apgd-ce+apgd-t``); configs validate them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from robustrain.attacks.autoattack.protocol import AA_ATTACKS, SpecFields
from robustrain.attacks.autoattack.results import AutoAttackResult
from robustrain.attacks.autoattack.run import autoattack, run_autoattack

__all__ = ["NAME_SUFFIX", "AutoAttackSpec", "parse_autoattack_name"]

#: name suffix after ``aa`` -> version
NAME_SUFFIX = {"": "standard", "-plus": "plus", "-rand": "rand"}


@dataclass(frozen=True)
class AutoAttackSpec(SpecFields):
    """An AutoAttack configuration, callable like the other attacks: ``spec(model, x, y)``.

    Args:
        version: ``standard`` (default) | ``plus`` | ``rand`` | ``custom``.
        attacks: the attack list for ``custom`` (names from
            :data:`~robustrain.attacks.autoattack.AA_ATTACKS`); must be empty for the named versions.
        norm: ``Linf`` (default) | ``L2``.
        eps: radius (default: 8/255 for Linf, 0.5 for L2).
        chunk_size: images per resumable chunk of :meth:`evaluate` (default 1000).
        options: ``custom`` only: attributes of the package's attack objects to change,
            as ``{"PART.ATTR": value}`` with PART in ``apgd``, ``apgd_targeted``, ``fab``,
            ``square`` (e.g. ``{"apgd.n_restarts": 1, "apgd.n_iter": 20}`` for a quick
            check); stated in the protocol line. Default none.

    Calling it runs AutoAttack on one batch and returns the adversarial examples (for code
    that wants ``x_adv``); :meth:`evaluate` is the resumable, flag-reporting evaluation.
    The fields and their checks are :class:`~robustrain.attacks.autoattack.protocol.SpecFields`.

    Raises:
        ValueError: an invalid version, attack list, norm, eps, option or chunk_size.
    """

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial examples of one batch: :func:`autoattack` with this configuration."""
        return autoattack(model, x, y, version=self.version, attacks=self.attacks or None,
                          norm=self.norm, eps=self.eps, options=dict(self.options))

    def evaluate(self, model: nn.Module, images: Tensor, labels: Tensor, **kwargs: Any) -> AutoAttackResult:
        """:func:`run_autoattack` with this configuration; ``kwargs`` as there."""
        kwargs.setdefault("chunk_size", self.chunk_size)
        return run_autoattack(model, images, labels, version=self.version, attacks=self.attacks or None,
                              norm=self.norm, eps=self.eps, options=dict(self.options), **kwargs)


def parse_autoattack_name(name: str, *, norm: str = "Linf", eps: float | None = None) -> AutoAttackSpec | None:
    """The AutoAttack named by an evaluation attack name; None when ``name`` is not one.

    Names: ``aa`` (standard), ``aa-plus``, ``aa-rand`` and ``aa:ATTACK+ATTACK...`` (custom,
    e.g. ``aa:apgd-ce+apgd-t``).

    Raises:
        ValueError: a malformed AutoAttack name (the message lists the valid forms).

    Example:
        >>> parse_autoattack_name("aa").attacks_to_run
        ('apgd-ce', 'apgd-t', 'fab-t', 'square')
        >>> parse_autoattack_name("pgd20") is None
        True
    """
    if name.startswith("aa:"):
        attacks = tuple(a.strip() for a in name[3:].split("+") if a.strip())
        return AutoAttackSpec("custom", attacks, norm=norm, eps=eps)
    if name == "aa" or name.startswith("aa-"):
        version = NAME_SUFFIX.get(name[2:])
        if version is None:
            raise ValueError(
                f"unknown AutoAttack name {name!r}; use aa, aa-plus, aa-rand or aa:ATTACK+... "
                f"with attacks from {', '.join(AA_ATTACKS)}"
            )
        return AutoAttackSpec(version, norm=norm, eps=eps)
    return None
