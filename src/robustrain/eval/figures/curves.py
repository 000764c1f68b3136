"""Figure 2 of UIAT: per-epoch training and test accuracies of a run (robust overfitting)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from robustrain.eval.figures._common import ANALYSES, arg, common_dir, output_base, pct, write_series
from robustrain.eval.plots import Line, Panel, line_figure, require_matplotlib
from robustrain.eval.runs import RunInfo, load_runs

__all__ = ["run_curves", "curves_figure"]


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
                  # the guard's attack accuracy; not its best, nor its one-class shares (issue 19)
                  ("guard", {k: v for k, v in rec.get("guard", {}).items()
                             if k not in ("best", "majority", "val_majority")},
                   lambda k: f"train: {k} (guard batch)"),
                  # the held-out validation split that selects best.pt, never test images
                  ("eval", rec.get("eval", {}), lambda k: f"validation: {k}"))
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


@ANALYSES.register("curves", help="Figure 2: train/validation natural and robust accuracy per epoch (robust overfitting)",
                   args=(arg("runs", nargs="+", metavar="RUN", help="run folders (one panel each)"),))
def curves_figure(runs: Sequence[str | Path] | str | Path, out: str | Path | None = None) -> list[Path]:
    """Learning curves (UIAT Figure 2): per epoch, the training accuracies the method logged
    (dashed: on its training inputs, e.g. adversarial; natural when logged; PGD on the
    guard's fixed training batch when the guard is on) and the held-out validation accuracies
    (solid: natural and the eval attack, on the run's eval.n validation images, held out of
    the training data; never test images). The red line marks the epoch of the best
    validation robust accuracy (best.pt): a robust accuracy that falls
    after it is robust overfitting. Writes curves.png and curves.json (the series per run).

    Args:
        runs: run folders (globs allowed).
        out: output folder or file (default: the run folder; several runs: their parent).
    """
    require_matplotlib()
    infos = load_runs([runs] if isinstance(runs, (str, Path)) else runs)
    data = [run_curves(r) for r in infos]
    for d in data:
        if not d["series"]:
            raise ValueError(f"{d['run']}: metrics.jsonl has no epoch records yet; train at least one epoch")
    panels = [Panel([Line(s["label"], s["epoch"], pct(s["acc"]), marker="." if k.startswith("eval") else "",
                          linestyle="-" if k.startswith("eval") else "--")
                     for k, s in d["series"].items()],
                    title=d["label"], xlabel="epoch", ylabel="accuracy (%)", integer_x=True,
                    vlines=() if d["best_epoch"] is None else (d["best_epoch"],),
                    note="" if d["best_epoch"] is None else f"best validation robust: epoch {d['best_epoch']}")
              for d in data]
    base = output_base(out, common_dir([r.path for r in infos]), "curves")
    png = line_figure(panels, base.with_suffix(".png"), ncols=min(len(panels), 3))
    return [png, write_series(base.with_suffix(".json"), {"analysis": "curves", "runs": data})]
