"""Analyses behind the UIAT paper's figures (Dong et al., "The Enemy of My Enemy is My Friend:
Exploring Inverse Adversaries for Improving Adversarial Training", CVPR 2023,
arXiv:2211.00525), as functions that write files.

==============  =======================  ==================================================
kind            inputs                   what it writes
==============  =======================  ==================================================
strength        checkpoint(s)            Figures 1/4: accuracy of the small-/large-loss
                                         halves under PGD (eps > 0) and inverse PGD (eps < 0)
curves          run folder(s)            Figure 2: train/test natural and robust accuracy
                                         per epoch (robust overfitting)
tradeoff        run folders (a sweep)    Figure 3: natural vs robust accuracy per run
aa-diff         two checkpoints          Figure 5: AutoAttack accuracy A - B across eps
perturbations   run folder               Figure 6: the universal inverse perturbations z_c
sensitivity     run folders (sweeps)     Figure 7: natural and robust accuracy vs each
                                         swept hyper-parameter
timing          run folders              Table 2: seconds per training epoch per method
==============  =======================  ==================================================

Registry ``ANALYSES``: each entry is ``analysis(inputs..., out=None, **options) -> list[Path]``;
it writes a PNG (matplotlib, the ``plot`` extra; ``perturbations`` needs none) and a JSON file
with exactly the plotted series (accuracies as fractions in [0, 1]; the figures show %),
and returns the paths written. Its registry metadata ``args`` lists its command-line
arguments (:class:`Arg`), from which ``robustrain analyze KIND`` is built.

Output paths (:func:`output_base`): ``out`` ending in ``.png``, ``.json`` or ``.md`` names the
files (that suffix replaced for each); any other ``out`` is a folder receiving ``KIND.png``,
``KIND.json`` ...; the default is the run folder of one run or checkpoint, else the common
parent folder of the inputs. Every file is written atomically.

Example:
    >>> [round(e * 255, 6) for e in eps_grid(8 / 255, 5)]
    [-8.0, -4.0, 0.0, 4.0, 8.0]
    >>> output_base("figs/lam.png", "runs", "tradeoff").as_posix(), output_base(None, "runs", "tradeoff").as_posix()
    ('figs/lam', 'runs/tradeoff')
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.eval.runs import RunInfo, base_values, final_accuracy, load_runs, robust_metric, swept_params
from robustrain.utils.fileio import write_atomic
from robustrain.utils.registry import Registry

__all__ = [
    "ANALYSES",
    "Arg",
    "analysis_description",
    "output_base",
    "eps_grid",
    "accuracy_vs_strength",
    "strength_figure",
    "run_curves",
    "curves_figure",
    "sweep_points",
    "sensitivity_series",
    "tradeoff_figure",
    "sensitivity_figure",
    "aa_diff_figure",
    "epoch_timing",
    "timing_table",
    "timing_figure",
    "universal_perturbations",
    "perturbation_figure",
]

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


def _arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


def analysis_description(name: str) -> str:
    """The ``--help`` text of an analysis: its function's docstring up to ``Args:``."""
    doc = (ANALYSES.get(name).__doc__ or "").strip()
    return doc.split("\n    Args:")[0].replace("\n    ", "\n").strip()


_EPS_HELP = "radii are pixel units of [0,1] images, written like 8/255 or 0.0314"
_EVAL_ARGS = (
    _arg("--n", type=int, default=1000, help="use the first N test images (default: %(default)s)"),
    _arg("--batch-size", type=int, default=256, help="batch size (default: %(default)s)"),
    _arg("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)"),
    _arg("--seed", type=int, default=0, help="seed of the attacks' random starts (default: %(default)s)"),
    _arg("--data-root", default=None, help="dataset folder if it moved since training"),
    _arg("--progress", action=argparse.BooleanOptionalAction, default=None,
         help="progress bar (default: when stderr is a terminal)"),
)
_SWEEP_ARGS = (
    _arg("runs", nargs="+", metavar="RUN", help="run folders of the sweep (or a quoted glob, e.g. 'runs/lam/*')"),
    _arg("--param", action="append", default=None, metavar="KEY",
         help="swept config key, e.g. method.lam (repeatable; default: every key whose value differs "
              "between the runs, ignoring names, seeds, eval and guard settings)"),
    _arg("--metric", default=None,
         help="robust column of summary.json (or of a later `robustrain eval`) to plot "
              "(default: the first of aa, aa-plus, pgd20, cw30 that every run has)"),
)


# ------------------------------------------------------------------ shared helpers
def output_base(out: str | os.PathLike | None, default_dir: str | os.PathLike, stem: str) -> Path:
    """The path, without suffix, of an analysis' files (see the module docstring)."""
    if out is None:
        return Path(default_dir) / stem
    out = Path(out)
    return out.with_suffix("") if out.suffix in (".png", ".json", ".md") else out / stem


