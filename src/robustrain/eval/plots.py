"""Figures of the analyses: panels of lines and bar charts written as PNG, atomically.

Matplotlib is the optional extra ``plot``; it is imported only when a figure is drawn, and
only through its Agg canvas (no pyplot, no global backend switch, so an interactive session
of the caller is left alone). Without it, :func:`require_matplotlib` raises
:class:`PlotDependencyError` with the one-line fix.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> panel = Panel([Line("robust", [0, 1, 2], [0.2, 0.3, 0.35])], title="demo", xlabel="epoch")
    >>> path = line_figure([panel], Path(tempfile.mkdtemp()) / "demo.png")
    >>> path.read_bytes()[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from robustrain.utils.errors import PlotDependencyError
from robustrain.utils.fileio import atomic_open

__all__ = ["PlotDependencyError", "require_matplotlib", "Line", "Panel", "line_figure", "bar_figure", "image_figure",
           "pct", "REFERENCE_COLOR"]

#: colour of reference lines (zero, the training eps), as the red lines of UIAT Figure 5
REFERENCE_COLOR = "tab:red"

#: series colours: the default cycle less C3 (tab:red, the reference lines' colour)
_SERIES_CYCLE = ("C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9")


def require_matplotlib() -> None:
    """Fail early (before minutes of attacks) when figures cannot be drawn.

    Raises:
        PlotDependencyError: matplotlib is missing; the message gives the install command.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotDependencyError("figures need matplotlib: pip install -e '.[plot]'") from None


@dataclass(frozen=True)
class Line:
    """One plotted series.

    Attributes:
        label: legend entry.
        x, y: coordinates (same length).
        marker, linestyle: matplotlib format pieces (``"o"``, ``"-"``, ``"--"``, ``""``).
        point_labels: optional text next to each point (e.g. the swept value of a run).
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    marker: str = "o"
    linestyle: str = "-"
    point_labels: Sequence[str] | None = None


@dataclass(frozen=True)
class Panel:
    """One axes: lines, labels, reference lines and an optional note in the corner.

    ``xticks`` / ``xticklabels`` put categorical names (methods, runs) on the x axis;
    ``integer_x`` keeps x ticks on whole numbers (epochs).
    """

    lines: Sequence[Line]
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    hlines: Sequence[float] = ()
    vlines: Sequence[float] = ()
    xticks: Sequence[float] | None = None
    xticklabels: Sequence[str] | None = None
    note: str = ""
    integer_x: bool = False


def _figure(nrows: int, ncols: int, width: float, height: float):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _save(fig, path: str | os.PathLike, dpi: int) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return path


def pct(values: Sequence[float]) -> list[float]:
    """Accuracies as fractions -> percent, the unit of every figure's accuracy axis."""
    return [100 * v for v in values]


def series_colors(panels: Sequence[Panel]) -> dict[str, str]:
    """One colour per series label across every panel (issue 23: the same series, e.g.
    "validation: pgd20", had a different colour in each panel of a multi-run figure), in the
    order the labels first appear; matplotlib's default cycle without its red (``C3``), which
    the reference lines use.

    Example:
        >>> a, b = Line("x", [0], [0]), Line("y", [0], [0])
        >>> series_colors([Panel([a, b]), Panel([b])])
        {'x': 'C0', 'y': 'C1'}
    """
    colors: dict[str, str] = {}
    for panel in panels:
        for line in panel.lines:
            if line.label and line.label not in colors:
                colors[line.label] = _SERIES_CYCLE[len(colors) % len(_SERIES_CYCLE)]
    return colors


def line_figure(panels: Sequence[Panel], path: str | os.PathLike, *, title: str = "", ncols: int | None = None,
                dpi: int = 120) -> Path:
    """Draw ``panels`` side by side (``ncols`` per row, default all in one row up to 4) and
    write the PNG atomically; returns ``path``."""
    if not panels:
        raise ValueError("nothing to plot: no panels")
    ncols = ncols or min(len(panels), 4)
    nrows = -(-len(panels) // ncols)
    fig, axes = _figure(nrows, ncols, 5.0, 3.8)
    colors = series_colors(panels)
    for ax, panel in zip(axes, panels):
        for line in panel.lines:
            ax.plot(list(line.x), list(line.y), marker=line.marker or None, linestyle=line.linestyle,
                    label=line.label, markersize=4, color=colors.get(line.label))
            for x, y, text in zip(line.x, line.y, line.point_labels or ()):
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for v in panel.hlines:
            ax.axhline(v, color=REFERENCE_COLOR, linewidth=0.8, linestyle="--")
        for v in panel.vlines:
            ax.axvline(v, color=REFERENCE_COLOR, linewidth=0.8, linestyle="--")
        if panel.xticks is not None:
            ax.set_xticks(list(panel.xticks))
            if panel.xticklabels is not None:
                ax.set_xticklabels(list(panel.xticklabels), rotation=30, ha="right", fontsize=8)
        if panel.integer_x:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel.note:
            ax.text(0.02, 0.02, panel.note, transform=ax.transAxes, fontsize=8, va="bottom")
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if any(line.label for line in panel.lines):
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def bar_figure(labels: Sequence[str], values: Sequence[float], path: str | os.PathLike, *, ylabel: str = "",
               title: str = "", value_format: str = "{:.1f}", dpi: int = 120) -> Path:
    """One bar per label with its value written on top; PNG written atomically."""
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels but {len(values)} values")
    fig, (ax,) = _figure(1, 1, max(4.0, 0.7 * len(labels) + 1.5), 3.8)
    bars = ax.bar(range(len(values)), list(values), color="tab:blue")
    ax.bar_label(bars, labels=[value_format.format(v) for v in values], fontsize=8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(list(labels), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, dpi)


def image_figure(rows: Sequence[Sequence[np.ndarray]], path: str | os.PathLike, *, col_titles: Sequence[str],
                 row_labels: Sequence[str], title: str = "", dpi: int = 120) -> Path:
    """A grid of images, ``rows[r][c]`` a (C, H, W) array in [0, 1] (C = 1 or 3), drawn pixel
    for pixel (no interpolation, no ticks: pixels have no axis units): each column titled
    (e.g. with its class name), each row labelled on the left; PNG written atomically.

    Example:
        >>> import tempfile
        >>> tiles = [[np.zeros((3, 4, 4)), np.ones((3, 4, 4))]]
        >>> path = image_figure(tiles, Path(tempfile.mkdtemp()) / "g.png", col_titles=["cat", "dog"],
        ...                     row_labels=["x"])
        >>> path.read_bytes()[:4] == b"\\x89PNG"
        True
    """
    ncols, nrows = len(col_titles), len(rows)
    if nrows == 0 or ncols == 0:
        raise ValueError("nothing to plot: no images")
    if len(row_labels) != nrows or any(len(row) != ncols for row in rows):
        raise ValueError(f"{nrows} rows of {[len(row) for row in rows]} images for {len(row_labels)} row labels "
                         f"and {ncols} column titles")
    fig, axes = _figure(nrows, ncols, 1.15, 1.3)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            ax = axes[r * ncols + c]
            pixels = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0).transpose(1, 2, 0)
            gray = pixels.shape[-1] == 1
            ax.imshow(pixels[..., 0] if gray else pixels, cmap="gray" if gray else None, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path, dpi)
