"""Table 2 of UIAT: training seconds per epoch per run, from ``metrics.jsonl``.

One rule for "the" epoch time of a run, shared with the reproduce harness
(:func:`mean_epoch_time`): the records' ``epoch_time_s`` (the training loop only, without the
per-epoch evaluation), one per epoch (a later record of an epoch, from a resumed run, replaces
an earlier one), averaged without the first epoch when there are more (it carries one-off
warm-up costs).

Example:
    >>> records = [{"epoch": 1, "epoch_time_s": 9.0}, {"epoch": 2, "epoch_time_s": 4.0},
    ...            {"epoch": 3, "epoch_time_s": 6.0}, {"best": {"epoch": 2}}]
    >>> epoch_times(records), mean_epoch_time(records), mean_epoch_time([])
    ([9.0, 4.0, 6.0], 5.0, None)
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from robustrain.eval.figures._common import ANALYSES, arg, common_dir, output_base, write_series
from robustrain.eval.plots import bar_figure, require_matplotlib
from robustrain.eval.runs import RunInfo, load_runs
from robustrain.utils.fileio import write_atomic

__all__ = ["epoch_times", "mean_epoch_time", "epoch_timing", "timing_table", "timing_figure"]


def epoch_times(records: Iterable[Mapping[str, Any]]) -> list[float]:
    """Training seconds of each epoch, in epoch order, from ``metrics.jsonl`` records: those
    with an integer ``epoch`` and a numeric ``epoch_time_s``; a later record of the same epoch
    (a resumed run) replaces an earlier one."""
    times = {rec["epoch"]: float(rec["epoch_time_s"]) for rec in records
             if isinstance(rec.get("epoch"), int) and isinstance(rec.get("epoch_time_s"), (int, float))}
    return [times[e] for e in sorted(times)]


def _mean(seq: Sequence[float]) -> float:
    return statistics.fmean(seq[1:] if len(seq) > 1 else seq)


def mean_epoch_time(records: Iterable[Mapping[str, Any]]) -> float | None:
    """Mean training seconds per epoch of a run from its ``metrics.jsonl`` records
    (:func:`epoch_times`), the first epoch left out when there are more; None when no epoch
    time is logged."""
    seq = epoch_times(records)
    return _mean(seq) if seq else None


def epoch_timing(run: RunInfo) -> dict[str, Any]:
    """Training seconds per epoch of one run from ``metrics.jsonl`` (``epoch_time_s``: the
    training loop only, without the per-epoch evaluation). The mean leaves out the first
    epoch when there are more (it carries one-off warm-up costs; :func:`mean_epoch_time`);
    ``total_s`` sums all.

    Raises:
        ValueError: no epoch times logged.
    """
    seq = epoch_times(run.metrics)
    if not seq:
        raise ValueError(f"{run.path}: metrics.jsonl has no epoch_time_s records; train at least one epoch")
    return {"run": str(run.path), "label": run.label, "method": run.method,
            "model": run.config.get("model.name"), "dataset": run.config.get("data.name"),
            "batch_size": run.config.get("data.batch_size"), "epochs": len(seq),
            "mean_s": _mean(seq), "mean_excludes_first": len(seq) > 1, "total_s": sum(seq),
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
                   args=(arg("runs", nargs="+", metavar="RUN", help="run folders (or a quoted glob)"),))
def timing_figure(runs: Sequence[str | Path] | str | Path, out: str | Path | None = None) -> list[Path]:
    """Training cost per method (UIAT Table 2): mean training seconds per epoch (without the
    first epoch when there are more, and without the per-epoch evaluation) and the total,
    from each run's metrics.jsonl. Compare runs of one machine only. Writes timing.md
    (a table), timing.json (per run: every epoch's seconds, the mean, the total) and
    timing.png (mean s/epoch per run).

    Args:
        runs: run folders (globs allowed; unfinished runs count their epochs so far).
        out: output folder or file (default: figures/ in the runs' common parent folder).
    """
    require_matplotlib()
    infos = load_runs([runs] if isinstance(runs, (str, Path)) else runs)
    rows = [epoch_timing(r) for r in infos]
    base = output_base(out, common_dir([r.path for r in infos]), "timing")
    note = ("s/epoch: mean training time per epoch (training loop only), leaving out the first epoch when a run "
            "has more than one; total: all epochs. Compare runs measured on the same machine.")
    md = write_atomic(base.with_suffix(".md"), f"# Training time per epoch\n\n{timing_table(rows)}\n\n{note}\n")
    js = write_series(base.with_suffix(".json"), {"analysis": "timing", "runs": rows})
    png = bar_figure([r["label"] for r in rows], [r["mean_s"] for r in rows], base.with_suffix(".png"),
                     ylabel="seconds per epoch", title="training time per epoch")
    return [md, js, png]
