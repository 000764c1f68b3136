"""Figures 1 and 4 of UIAT: accuracy of the small-/large-loss halves of the test set under PGD
(eps > 0) and inverse PGD (eps < 0) of increasing strength.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    >>> x = torch.randint(0, 256, (6, 3, 2, 2), dtype=torch.uint8)
    >>> r = accuracy_vs_strength(net, x, torch.tensor([0, 1, 2, 0, 1, 2]), eps_grid(4 / 255, 3), steps=1)
    >>> r["eps"][1], r["n_small"], r["n_large"]
    (0.0, 3, 3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from robustrain.artifacts import load_model
from robustrain.attacks import pgd
from robustrain.data import to_unit_float
from robustrain.eval.figures._common import (
    ANALYSES,
    EPS_HELP,
    EVAL_ARGS,
    arg,
    checkpoint_paths,
    device_from,
    eps_grid,
    load_test_images,
    model_label,
    common_dir,
    output_base,
    parse_eps,
    pct,
    show_progress,
    write_series,
)
from robustrain.eval.plots import Line, Panel, line_figure, require_matplotlib
from robustrain.utils.runtime import fp32_eval

__all__ = ["accuracy_vs_strength", "strength_figure"]


def _batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device):
    for start in range(0, images.shape[0], batch_size):
        x = to_unit_float(images[start : start + batch_size].to(device))
        yield x, labels[start : start + batch_size].to(device)


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
    n = images.shape[0]
    if n < 2 or labels.shape[0] != n:
        raise ValueError(f"need at least 2 images with one label each, got {n} images and {labels.shape[0]} labels")
    device = next(model.parameters()).device
    rows: dict[str, list[float]] = {"all": [], "small_loss": [], "large_loss": []}
    with fp32_eval(model):
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
    arg("checkpoints", nargs="+", metavar="CHECKPOINT",
         help="best.pt / last.pt (or a run folder: its best.pt); several = one panel each, e.g. UIAT and TRADES"),
    arg("--points", type=int, default=9, help="radii on the grid, odd (default: %(default)s: -8..8 in steps of 2/255)"),
    arg("--eps-max", default="8/255", help=f"largest radius (default: %(default)s); {EPS_HELP}"),
    arg("--steps", type=int, default=20, help="PGD steps per radius (default: %(default)s)"),
    arg("--alpha", default=None, help="PGD step size (default: |eps|/4, 2/255 at 8/255)"),
    *EVAL_ARGS,
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
    require_matplotlib()
    paths = checkpoint_paths(checkpoints)
    grid = eps_grid(parse_eps(eps_max, "--eps-max"), points)
    step = None if alpha is None else parse_eps(alpha, "--alpha")
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    dev = device_from(device)
    models = []
    for path in paths:
        loaded = load_model(path, dev)
        x, y = load_test_images(loaded, n, data_root)
        res = accuracy_vs_strength(loaded.model, x, y, grid, steps=steps, alpha=step, batch_size=batch_size,
                                   seed=seed, progress=show_progress(progress))
        models.append({"checkpoint": str(path), "label": model_label(path, loaded.meta["method"]),
                       "dataset": loaded.dataset, "weights": loaded.weights, "n": int(x.shape[0]),
                       "n_small": res["n_small"], "n_large": res["n_large"],
                       "accuracy": {k: res[k] for k in ("all", "small_loss", "large_loss")},
                       "gap_at_eps_max": res["small_loss"][-1] - res["large_loss"][-1]})
    series = {"analysis": "strength", "eps": grid, "eps_255": [e * 255 for e in grid], "steps": steps,
              "alpha": "|eps|/4" if step is None else step, "ranking": "natural cross-entropy loss, ascending",
              "models": models}
    base = output_base(out, common_dir([p.parent for p in paths]), "strength")
    x255 = series["eps_255"]
    panels = [Panel([Line(f"small-loss half ({m['n_small']})", x255, pct(m["accuracy"]["small_loss"])),
                     Line(f"large-loss half ({m['n_large']})", x255, pct(m["accuracy"]["large_loss"])),
                     Line("all", x255, pct(m["accuracy"]["all"]), marker="", linestyle="--")],
                    title=m["label"], xlabel="eps (x 1/255); < 0: inverse perturbation", ylabel="accuracy (%)",
                    vlines=(0.0,),
                    note=f"gap at {x255[-1]:g}/255: {100 * m['gap_at_eps_max']:.1f} points")
              for m in models]
    png = line_figure(panels, base.with_suffix(".png"), title=f"accuracy vs attack strength (PGD-{steps})")
    return [png, write_series(base.with_suffix(".json"), series)]