def _common_dir(paths: Sequence[Path]) -> Path:
    """One path: itself; several: their common parent folder (relative when under the cwd)."""
    if len(paths) == 1:
        return paths[0]
    common = os.path.commonpath([os.path.abspath(p) for p in paths])
    rel = os.path.relpath(common)
    return Path(rel) if not rel.startswith("..") else Path(common)


def _write_json(path: Path, data: Any) -> Path:
    return write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _parse_eps(value: float | str, name: str) -> float:
    from robustrain.config import parse_float

    eps = parse_float(value, name)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{name} must be a positive radius such as 8/255, got {value!r}")
    return eps


def _progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _device(name: str) -> torch.device:
    from robustrain.train.trainer import resolve_device

    try:
        return resolve_device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None


def _checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's best.pt (its last.pt without one)."""
    path = Path(path)
    if path.is_dir():
        return path / "best.pt" if (path / "best.pt").is_file() else path / "last.pt"
    return path


def _model_label(path: Path, method: str) -> str:
    run = path.parent.name
    return method if run == method else f"{method} ({run})"


def _test_images(dataset: str, n: int, root: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    from robustrain.data import load_split

    if n < 2:
        raise ValueError(f"--n must be at least 2, got {n}")
    x, y = load_split(dataset, "test", root=root)
    return x[:n], y[:n]


def _pct(values: Sequence[float]) -> list[float]:
    return [100 * v for v in values]


# ------------------------------------------------------------------ strength (Figures 1, 4)
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


def _batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device):
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        yield x, labels[start : start + batch_size].to(device)


