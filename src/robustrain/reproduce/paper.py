"""The published numbers of the UIAT paper, kept as data (``paper_tables.json``).

Source: Dong, Moosavi-Dezfooli, Lai, Xie, "The Enemy of My Enemy is My Friend: Exploring
Inverse Adversaries for Improving Adversarial Training", CVPR 2023, arXiv:2211.00525,
Tables 1-6 (accuracies in %, Table 2 in minutes per epoch, Table 5's time in seconds per
epoch). The file is an exact copy of the project's reference file; nothing is recomputed.

Example:
    >>> from robustrain.reproduce.paper import paper_row
    >>> paper_row("table1", method="UIAT", dataset="cifar10")["aa"]
    49.11
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

__all__ = ["PAPER_FILE", "load_paper_tables", "paper_row"]

#: the packaged copy of the paper's tables
PAPER_FILE = Path(__file__).with_name("paper_tables.json")


@functools.lru_cache(maxsize=1)
def _load() -> str:
    return PAPER_FILE.read_text()


def load_paper_tables() -> dict[str, Any]:
    """The whole file as a fresh dict (``source``, ``hyperparameters``, ``table1`` ...)."""
    return json.loads(_load())


def paper_row(table: str, **match: Any) -> dict[str, Any]:
    """The one row of ``table`` whose fields equal ``match``.

    Raises:
        KeyError: unknown table.
        ValueError: no row or more than one row matches.
    """
    tables = load_paper_tables()
    if table not in tables or not isinstance(tables[table], dict) or "rows" not in tables[table]:
        raise KeyError(f"the paper has no table {table!r}; known: "
                       + ", ".join(k for k, v in tables.items() if isinstance(v, dict) and "rows" in v))
    rows = [r for r in tables[table]["rows"] if all(r.get(k) == v for k, v in match.items())]
    if len(rows) != 1:
        raise ValueError(f"{len(rows)} rows of {table} match {match}; expected exactly one")
    return rows[0]
