"""``robustrain report RUN_DIR``: one markdown file that says what a run was and what it got.

Sections: the run at a glance, the final evaluation (``summary.json``), the figures of the
run (learning curves, UIAT Figure 2; the universal inverse perturbations, Figure 6, when the
method keeps them) linked relative to the report, the per-epoch metrics
(``metrics.jsonl``) and the resolved config as a YAML block. The report and its figures are
each written atomically; an unfinished run gets a report of what exists so far.

Example:
    >>> metrics_table([{"epoch": 1, "lr": 0.1, "train": {"loss": 2.0, "acc": 0.25},
    ...                 "eval": {"natural": 0.5, "pgd20": 0.3}, "epoch_time_s": 12.0}]).splitlines()[2]
    '| 1 | 0.1 | 2.0000 | 25.00 | 50.00 | 30.00 | 12.0 |'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from robustrain.artifacts import RunDir, load_checkpoint
from robustrain.config import config_from_dict, dump_config, upgrade_saved_config
from robustrain.data import EvalData, eval_data_info
from robustrain.eval.figures.curves import curves_figure
from robustrain.eval.figures.perturbations import perturbation_figure, universal_perturbations
from robustrain.eval.plots import require_matplotlib
from robustrain.eval.robust import format_table
from robustrain.eval.runs import load_run
from robustrain.utils.errors import DatasetFileError, PlotDependencyError, UsageError
from robustrain.utils.fileio import unwritable_reason, write_atomic

__all__ = ["write_report", "metrics_table", "final_table"]


def _column_keys(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Dotted keys of the numeric per-epoch values, in the order they first appear; the
    bookkeeping (step, best, eval time, the per-step log points) is left out."""
    keys: list[str] = []
    for rec in records:
        for k, v in rec.items():
            if k in ("epoch", "step", "best", "eval_time_s", "steps"):
                continue
            subkeys = [f"{k}.{s}" for s in v] if isinstance(v, Mapping) else [k]
            for key in subkeys:
                if key not in keys:
                    keys.append(key)
    return keys


def _lookup(rec: Mapping[str, Any], key: str) -> Any:
    head, _, tail = key.partition(".")
    value = rec.get(head)
    return value.get(tail) if tail and isinstance(value, Mapping) else (None if tail else value)


