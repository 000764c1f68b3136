"""The numbers of a reproduction table: mean ± std over seeds, the paper's value, the difference.

Pure functions on plain dicts, so a table can be re-rendered from its ``results.json``:

* :func:`mean_std` / :func:`cell` aggregate one column of one row over seeds (the statistics
  themselves live in :mod:`robustrain.reproduce.stats`);
* :func:`paired_cell` is a row's paired difference to its baseline row over the same seeds,
  with a 95% t-interval;
* :func:`ratio_cell` divides a row's column by a reference row's (Table 2's "× natural");
* :func:`render_markdown` turns a results dict into the markdown table (and the table of
  paired differences, when the rows have a baseline);
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

from typing import Any, Mapping, Sequence

from robustrain.reproduce.stats import mean_std, paired_difference
from robustrain.utils.fileio import write_atomic

__all__ = ["mean_std", "cell", "paired_cell", "ratio_cell", "format_mean_std", "format_diff", "format_paired",
           "format_value", "render_markdown", "write_atomic"]

DASH = "—"


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


def paired_cell(values: Sequence[float], baseline_values: Sequence[float], *, baseline: str | None = None,
                seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """A row's paired difference to its baseline row: ``values[i] - baseline_values[i]`` on the
    same seed ``seeds[i]`` (:func:`robustrain.reproduce.stats.paired_difference`).

    Returns:
        ``{"baseline", "seeds", "n", "mean", "half_width", "low", "high"}``: the 95% interval is
        ``[low, high] = mean ± half_width``; ``half_width``/``low``/``high`` are None for n = 1
        and everything but ``n`` is None for n = 0.

    Example:
        >>> p = paired_cell([52.0, 55.0, 54.0], [50.0, 51.0, 51.0], baseline="sat", seeds=[0, 1, 2])
        >>> p["mean"], round(p["half_width"], 4), round(p["low"], 4), p["n"]
        (3.0, 2.4841, 0.5159, 3)
    """
    seeds = list(seeds) if seeds is not None else list(range(len(values)))
    out: dict[str, Any] = {"baseline": baseline, "seeds": seeds, "n": len(values), "mean": None,
                           "half_width": None, "low": None, "high": None}
    if values:
        mean, half, n = paired_difference(values, baseline_values)
        out.update(mean=mean, half_width=half, n=n)
        if half is not None:
            out.update(low=mean - half, high=mean + half)
    return out


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


def format_paired(p: Mapping[str, Any] | None, unit: str = "%") -> str:
    """A paired difference as the table prints it: ``+3.00 ± 2.48`` (mean ± 95% half-width),
    ``+2.00 (n=1: no interval)``, or ``—`` when there is no pair yet.

    Example:
        >>> format_paired(paired_cell([52.0], [50.0])), format_paired(None)
        ('+2.00 (n=1: no interval)', '—')
    """
    if not p or p.get("mean") is None:
        return DASH
    if p.get("half_width") is None:
        return f"{format_diff(p['mean'], unit)} (n={p.get('n', 1)}: no interval)"
    return f"{format_diff(p['mean'], unit)} ± {format_value(p['half_width'], unit)}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: Mapping[str, Any]) -> str:
    """The markdown report of a reproduction (the ``results.json`` dict, see the harness).

    Every column gets three cells: ours (mean ± sample std over the finished seeds), the
    paper's number and the difference (one cell, ours, when no row has a published number, as
    in the ``study`` and ``lrat`` tables); then the number of seeds and a note (status, scale
    substitutions, skip reasons). When rows have a baseline (``row["baseline"]``), a second
    table follows: per accuracy column, the paired difference to the baseline row over the
    same seeds, mean ± the half-width of its 95% t-interval (:func:`format_paired`).

    Example:
        >>> res = {"table": "t", "title": "T", "scale": "mini", "notes": [], "protocol": [],
        ...        "columns": [{"key": "aa", "label": "AA", "unit": "%"}],
        ...        "rows": [{"label": "UIAT", "seeds": 2, "note": "",
        ...                  "cells": {"aa": cell([40.0, 42.0], 49.11)}}]}
        >>> print(render_markdown(res).splitlines()[-1])
        | UIAT | 41.00 ± 1.41 | 49.11 | -8.11 | 2 |  |
        >>> res["rows"][0]["cells"]["aa"] = cell([40.0, 42.0], None)
        >>> print(render_markdown(res).splitlines()[-1])
        | UIAT | 41.00 ± 1.41 | 2 |  |
    """
    cols = result["columns"]
    lines = [f"## {result['table']} ({result['scale']} scale): {result['title']}", ""]
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    for proto in result.get("protocol", []):
        lines.append(f"- protocol: {proto}")
    if len(lines) > 2:
        lines.append("")
    # paper / Δ cells only where some row has a published number (not in tables of our own)
    with_paper = any(v.get("paper") is not None for row in result["rows"] for v in row["cells"].values())
    head = ["row"]
    for c in cols:
        head += [c["label"], "paper", "Δ"] if with_paper else [c["label"]]
    head += ["seeds", "note"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|---|" + ("---:|---:|---:|" if with_paper else "---:|") * len(cols) + "---:|---|")
    for row in result["rows"]:
        cells = [_escape(row["label"])]
        for c in cols:
            v = row["cells"].get(c["key"], {})
            unit = c.get("unit", "%")
            cells.append(format_mean_std(v.get("mean"), v.get("std"), unit))
            if with_paper:
                cells += [format_value(v.get("paper"), unit), format_diff(v.get("diff"), unit)]
        cells += [str(row.get("seeds", 0)), _escape(row.get("note", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _paired_table(result)
    return "\n".join(lines) + "\n"


def _paired_table(result: Mapping[str, Any]) -> list[str]:
    """The markdown of the paired differences to each row's baseline (none without baselines)."""
    rows = [r for r in result["rows"] if r.get("baseline")]
    if not rows:
        return []
    keys = {k for r in rows for k in r.get("paired", {})}
    cols = [c for c in result["columns"] if c["key"] in keys]
    if not cols:
        cols = [c for c in result["columns"] if c.get("unit", "%") == "%"]
    labels = {r.get("id"): r["label"] for r in result["rows"]}
    lines = ["", "Paired difference to the baseline row over the same seeds (row - baseline, points): "
             "mean ± half-width of the 95% t-interval; n=1: no interval.", ""]
    lines.append("| row | baseline | " + " | ".join(c["label"] for c in cols) + " | pairs |")
    lines.append("|---|---|" + "---:|" * len(cols) + "---:|")
    for r in rows:
        paired = r.get("paired", {})
        n = max((p.get("n", 0) for p in paired.values()), default=0)
        cells = [_escape(r["label"]), _escape(labels.get(r["baseline"], r["baseline"]))]
        cells += [format_paired(paired.get(c["key"]), c.get("unit", "%")) for c in cols]
        cells.append(str(n))
        lines.append("| " + " | ".join(cells) + " |")
    return lines
