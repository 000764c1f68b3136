"""Where ``robustrain eval`` keeps its results: one JSON file per protocol beside the checkpoint.

Issue 23: every evaluation used to write ``CHECKPOINT-eval.json``, so running the README's eval
lines in turn (the protocol, a quick PGD check, eps 4/255, L2) left only the last one and
``export`` found no AutoAttack result. Each protocol (attacks, threat model, radius, image count)
now has its own file; the DESIGN.md protocol keeps the plain name.

Example:
    >>> from pathlib import Path
    >>> eval_record_path(Path("run/best.pt"), ["natural", "pgd20", "cw30", "aa"], "Linf", None, None).name
    'best-eval.json'
    >>> eval_record_path(Path("run/best.pt"), ["natural", "aa:apgd-ce+apgd-t"], "Linf", 4 / 255, 1000).name
    'best-eval-natural+aa_apgd-ce+apgd-t-linf4_255-n1000.json'
    >>> eval_record_path(Path("run/best.pt"), ["natural", "pgd20", "cw30", "aa"], "L2", None, None).name
    'best-eval-l2.json'
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

from robustrain.utils.units import format_eps

__all__ = ["PROTOCOL_ATTACKS", "eval_record_path", "eval_record_paths"]

#: ``robustrain eval``'s default attacks: the DESIGN.md protocol
PROTOCOL_ATTACKS = ("natural", "pgd20", "cw30", "aa")
_DEFAULT_EPS = {"linf": 8 / 255}


def eval_record_path(checkpoint: Path, attacks: Sequence[str], norm: str, eps: float | None,
                     n: int | None) -> Path:
    """``CHECKPOINT-eval[-TAG].json`` for one protocol; the tag names what differs from the
    DESIGN.md protocol (attacks, threat model, radius, a subset of ``n`` images)."""
    norm = norm.lower()
    parts = []
    if tuple(attacks) != PROTOCOL_ATTACKS:
        parts.append("+".join(attacks))
    default_eps = _DEFAULT_EPS.get(norm)
    if norm != "linf" or (eps is not None and not (default_eps and math.isclose(eps, default_eps, rel_tol=1e-6))):
        parts.append(norm + ("" if eps is None else format_eps(eps)))
    if n is not None:
        parts.append(f"n{n}")
    tag = re.sub(r"[^A-Za-z0-9+._-]", "_", "-".join(parts))
    return checkpoint.with_name(f"{checkpoint.stem}-eval{'-' + tag if tag else ''}.json")


def eval_record_paths(checkpoint: Path) -> list[Path]:
    """Every ``robustrain eval`` result beside ``checkpoint`` (any protocol), sorted by name."""
    return sorted(checkpoint.parent.glob(f"{checkpoint.stem}-eval*.json"))
