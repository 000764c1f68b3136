"""What the figure analyses share: the registry, command-line metadata (:class:`Arg`), output
paths (:func:`output_base`), the signed eps grid (:func:`eps_grid`), argument parsing
(radii, devices, progress), checkpoint-file resolution and test-image loading.

Example:
    >>> [round(e * 255, 6) for e in eps_grid(8 / 255, 5)]
    [-8.0, -4.0, 0.0, 4.0, 8.0]
    >>> output_base("figs/lam.png", "runs", "tradeoff").as_posix(), output_base(None, "runs", "tradeoff").as_posix()
    ('figs/lam', 'runs/tradeoff')
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from robustrain.artifacts import LoadedModel, checkpoint_file, eval_data
from robustrain.data import load_eval_split
from robustrain.eval.plots import pct  # noqa: F401  (re-exported for the figure modules)
from robustrain.utils.fileio import write_atomic
from robustrain.utils.registry import Registry
from robustrain.utils.runtime import resolve_device
from robustrain.utils.units import parse_number

__all__ = ["ANALYSES", "Analysis", "Arg", "analysis_description", "eps_grid", "output_base"]

Analysis = Callable[..., list[Path]]
ANALYSES: Registry[Analysis] = Registry("analysis")


# ------------------------------------------------------------------ command-line metadata
@dataclass(frozen=True)
class Arg:
    """One command-line argument of an analysis: ``argparse.add_argument(*flags, **options)``.
    ``dest`` is the keyword the analysis function receives."""

    flags: tuple[str, ...]
    options: Mapping[str, Any]

    @property
    def dest(self) -> str:
        return self.options.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


def analysis_description(name: str) -> str:
    """The ``--help`` text of an analysis: its function's docstring up to ``Args:``."""
    doc = (ANALYSES.get(name).__doc__ or "").strip()
    return doc.split("\n    Args:")[0].replace("\n    ", "\n").strip()


EPS_HELP = "radii are pixel units of [0,1] images, written like 8/255 or 0.0314"
EVAL_ARGS = (
    arg("--n", type=int, default=1000, help="use the first N test images (default: %(default)s)"),
    arg("--batch-size", type=int, default=256, help="batch size (default: %(default)s)"),
    arg("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)"),
    arg("--seed", type=int, default=0, help="seed of the attacks' random starts (default: %(default)s)"),
    arg("--data-root", default=None, help="dataset folder if it moved since training"),
    arg("--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar (default: when stderr is a terminal)"),
)


# ------------------------------------------------------------------ output paths
#: the folder, beside several runs, that receives analyses of them
FIGURES_DIR = "figures"


def output_base(out: str | os.PathLike | None, default_dir: str | os.PathLike, stem: str) -> Path:
    """The path, without suffix, of an analysis' files (see :mod:`robustrain.eval.figures`)."""
    if out is None:
        return Path(default_dir) / stem
    out = Path(out)
    return out.with_suffix("") if out.suffix in (".png", ".json", ".md") else out / stem


def common_dir(paths: Sequence[Path]) -> Path:
    """One path: itself; several: ``figures/`` in their common parent folder (relative when under
    the cwd). Not the parent itself: a later ``'runs/sweep/*'`` glob would pick the analysis'
    files up as if they were runs (issue 23)."""
    if len(paths) == 1:
        return paths[0]
    common = os.path.commonpath([os.path.abspath(p) for p in paths])
    rel = os.path.relpath(common)
    return (Path(rel) if not rel.startswith("..") else Path(common)) / FIGURES_DIR


def write_series(path: Path, data: Any) -> Path:
    """The plotted series as indented JSON (NaN refused), written atomically."""
    return write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


# ------------------------------------------------------------------ arguments
def eps_grid(eps_max: float, points: int) -> list[float]:
    """``points`` radii from -eps_max to eps_max, evenly spaced, 0 in the middle; the negative
    half is the exact negation of the positive half. ``points`` must be odd and >= 3."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 3 or points % 2 == 0:
        raise ValueError(f"--points must be an odd number >= 3 (so eps = 0 is on the grid), got {points!r}")
    if not (math.isfinite(eps_max) and eps_max > 0):
        raise ValueError(f"--eps-max must be a positive radius such as 8/255, got {eps_max!r}")
    half = points // 2
    pos = [eps_max * k / half for k in range(1, half + 1)]
    return [-e for e in reversed(pos)] + [0.0] + pos


def parse_eps(value: float | str, name: str) -> float:
    """A positive finite radius from a number or a string such as ``8/255``."""
    eps = parse_number(value, name)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{name} must be a positive radius such as 8/255, got {value!r}")
    return eps


def show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def device_from(name: str) -> torch.device:
    """``--device``: auto, cpu, cuda or cuda:N."""
    try:
        return resolve_device(name, key="--device")
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None


# ------------------------------------------------------------------ checkpoints and test images
def checkpoint_paths(checkpoints: Sequence[str | Path] | str | Path) -> list[Path]:
    """Checkpoint files as given, run folders resolved to best.pt (last.pt without one)."""
    items = [checkpoints] if isinstance(checkpoints, (str, Path)) else checkpoints
    return [checkpoint_file(c) for c in items]


def model_label(path: Path, method: str) -> str:
    run = path.parent.name
    return method if run == method else f"{method} ({run})"


def load_test_images(loaded: LoadedModel, n: int, root: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` (>= 2) test images (uint8) and labels of the data ``loaded`` was trained on
    (its saved config's test data, :func:`robustrain.artifacts.eval_data`; ``root``: ``--data-root``,
    the folder moved). On a streaming dataset only these ``n`` images are decoded."""
    if n < 2:
        raise ValueError(f"--n must be at least 2, got {n}")
    x, y, _ = load_eval_split(eval_data(loaded, data_root=root), n)
    return x, y
