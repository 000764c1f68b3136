"""The numbers of a reproduction table: mean ± std over seeds, the paper's value, the difference.

Pure functions on plain dicts, so a table can be re-rendered from its ``results.json``:

* :func:`mean_std` / :func:`cell` aggregate one column of one row over seeds;
* :func:`ratio_cell` divides a row's column by a reference row's (Table 2's "× natural");
* :func:`render_markdown` turns a results dict into the markdown table;
* :func:`write_atomic` writes a file so that a reader never sees half of it.

Accuracies are stored in percent (as the paper prints them), times in the column's unit.

Example:
    >>> c = cell([52.0, 54.0, 53.0], paper=51.4)
    >>> c["mean"], c["std"], round(c["diff"], 2)
    (53.0, 1.0, 1.6)
    >>> format_mean_std(c["mean"], c["std"]), format_diff(c["diff"])
    ('53.00 ± 1.00', '+1.60')
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from robustrain.utils.fileio import write_atomic

__all__ = ["mean_std", "cell", "ratio_cell", "format_mean_std", "format_diff", "format_value",
           "render_markdown", "write_atomic"]

DASH = "—"


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1 in the denominator) of ``values``.

    The std is None for a single value (one seed says nothing about the spread).

    Raises:
        ValueError: ``values`` is empty.

    Example:
        >>> mean_std([1.0, 3.0])
        (2.0, 1.4142135623730951)
        >>> mean_std([5.0])
        (5.0, None)
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_std needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def cell(values: Sequence[float], paper: float | None = None) -> dict[str, Any]:
    """One table cell: ``values`` over seeds (possibly none yet) against the paper's number.

    Returns:
        ``{"values", "n", "mean", "std", "paper", "diff"}``; ``mean``/``std``/``diff`` are None
        when there is nothing to compute them from; ``diff = mean - paper``.
    """
    values = [float(v) for v in values]
    mean, std = mean_std(values) if values else (None, None)
    diff = mean - paper if mean is not None and paper is not None else None
    return {"values": values, "n": len(values), "mean": mean, "std": std, "paper": paper, "diff": diff}


def ratio_cell(num: Mapping[str, Any], den: Mapping[str, Any]) -> dict[str, Any]:
    """The cell ``num / den`` of two cells (ratio of the means; the paper's ratio likewise).

    Example:
        >>> r = ratio_cell(cell([4.0], 4.02), cell([1.0], 0.35))
        >>> r["mean"], round(r["paper"], 2), round(r["diff"], 2)
        (4.0, 11.49, -7.49)
    """
    def div(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    mean = div(num.get("mean"), den.get("mean"))
    paper = div(num.get("paper"), den.get("paper"))
    n = min(num.get("n", 0), den.get("n", 0))
    return {"values": [], "n": n, "mean": mean, "std": None, "paper": paper,
            "diff": mean - paper if mean is not None and paper is not None else None}


_DIGITS = {"%": 2, "min": 2, "s": 1, "x": 2}


def format_value(value: float | None, unit: str = "%") -> str:
    """A number as the table prints it (``—`` when missing)."""
    if value is None:
        return DASH
    return f"{value:.{_DIGITS.get(unit, 2)}f}"


def format_mean_std(mean: float | None, std: float | None, unit: str = "%") -> str:
    """``mean ± std``, or the mean alone for one seed, or ``—``."""
    if mean is None:
        return DASH
    if std is None:
        return format_value(mean, unit)
    return f"{format_value(mean, unit)} ± {format_value(std, unit)}"


def format_diff(diff: float | None, unit: str = "%") -> str:
    """The signed difference ours - paper (``—`` when either is missing)."""
    if diff is None:
        return DASH
    return f"{diff:+.{_DIGITS.get(unit, 2)}f}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: Mapping[str, Any]) -> str:
    """The markdown report of a reproduction (the ``results.json`` dict, see the harness).

    Every column gets three cells: ours (mean ± sample std over the finished seeds), the
    paper's number and the difference; then the number of seeds and a note (status, scale
    substitutions, skip reasons).

    Example:
        >>> res = {"table": "t", "title": "T", "scale": "mini", "notes": [], "protocol": [],
        ...        "columns": [{"key": "aa", "label": "AA", "unit": "%"}],
        ...        "rows": [{"label": "UIAT", "seeds": 2, "note": "",
        ...                  "cells": {"aa": cell([40.0, 42.0], 49.11)}}]}
        >>> print(render_markdown(res).splitlines()[-1])
        | UIAT | 41.00 ± 1.41 | 49.11 | -8.11 | 2 |  |
    """
    cols = result["columns"]
    lines = [f"## {result['table']} ({result['scale']} scale): {result['title']}", ""]
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    for proto in result.get("protocol", []):
        lines.append(f"- protocol: {proto}")
    if len(lines) > 2:
        lines.append("")
    head = ["row"]
    for c in cols:
        head += [c["label"], "paper", "Δ"]
    head += ["seeds", "note"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|---|" + "---:|---:|---:|" * len(cols) + "---:|---|")
    for row in result["rows"]:
        cells = [_escape(row["label"])]
        for c in cols:
            v = row["cells"].get(c["key"], {})
            unit = c.get("unit", "%")
            cells += [format_mean_std(v.get("mean"), v.get("std"), unit), format_value(v.get("paper"), unit),
                      format_diff(v.get("diff"), unit)]
        cells += [str(row.get("seeds", 0)), _escape(row.get("note", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