def _cell(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    name = key.rsplit(".", 1)[-1]
    if key.startswith(("eval.", "guard.")) or name.startswith("acc"):
        return f"{100 * value:.2f}"  # accuracies in percent, as every table of the papers
    if key == "lr":
        return f"{value:.4g}"
    if key.endswith("_s"):
        return f"{value:.1f}"
    return f"{value:.4f}"


def metrics_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The per-epoch records of ``metrics.jsonl`` as a markdown table: one row per epoch,
    one column per logged value (accuracies in %, ``train.``/``eval.``/``guard.`` prefixes
    shortened to the column group shown in the header)."""
    rows = [r for r in records if isinstance(r.get("epoch"), int)]
    keys = _column_keys(rows)
    # eval.* is the held-out VALIDATION split that selects best.pt (issue 13), never test images
    header = ["epoch"] + [k.replace("eval.", "val ").replace("train.", "train ").replace("guard.", "guard ")
                          .replace("epoch_time_s", "s") for k in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join([str(r["epoch"])] + [_cell(k, _lookup(r, k)) for k in keys]) + " |")
    return "\n".join(lines)


def final_table(summary: Mapping[str, Any]) -> str:
    """The final evaluation of ``summary.json`` as markdown: the accuracy table (%), which
    checkpoint and weights, how many test images, how the checkpoint was selected, the
    protocol."""
    cfg = summary.get("config", {})
    name = f"{cfg.get('method', {}).get('name', '?')} / {cfg.get('model', {}).get('name', '?')}"
    acc = summary.get("final", {})
    lines = [format_table({name: acc}, list(acc)), "",
             f"- checkpoint: `{summary.get('checkpoint')}` (epoch {summary.get('checkpoint_epoch')}, "
             f"{summary.get('weights')} weights), {summary.get('n_test')} test images",
             f"- selection: {summary.get('selection')}",
             f"- protocol: {summary.get('protocol')}"]
    if summary.get("train_time_s") is not None:
        lines.append(f"- training wall time: {summary['train_time_s'] / 60:.1f} min")
    if summary.get("stopped_early"):
        lines.append(f"- stopped early at epoch {summary['stopped_early']} (catastrophic-overfitting guard)")
    return "\n".join(lines)


def _config_yaml(run: Path, summary: Mapping[str, Any] | None) -> str:
    file = RunDir(run).config
    raw = yaml.safe_load(file.read_text()) if file.is_file() else (summary or {}).get("config", {})
    try:
        return dump_config(config_from_dict(upgrade_saved_config(raw)))
    except ValueError:  # an older schema: show it as saved
        return yaml.safe_dump(raw, sort_keys=False)


def _has_universal_perturbations(checkpoint: Path) -> bool:
    if not checkpoint.is_file():
        return False
    ckpt = load_checkpoint(checkpoint)  # a damaged checkpoint: one CheckpointError naming it
    config = ckpt["config"] if isinstance(ckpt["config"], dict) else {}
    try:  # the dataset as the checkpoint wrote it, whatever schema its config follows (streaming ones too)
        info = eval_data_info(EvalData.from_section(config.get("data") or {}))
    except (KeyError, DatasetFileError):  # an unknown dataset, or a streaming folder that is gone: no figure
        return False
    try:
        universal_perturbations(ckpt.get("method") or {}, info.num_classes, tuple(info.image_shape))
    except ValueError:
        return False
    return True


def _figures(run: Path, folder: Path, has_metrics: bool) -> list[tuple[str, Path]]:
    """Draw the run's figures into ``folder``; (caption, png) pairs."""
    require_matplotlib()
    out: list[tuple[str, Path]] = []
    if has_metrics:
        out.append(("Learning curves: training (dashed) and test (solid) accuracy per epoch (UIAT Figure 2)",
                    curves_figure([run], folder / "curves.png")[0]))
    if _has_universal_perturbations(RunDir(run).last):
        out.append(("Universal inverse perturbations z_c (row 1), a test image x of class c (row 2), x + z_c "
                    "(row 3) (UIAT Figure 6)", perturbation_figure(run, folder / "perturbations.png")[0]))
    return out


def write_report(run: str | Path, out: str | Path | None = None, *, figures: bool = True) -> Path:
    """Write the markdown report of run folder ``run``; returns its path.

    Args:
        run: a run folder written by ``robustrain train`` (finished or not).
        out: the report file (default ``RUN/report.md``); figures are written next to it.
        figures: draw the figures (needs matplotlib, the ``plot`` extra).

    Raises:
        UsageError (a ValueError): ``run`` is not a run folder; ``out`` cannot be written (checked
            before anything is drawn).
        CheckpointError: a damaged file in the run folder (named, with the line for ``metrics.jsonl``).
        PlotDependencyError: ``figures`` without matplotlib.
    """
    run = Path(run)
    info = load_run(run)
    out = Path(out) if out is not None else run / "report.md"
    reason = unwritable_reason(out)
    if reason is not None:
        raise UsageError(f"cannot write the report to {out}: {reason}; pass --out with a file in a writable folder")
    if figures:
        try:
            require_matplotlib()
        except PlotDependencyError as e:
            raise PlotDependencyError(f"{e} (or pass --no-figures for tables only)") from None
    epochs = [r for r in info.metrics if isinstance(r.get("epoch"), int)]
    total = info.config.get("train.epochs", "?")
    parts = [f"# Run report: {run.name}", "",
             f"- run folder: `{run}`",
             f"- method: **{info.method}**, model: {info.config.get('model.name')}, "
             f"dataset: {info.config.get('data.name')}, seed: {info.config.get('seed')}",
             f"- epochs logged: {len(epochs)} of {total}", ""]
    parts += ["## Final evaluation", ""]
    if info.summary is not None and "final" in info.summary:
        parts += [final_table(info.summary), ""]
    else:
        parts += ["No `summary.json` yet: the run has not finished (or was stopped); the tables below show "
                  "the epochs so far.", ""]
    if figures:
        drawn = _figures(run, out.parent, bool(epochs))
        if drawn:
            parts += ["## Figures", ""]
            for caption, png in drawn:
                link = Path(os.path.relpath(png, out.parent)).as_posix()
                parts += [f"![{caption}]({link})", "", f"*{caption}.*", ""]
    parts += ["## Per-epoch metrics", "",
              "Accuracies in %; `train` on the method's training inputs, `test` on the first eval.n test images, "
              "`guard` the PGD check on a fixed training batch, `s` training seconds per epoch.", ""]
    parts += [metrics_table(epochs) if epochs else "No epochs logged yet.", ""]
    parts += ["## Config", "", "```yaml", _config_yaml(run, info.summary).rstrip("\n"), "```", ""]
    return write_atomic(out, "\n".join(parts))