@contextlib.contextmanager
def _eval_fp32(model: nn.Module):
    """Eval mode and no autocast (evaluation is fp32, DESIGN.md), the mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        model.train(was_training)


def accuracy_vs_strength(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: Sequence[float],
    *,
    steps: int = 20,
    alpha: float | None = None,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy of the small-loss and large-loss halves of a test set under attacks of each
    strength (UIAT Figure 1/4).

    The examples are ranked by their natural cross-entropy loss (ascending, ties by index)
    and split into two halves (the small-loss half gets ``n // 2``). For eps > 0 the inputs
    are Linf PGD adversarial examples of radius eps, for eps < 0 inverse adversarial
    examples of radius |eps| (the same PGD descending the loss, ``descend=True``), for
    eps = 0 the natural inputs. Evaluation is fp32 in eval mode.

    Args:
        model: a [0,1]-input classifier.
        images: uint8 (N, C, H, W) in 0..255 or float in [0, 1]; N >= 2.
        labels: int64 (N,).
        eps: the signed radii (e.g. :func:`eps_grid`).
        steps: PGD steps (default 20).
        alpha: step size; default |eps| / 4 (2/255 at 8/255, the protocol's ratio).
        batch_size: batch size.
        seed: seeds the uniform random starts (a private generator per eps).
        progress: progress bar over the radii.

    Returns:
        ``{"eps": [...], "all": [...], "small_loss": [...], "large_loss": [...],
        "n_small": int, "n_large": int}``, accuracies in [0, 1], one per radius.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.rand(8, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
        >>> r = accuracy_vs_strength(net, x, y, [-4 / 255, 0.0, 4 / 255], steps=2)
        >>> len(r["all"]), r["n_small"] + r["n_large"]
        (3, 8)
    """
    from tqdm.auto import tqdm

    from robustrain.attacks import pgd

    n = images.shape[0]
    if n < 2 or labels.shape[0] != n:
        raise ValueError(f"need at least 2 images with one label each, got {n} images and {labels.shape[0]} labels")
    device = next(model.parameters()).device
    rows: dict[str, list[float]] = {"all": [], "small_loss": [], "large_loss": []}
    with _eval_fp32(model):
        with torch.no_grad():
            losses = torch.cat([F.cross_entropy(model(x), y, reduction="none")
                                for x, y in _batches(images, labels, batch_size, device)])
        order = torch.argsort(losses, stable=True)
        small, large = order[: n // 2], order[n // 2 :]
        for e in tqdm(list(eps), desc="strength", leave=False, disable=not progress, unit="eps"):
            gen = torch.Generator(device=device).manual_seed(seed)
            correct = []
            for x, y in _batches(images, labels, batch_size, device):
                if e != 0:
                    x = pgd(model, x, y, eps=abs(e), alpha=abs(e) / 4 if alpha is None else alpha, steps=steps,
                            descend=e < 0, generator=gen)
                with torch.no_grad():
                    correct.append(model(x).argmax(1) == y)
            c = torch.cat(correct).float()
            for key, idx in (("all", order), ("small_loss", small), ("large_loss", large)):
                rows[key].append(c[idx].mean().item())
    return {"eps": [float(e) for e in eps], **rows, "n_small": len(small), "n_large": len(large)}


@ANALYSES.register("strength", help="Figures 1, 4: accuracy of the small-/large-loss halves vs PGD (eps>0) "
                                    "and inverse PGD (eps<0) strength", args=(
    _arg("checkpoints", nargs="+", metavar="CHECKPOINT",
         help="best.pt / last.pt (or a run folder: its best.pt); several = one panel each, e.g. UIAT and TRADES"),
    _arg("--points", type=int, default=9, help="radii on the grid, odd (default: %(default)s: -8..8 in steps of 2/255)"),
    _arg("--eps-max", default="8/255", help=f"largest radius (default: %(default)s); {_EPS_HELP}"),
    _arg("--steps", type=int, default=20, help="PGD steps per radius (default: %(default)s)"),
    _arg("--alpha", default=None, help="PGD step size (default: |eps|/4, 2/255 at 8/255)"),
    *_EVAL_ARGS,
))
def strength_figure(checkpoints: Sequence[str | Path] | str | Path, out: str | Path | None = None, *,
                    points: int = 9, eps_max: float | str = 8 / 255, steps: int = 20,
                    alpha: float | str | None = None, n: int = 1000, batch_size: int = 256,
                    device: str = "auto", seed: int = 0, data_root: str | None = None,
                    progress: bool | None = None) -> list[Path]:
    """Accuracy under attacks of increasing strength for the two halves of the test set
    ranked by natural loss (UIAT Figures 1 and 4). Negative eps are inverse perturbations
    (PGD descending the loss), eps = 0 is natural accuracy, positive eps are PGD-`steps`
    adversarial examples. The note in each panel is the small-minus-large gap at eps-max
    (the gap UIAT narrows, Figure 4). Writes strength.png and strength.json (per model: the
    eps grid and the accuracy of all / small-loss / large-loss examples).

    Args:
        checkpoints: one or more checkpoints (or run folders).
        out: output folder or file (default: the first checkpoint's folder).
        points, eps_max: the grid :func:`eps_grid`.
        steps, alpha: PGD steps and step size (default |eps| / 4).
        n: first n test images.
        batch_size, device, seed, data_root, progress: as in ``robustrain eval``.
    """
    from robustrain.eval.loading import load_model
    from robustrain.eval.plots import Line, Panel, line_figure, require_matplotlib

    require_matplotlib()
    paths = [_checkpoint_file(c) for c in ([checkpoints] if isinstance(checkpoints, (str, Path)) else checkpoints)]
    grid = eps_grid(_parse_eps(eps_max, "--eps-max"), points)
    step = None if alpha is None else _parse_eps(alpha, "--alpha")
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    dev = _device(device)
    models = []
    for path in paths:
        loaded = load_model(path, dev)
        x, y = _test_images(loaded.dataset, n, data_root or loaded.config.data.root)
        res = accuracy_vs_strength(loaded.model, x, y, grid, steps=steps, alpha=step, batch_size=batch_size,
                                   seed=seed, progress=_progress(progress))
        models.append({"checkpoint": str(path), "label": _model_label(path, loaded.meta["method"]),
                       "dataset": loaded.dataset, "weights": loaded.weights, "n": int(x.shape[0]),
                       "n_small": res["n_small"], "n_large": res["n_large"],
                       "accuracy": {k: res[k] for k in ("all", "small_loss", "large_loss")},
                       "gap_at_eps_max": res["small_loss"][-1] - res["large_loss"][-1]})
    series = {"analysis": "strength", "eps": grid, "eps_255": [e * 255 for e in grid], "steps": steps,
              "alpha": "|eps|/4" if step is None else step, "ranking": "natural cross-entropy loss, ascending",
              "models": models}
    base = output_base(out, paths[0].parent, "strength")
    x255 = series["eps_255"]
    panels = [Panel([Line(f"small-loss half ({m['n_small']})", x255, _pct(m["accuracy"]["small_loss"])),
                     Line(f"large-loss half ({m['n_large']})", x255, _pct(m["accuracy"]["large_loss"])),
                     Line("all", x255, _pct(m["accuracy"]["all"]), marker="", linestyle="--")],
                    title=m["label"], xlabel="eps (x 1/255); < 0: inverse perturbation", ylabel="accuracy (%)",
                    vlines=(0.0,),
                    note=f"gap at {x255[-1]:g}/255: {100 * m['gap_at_eps_max']:.1f} points")
              for m in models]
    png = line_figure(panels, base.with_suffix(".png"), title=f"accuracy vs attack strength (PGD-{steps})")
    return [png, _write_json(base.with_suffix(".json"), series)]


# ------------------------------------------------------------------ curves (Figure 2)
_TRAIN_LABELS = {
    "acc": "train: training inputs",
    "acc_nat": "train: natural",
    "acc_adv": "train: adversarial (training attack)",
    "acc_target": "train: inverse adversarial",
}


def run_curves(run: RunInfo) -> dict[str, Any]:
    """Per-epoch accuracy series of one run from its ``metrics.jsonl``: the training-set
    accuracies the method logged (``train.acc*``), the guard's PGD accuracy on a fixed
    training batch (``guard.*``) and the held-out evaluation (``eval.natural``,
    ``eval.<attack>``). ``train.acc`` is left out when it repeats another train series.
    A later record of the same epoch (a resumed run) replaces an earlier one.

    Returns:
        ``{"run", "label", "best_epoch", "series": {key: {"label", "epoch": [...], "acc": [...]}}}``.
    """
    per_key: dict[str, dict[int, float]] = {}
    labels: dict[str, str] = {}
    best_epoch = None
    for rec in run.metrics:
        epoch = rec.get("epoch")
        if not isinstance(epoch, int):
            continue
        groups = (("train", {k: v for k, v in rec.get("train", {}).items() if k == "acc" or k.startswith("acc_")},
                   lambda k: _TRAIN_LABELS.get(k, f"train: {k}")),
                  ("guard", {k: v for k, v in rec.get("guard", {}).items() if k != "best"},
                   lambda k: f"train: {k} (guard batch)"),
                  ("eval", rec.get("eval", {}), lambda k: f"test: {k}"))
        for group, values, label in groups:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    per_key.setdefault(f"{group}.{k}", {})[epoch] = float(v)
                    labels[f"{group}.{k}"] = label(k)
        best_epoch = rec.get("best", {}).get("epoch", best_epoch)
    series = {k: {"label": labels[k], "epoch": sorted(v), "acc": [v[e] for e in sorted(v)]} for k, v in per_key.items()}
    acc = series.get("train.acc")
    if acc is not None and any((v["epoch"], v["acc"]) == (acc["epoch"], acc["acc"])
                               for k, v in series.items() if k.startswith("train.acc_")):
        del series["train.acc"]
    return {"run": str(run.path), "label": run.label, "best_epoch": best_epoch, "series": series}


@ANALYSES.register("curves", help="Figure 2: train/test natural and robust accuracy per epoch (robust overfitting)",
                   args=(_arg("runs", nargs="+", metavar="RUN", help="run folders (one panel each)"),))
def curves_figure(runs: Sequence[str | Path] | str | Path, out: str | Path | None = None) -> list[Path]:
    """Learning curves (UIAT Figure 2): per epoch, the training accuracies the method logged
    (dashed: on its training inputs, e.g. adversarial; natural when logged; PGD on the
    guard's fixed training batch when the guard is on) and the held-out test accuracies
    (solid: natural and the eval attack, on the run's eval.n test images). The red line
    marks the epoch of the best test robust accuracy (best.pt): a robust accuracy that falls
    after it is robust overfitting. Writes curves.png and curves.json (the series per run).

    Args:
        runs: run folders (globs allowed).
        out: output folder or file (default: the run folder; several runs: their parent).
    """
    from robustrain.eval.plots import Line, Panel, line_figure, require_matplotlib

    require_matplotlib()
    infos = load_runs([runs] if isinstance(runs, (str, Path)) else runs)
    data = [run_curves(r) for r in infos]
    for d in data:
        if not d["series"]:
            raise ValueError(f"{d['run']}: metrics.jsonl has no epoch records yet; train at least one epoch")
    panels = [Panel([Line(s["label"], s["epoch"], _pct(s["acc"]), marker="." if k.startswith("eval") else "",
                          linestyle="-" if k.startswith("eval") else "--")
                     for k, s in d["series"].items()],
                    title=d["label"], xlabel="epoch", ylabel="accuracy (%)", integer_x=True,
                    vlines=() if d["best_epoch"] is None else (d["best_epoch"],),
                    note="" if d["best_epoch"] is None else f"best test robust: epoch {d['best_epoch']}")
              for d in data]
    base = output_base(out, _common_dir([r.path for r in infos]), "curves")
    png = line_figure(panels, base.with_suffix(".png"), ncols=min(len(panels), 3))
    return [png, _write_json(base.with_suffix(".json"), {"analysis": "curves", "runs": data})]


# ------------------------------------------------------------------ sweeps (Figures 3, 7)
def sweep_points(runs: Sequence[RunInfo], params: Sequence[str] | None = None,
                 metric: str | None = None) -> dict[str, Any]:
    """Natural and robust final accuracy of each run with its swept hyper-parameter values.

    Args:
        runs: finished runs.
        params: config keys (``method.lam``); default :func:`robustrain.eval.runs.swept_params`.
        metric: robust column; default :func:`robustrain.eval.runs.robust_metric`.

    Returns:
        ``{"params": [...], "metric": str, "points": [{"run", "label", "params": {key: value},
        "natural", "robust"}]}``.

    Raises:
        ValueError: nothing swept, a key missing in a run, or no common robust column.
    """
    params = list(params) if params else swept_params(runs)
    if not params:
        raise ValueError("the runs' configs differ in no hyper-parameter (names, seeds, eval and guard "
                         "settings are ignored); pass --param KEY, e.g. --param method.lam")
    for k in params:
        for r in runs:
            if k not in r.config:
                raise ValueError(f"--param {k}: {r.path} has no such config key (keys look like method.lam, "
                                 "train.epochs; see the run's config.yaml)")
    accs = [final_accuracy(r) for r in runs]
    for r, a in zip(runs, accs):
        if "natural" not in a:
            raise ValueError(f"{r.path}: summary.json has no natural accuracy; evaluate it with "
                             "`robustrain eval CHECKPOINT --attacks natural,...`")
    metric = robust_metric(accs, metric)
    points = [{"run": str(r.path), "label": r.label, "params": {k: r.config[k] for k in params},
               "natural": a["natural"], "robust": a[metric]} for r, a in zip(runs, accs)]
    return {"params": params, "metric": metric, "points": points}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _short(key: str) -> str:
    return key.split(".")[-1]


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def sensitivity_series(runs: Sequence[RunInfo], params: Sequence[str] | None = None,
                       metric: str | None = None) -> dict[str, Any]:
    """One series per swept key (UIAT Figure 7): the runs whose OTHER swept keys sit at their
    most common value (the centre of one-at-a-time sweeps), ordered by the key's value
    (numbers ascending; other values in the given order).

    Returns:
        ``{"metric": str, "params": {key: {"values", "labels", "runs", "natural", "robust"}}}``.
    """
    sweep = sweep_points(runs, params, metric)
    keys = sweep["params"]
    centre = base_values(runs, keys)
    out: dict[str, Any] = {}
    for k in keys:
        chosen = [(r, p) for r, p in zip(runs, sweep["points"])
                  if all(p["params"][o] == centre[o] for o in keys if o != k)]
        if all(_is_number(p["params"][k]) for _, p in chosen):
            chosen.sort(key=lambda rp: rp[1]["params"][k])
        out[k] = {"values": [p["params"][k] for _, p in chosen], "labels": [r.label for r, _ in chosen],
                  "runs": [p["run"] for _, p in chosen], "natural": [p["natural"] for _, p in chosen],
                  "robust": [p["robust"] for _, p in chosen]}
    return {"metric": sweep["metric"], "params": out}


def _infos(runs: Sequence[str | Path] | str | Path) -> list[RunInfo]:
    infos = load_runs([runs] if isinstance(runs, (str, Path)) else runs, finished=True)
    if len(infos) < 2:
        raise ValueError("a sweep needs at least two run folders")
    return infos


@ANALYSES.register("tradeoff", help="Figure 3: natural vs robust accuracy of a sweep of runs, labelled by "
                                    "the swept hyper-parameter(s)", args=_SWEEP_ARGS)
def tradeoff_figure(runs: Sequence[str | Path] | str | Path, out: str | Path | None = None, *,
                    param: Sequence[str] | str | None = None, metric: str | None = None) -> list[Path]:
    """Natural-robust trade-off of a hyper-parameter sweep (UIAT Figure 3, lambda): one point
    per finished run at (natural, robust) final accuracy from summary.json, labelled with its
    swept value(s); with one numeric swept key the points are joined in its order. The swept
    keys are the config keys whose values differ between the runs, unless --param names
    them. Writes tradeoff.png and tradeoff.json (params, metric, one point per run).

    Args:
        runs: finished run folders (globs allowed).
        out: output folder or file (default: the runs' common parent folder).
        param: swept key(s); default: detected.
        metric: robust column; default: aa, aa-plus, pgd20 or cw30, the first all runs have.
    """
    from robustrain.eval.plots import Line, Panel, line_figure, require_matplotlib

    require_matplotlib()
    infos = _infos(runs)
    sweep = sweep_points(infos, [param] if isinstance(param, str) else param, metric)
    keys, pts = sweep["params"], list(sweep["points"])
    if len(keys) == 1 and all(_is_number(p["params"][keys[0]]) for p in pts):
        pts.sort(key=lambda p: p["params"][keys[0]])
        style = "-"
    else:
        style = ""
    text = [", ".join(f"{_short(k)}={_fmt_value(p['params'][k])}" for k in keys) for p in pts]
    panel = Panel([Line("", _pct([p["natural"] for p in pts]), _pct([p["robust"] for p in pts]), linestyle=style,
                        point_labels=text)],
                  title=f"swept: {', '.join(keys)}", xlabel="natural accuracy (%)",
                  ylabel=f"robust accuracy, {sweep['metric']} (%)")
    base = output_base(out, _common_dir([r.path for r in infos]), "tradeoff")
    png = line_figure([panel], base.with_suffix(".png"))
    return [png, _write_json(base.with_suffix(".json"), {"analysis": "tradeoff", **sweep})]


@ANALYSES.register("sensitivity", help="Figure 7: natural and robust accuracy vs each swept hyper-parameter "
                                       "(beta, gamma, T, T', ...)", args=_SWEEP_ARGS)
def sensitivity_figure(runs: Sequence[str | Path] | str | Path, out: str | Path | None = None, *,
                       param: Sequence[str] | str | None = None, metric: str | None = None) -> list[Path]:
    """Hyper-parameter sensitivity (UIAT Figure 7): one panel per swept key with the natural
    and robust final accuracy against its value. For several keys (the union of one-at-a-
    time sweeps of, e.g., method.beta and method.gamma around a shared default run) each
    panel uses the runs whose other keys sit at their most common value. Non-numeric values
    (method names) become categories. Writes sensitivity.png and sensitivity.json.

    Args:
        runs: finished run folders (globs allowed).
        out: output folder or file (default: the runs' common parent folder).
        param: swept key(s); default: detected.
        metric: robust column; default: aa, aa-plus, pgd20 or cw30, the first all runs have.
    """
    from robustrain.eval.plots import Line, Panel, line_figure, require_matplotlib

    require_matplotlib()
    infos = _infos(runs)
    data = sensitivity_series(infos, [param] if isinstance(param, str) else param, metric)
    panels = []
    for key, s in data["params"].items():
        numeric = all(_is_number(v) for v in s["values"])
        if numeric:
            xs, ticks, names = s["values"], None, None
        else:
            xs = list(range(len(s["values"])))
            distinct = len(set(map(str, s["values"]))) == len(s["values"])
            ticks, names = xs, [str(v) for v in s["values"]] if distinct else s["labels"]
        style = "-" if numeric else ""  # categories are not a continuum: no joining lines
        panels.append(Panel([Line("natural", xs, _pct(s["natural"]), linestyle=style),
                             Line(f"robust ({data['metric']})", xs, _pct(s["robust"]), linestyle=style)],
                            title=key, xlabel=key, ylabel="accuracy (%)", xticks=ticks, xticklabels=names))
    base = output_base(out, _common_dir([r.path for r in infos]), "sensitivity")
    png = line_figure(panels, base.with_suffix(".png"))
    return [png, _write_json(base.with_suffix(".json"), {"analysis": "sensitivity", **data})]


# ------------------------------------------------------------------ aa-diff (Figure 5)
@ANALYSES.register("aa-diff", help="Figure 5: AutoAttack accuracy of checkpoint A minus B across eps", args=(
    _arg("checkpoint_a", metavar="A", help="checkpoint (or run folder: its best.pt), e.g. the UIAT one-off run"),
    _arg("checkpoint_b", metavar="B", help="checkpoint (or run folder) to compare against, e.g. TRADES"),
    _arg("--attack", default="aa", help="attack name of `robustrain eval --attacks` (default: %(default)s; "
                                        "a cheaper AutoAttack variant or pgd20 for a quick look)"),
    _arg("--eps", default="2/255,4/255,8/255,12/255,16/255",
         help=f"comma-separated radii (default: %(default)s); {_EPS_HELP}"),
    _arg("--reference", default="8/255", help="radius marked by the red line, the training eps (default: %(default)s)"),
    *_EVAL_ARGS,
))
def aa_diff_figure(checkpoint_a: str | Path, checkpoint_b: str | Path, out: str | Path | None = None, *,
                   attack: str = "aa", eps: str | Sequence[float] = "2/255,4/255,8/255,12/255,16/255",
                   reference: float | str = 8 / 255, n: int = 1000, batch_size: int = 256, device: str = "auto",
                   seed: int = 0, data_root: str | None = None, progress: bool | None = None) -> list[Path]:
    """Robust accuracy of two checkpoints under one attack (AutoAttack by default) at several
    radii, and its difference A - B (UIAT Figure 5: one-off UIAT minus TRADES, better at
    small eps, worse beyond the training eps 8/255). Both are evaluated on the same first n
    test images with the same seed. Writes aa-diff.png (accuracies; difference with red
    reference lines at 0 and at the training eps) and aa-diff.json.

    Args:
        checkpoint_a, checkpoint_b: checkpoints (or run folders) of the same dataset.
        out: output folder or file (default: the two runs' common parent folder).
        attack: an attack name of ``robustrain eval`` (default ``aa``).
        eps: radii, comma-separated string or a sequence of floats.
        reference: the radius of the red vertical line.
        n, batch_size, device, seed, data_root, progress: as in ``robustrain eval``.
    """
    from tqdm.auto import tqdm

    from robustrain.eval.loading import load_model
    from robustrain.eval.plots import Line, Panel, line_figure, require_matplotlib
    from robustrain.eval.robust import evaluate_attacks

    require_matplotlib()
    radii = [_parse_eps(e.strip(), "--eps") for e in eps.split(",") if e.strip()] if isinstance(eps, str) \
        else [_parse_eps(e, "--eps") for e in eps]
    if not radii:
        raise ValueError("--eps needs at least one radius, e.g. 4/255,8/255")
    ref = _parse_eps(reference, "--reference")
    dev = _device(device)
    paths = [_checkpoint_file(checkpoint_a), _checkpoint_file(checkpoint_b)]
    loaded = [load_model(p, dev) for p in paths]
    if loaded[0].dataset != loaded[1].dataset:
        raise ValueError(f"A was trained on {loaded[0].dataset} and B on {loaded[1].dataset}; compare "
                         "checkpoints of the same dataset")
    x, y = _test_images(loaded[0].dataset, n, data_root or loaded[0].config.data.root)
    bar = tqdm(total=2 * len(radii), desc=f"aa-diff {attack}", leave=False, disable=not _progress(progress))
    sides = []
    for path, lm in zip(paths, loaded):
        acc = []
        for e in radii:
            try:
                acc.append(evaluate_attacks(lm.model, x, y, [attack], eps=e, batch_size=batch_size, device=dev,
                                            seed=seed, progress=False)[attack])
            except KeyError as err:
                raise ValueError(f"--attack: {err.args[0]}") from None
            bar.update()
        sides.append({"checkpoint": str(path), "label": _model_label(path, lm.meta["method"]), "acc": acc})
    bar.close()
    diff = [a - b for a, b in zip(sides[0]["acc"], sides[1]["acc"])]
    series = {"analysis": "aa-diff", "attack": attack, "n": int(x.shape[0]), "dataset": loaded[0].dataset,
              "eps": radii, "eps_255": [e * 255 for e in radii], "a": sides[0], "b": sides[1], "diff": diff}
    x255 = series["eps_255"]
    panels = [Panel([Line(f"{tag}: {s['label']}", x255, _pct(s["acc"])) for tag, s in zip("AB", sides)],
                    title=f"{attack} accuracy", xlabel="eps (x 1/255)", ylabel="accuracy (%)", vlines=(ref * 255,)),
              Panel([Line("A - B", x255, _pct(diff))], title=f"{sides[0]['label']} - {sides[1]['label']}",
                    xlabel="eps (x 1/255)", ylabel="accuracy difference (points)", hlines=(0.0,),
                    vlines=(ref * 255,))]
    base = output_base(out, _common_dir([p.parent for p in paths]), "aa-diff")
    png = line_figure(panels, base.with_suffix(".png"))
    return [png, _write_json(base.with_suffix(".json"), series)]


# ------------------------------------------------------------------ timing (Table 2)
def epoch_timing(run: RunInfo) -> dict[str, Any]:
    """Training seconds per epoch of one run from ``metrics.jsonl`` (``epoch_time_s``: the
    training loop only, without the per-epoch evaluation). The mean leaves out the first
    epoch when there are more (it carries one-off warm-up costs); ``total_s`` sums all.

    Raises:
        ValueError: no epoch times logged.
    """
    times = {rec["epoch"]: float(rec["epoch_time_s"]) for rec in run.metrics
             if isinstance(rec.get("epoch"), int) and isinstance(rec.get("epoch_time_s"), (int, float))}
    if not times:
        raise ValueError(f"{run.path}: metrics.jsonl has no epoch_time_s records; train at least one epoch")
    seq = [times[e] for e in sorted(times)]
    kept = seq[1:] if len(seq) > 1 else seq
    return {"run": str(run.path), "label": run.label, "method": run.method,
            "model": run.config.get("model.name"), "dataset": run.config.get("data.name"),
            "batch_size": run.config.get("data.batch_size"), "epochs": len(seq),
            "mean_s": statistics.fmean(kept), "mean_excludes_first": len(seq) > 1, "total_s": sum(seq),
            "epoch_time_s": seq}


def timing_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of :func:`epoch_timing` rows (UIAT Table 2 reports min/epoch)."""
    lines = ["| run | model | dataset | epochs | s/epoch | min/epoch | total (s) |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['model']} | {r['dataset']} | {r['epochs']} | {r['mean_s']:.1f} | "
                     f"{r['mean_s'] / 60:.2f} | {r['total_s']:.1f} |")
    return "\n".join(lines)


@ANALYSES.register("timing", help="Table 2: training seconds per epoch per method (markdown, JSON, bar chart)",
                   args=(_arg("runs", nargs="+", metavar="RUN", help="run folders (or a quoted glob)"),))
def timing_figure(runs: Sequence[str | Path] | str | Path, out: str | Path | None = None) -> list[Path]:
    """Training cost per method (UIAT Table 2): mean training seconds per epoch (without the
    first epoch when there are more, and without the per-epoch evaluation) and the total,
    from each run's metrics.jsonl. Compare runs of one machine only. Writes timing.md
    (a table), timing.json (per run: every epoch's seconds, the mean, the total) and
    timing.png (mean s/epoch per run).

    Args:
        runs: run folders (globs allowed; unfinished runs count their epochs so far).
        out: output folder or file (default: the runs' common parent folder).
    """
    from robustrain.eval.plots import bar_figure, require_matplotlib

    require_matplotlib()
    infos = load_runs([runs] if isinstance(runs, (str, Path)) else runs)
    rows = [epoch_timing(r) for r in infos]
    base = output_base(out, _common_dir([r.path for r in infos]), "timing")
    note = ("s/epoch: mean training time per epoch (training loop only), leaving out the first epoch when a run "
            "has more than one; total: all epochs. Compare runs measured on the same machine.")
    md = write_atomic(base.with_suffix(".md"), f"# Training time per epoch\n\n{timing_table(rows)}\n\n{note}\n")
    js = _write_json(base.with_suffix(".json"), {"analysis": "timing", "runs": rows})
    png = bar_figure([r["label"] for r in rows], [r["mean_s"] for r in rows], base.with_suffix(".png"),
                     ylabel="seconds per epoch", title="training time per epoch")
    return [md, js, png]


# ------------------------------------------------------------------ perturbations (Figure 6)
def universal_perturbations(method_state: dict[str, torch.Tensor], num_classes: int,
                            image_shape: tuple[int, ...]) -> torch.Tensor:
    """The per-class universal inverse perturbations z (C, *image_shape) in a method's state.

    Raises:
        ValueError: the method keeps no such buffer (it is not a universal UIAT variant).
    """
    want = (num_classes, *image_shape)
    for key, value in method_state.items():
        if key.split(".")[-1] == "z" and tuple(value.shape) == want:
            return value.float()
    raise ValueError(
        "this run's method has no universal inverse perturbations (buffer z of shape "
        f"{want}); train uiat, uiat_oneoff or a <base>+uiat method"
    )


@ANALYSES.register("perturbations", help="Figure 6: the class-wise universal inverse perturbations z_c and x + z_c",
                   args=(_arg("run", help="a run folder (or a checkpoint file) of uiat, uiat_oneoff or <base>+uiat"),
                         _arg("--checkpoint", default="last.pt",
                              help="checkpoint of the run folder to read (default: %(default)s)"),
                         _arg("--scale", type=int, default=4, help="pixel repetition (default: %(default)s)")))
def perturbation_figure(run: str | Path, out: str | Path | None = None, *, checkpoint: str = "last.pt",
                        scale: int = 4) -> list[Path]:
    """The class-wise universal inverse perturbations of a UIAT run (UIAT Figure 6), one
    column per class (at most 20): row 1 z_c rescaled from [-max|z|, max|z|] to [0, 1] (grey
    = 0), row 2 the first test image of class c, row 3 that image plus z_c (clipped to
    [0, 1]). Needs no matplotlib. Writes perturbations.png and perturbations.json (the
    classes, max |z| and z itself, to 1e-6).

    Args:
        run: run folder (or a checkpoint file).
        out: output folder or file; default ``RUN/perturbations.png``.
        checkpoint: which checkpoint of the run folder to read.
        scale: pixel repetition so 32x32 tiles are visible.
    """
    from robustrain.config import config_from_dict
    from robustrain.data import get_dataset_info, load_split
    from robustrain.eval.images import image_grid, rescale_symmetric, write_png
    from robustrain.train.checkpoint import load_checkpoint

    run = Path(run)
    path = run if run.is_file() else run / checkpoint
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(ckpt["config"])
    info = get_dataset_info(cfg.data.name)
    z = universal_perturbations(ckpt["method"], info.num_classes, tuple(info.image_shape)).numpy()
    classes = list(range(min(info.num_classes, 20)))
    images, labels = load_split(cfg.data.name, "test", root=cfg.data.root)
    x = []
    for c in classes:
        hits = (labels == c).nonzero()
        x.append(images[int(hits[0])].float().numpy() / 255 if len(hits) else np.zeros(info.image_shape, np.float32))
    x = np.stack(x)
    zc = z[classes]
    tiles = np.concatenate([rescale_symmetric(zc), x, np.clip(x + zc, 0, 1)]).astype(np.float32)
    base = output_base(out, path.parent, "perturbations")
    png = base.with_suffix(".png")
    write_png(image_grid(tiles, ncols=len(classes)), png, scale=scale)
    series = {"analysis": "perturbations", "checkpoint": str(path), "epoch": ckpt.get("epoch"),
              "classes": classes, "max_abs_z": float(np.abs(zc).max()),
              "z": np.round(zc.astype(np.float64), 6).tolist()}  # 1e-6: far below one 8-bit pixel step
    return [png, _write_json(base.with_suffix(".json"), series)]
