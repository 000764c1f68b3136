"""The outcome of one AutoAttack evaluation: :class:`AutoAttackResult`.

Example:
    >>> r = AutoAttackResult(accuracy=0.5, clean_accuracy=0.75, n=4)
    >>> r.flags, r.resumed_chunks
    ((), 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["AutoAttackResult"]


@dataclass(frozen=True)
class AutoAttackResult:
    """Outcome of one AutoAttack evaluation.

    Attributes:
        accuracy: robust accuracy in [0, 1].
        clean_accuracy: natural accuracy on the same images.
        n: number of images.
        flags: the package's sanity-check warnings and the adapter's own checks (empty when
            nothing looked suspicious); read them before trusting ``accuracy``.
        settings: version, attacks, norm, eps, seed, batch and chunk size, package version.
        resumed_chunks: chunks read from an earlier, interrupted run's state.
        log_path: where the package's verbose output went (None: discarded).
        robust: per image (bool, CPU, length ``n``): correctly classified on the clean image
            AND on AutoAttack's adversarial example (``accuracy`` is its mean); read from the
            resume state for resumed chunks. None when not known.
        clean: per image (bool, CPU): correctly classified on the clean image.
    """

    accuracy: float
    clean_accuracy: float
    n: int
    flags: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    resumed_chunks: int = 0
    log_path: str | None = None
    robust: Tensor | None = field(default=None, repr=False, compare=False)
    clean: Tensor | None = field(default=None, repr=False, compare=False)
