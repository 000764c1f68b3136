"""What a tracker gets from a run, the same for every backend: the resolved config as flat
parameters, short tags, each epoch record of ``metrics.jsonl`` (with its per-step records at
``train.log_every``) as numbers at global steps, the final table, and the files worth uploading.

Names are the record's keys joined by ``/`` (``train/loss``, ``eval/pgd20``); the per-step
records are ``steps/loss``, ``steps/lr``, ...; the final table is ``final/best/<attack>`` and
``final/last/<attack>``, with ``final/train_time_s``, ``final/best_epoch`` and the selection split
(``selection/n_evaluated``, ...). Only finite numbers are logged (booleans as 0/1).

Example:
    >>> record = {"epoch": 1, "step": 4, "lr": 0.1, "train": {"loss": 2.0}, "eval": {"pgd20": 0.25},
    ...           "steps": [{"step": 2, "lr": 0.1, "loss": 2.2}, {"step": 4, "lr": 0.1, "loss": 1.8}],
    ...           "epoch_time_s": 3.0, "resumed_with": ["optim.lr=0.05"]}
    >>> for step, metrics in epoch_points(record):
    ...     print(step, sorted(metrics))
    2 ['steps/loss', 'steps/lr']
    4 ['epoch', 'epoch_time_s', 'eval/pgd20', 'lr', 'steps/loss', 'steps/lr', 'train/loss']
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from robustrain import __version__
from robustrain.artifacts import RunDir
from robustrain.config import Config, config_to_dict
from robustrain.eval.final import scale_note, selection_text

__all__ = ["config_params", "epoch_points", "final_metrics", "flatten", "last_step", "number", "run_files", "run_tags"]


def flatten(d: Mapping[str, Any], sep: str = "/", prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level, keys joined by ``sep``.

    Example:
        >>> flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}, sep=".")
        {'a.b': 1, 'a.c.d': 2, 'e': 3}
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, sep, f"{prefix}{k}{sep}"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def number(value: Any) -> float | None:
    """``value`` as a finite float (a bool as 0/1), or None when it is not one.

    Example:
        >>> number(3), number(True), number(float("nan")), number("x")
        (3.0, 1.0, None, None)
    """
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _numbers(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in flatten(d).items():
        x = number(v)
        if x is not None:
            out[prefix + k] = x
    return out


def config_params(cfg: Config) -> dict[str, Any]:
    """The resolved config as ``{dotted.key: value}`` (what trackers show as parameters): numbers,
    booleans and strings as they are (MLflow stores them as text), lists joined by commas.

    Example:
        >>> from robustrain.config import load_config
        >>> params = config_params(load_config(None, ["method=trades", "train.epochs=2"]))
        >>> params["method.name"], params["train.epochs"], params["eval.final_attacks"]
        ('trades', 2, 'natural,pgd20,cw30')
    """
    return {k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v
            for k, v in flatten(config_to_dict(cfg), sep=".").items()}


def run_tags(cfg: Config, selection: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Short tags: method, model, dataset, seed, scale (``small`` for a smoke-scale setting, else
    ``paper``), run name, robustrain version, and with ``selection`` (``Run.selection``) how
    ``best.pt`` is chosen.

    Example:
        >>> from robustrain.config import load_config
        >>> tags = run_tags(load_config(None, ["method=trades"]))
        >>> tags["method"], tags["model"], tags["dataset"], tags["seed"], tags["scale"]
        ('trades', 'small_cnn', 'cifar10-mini', '0', 'small')
    """
    tags = {"method": cfg.method_label, "model": cfg.model.name, "dataset": cfg.data.name, "seed": str(cfg.seed),
            "scale": "small" if scale_note(cfg) is not None else "paper", "run_name": cfg.run_name,
            "robustrain_version": __version__}
    if selection is not None:
        tags["selection"] = selection_text(cfg, selection)
    return tags


def epoch_points(record: Mapping[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """One epoch record of ``metrics.jsonl`` as ``(global step, metrics)`` in increasing step
    order: its per-step records (``steps/...``), then the epoch's own numbers at the epoch's
    last step (merged with that step's per-step record)."""
    points: dict[int, dict[str, float]] = {}
    for s in record.get("steps") or ():
        points.setdefault(int(s["step"]), {}).update(_numbers({k: v for k, v in s.items() if k != "step"}, "steps/"))
    epoch = _numbers({k: v for k, v in record.items() if k not in ("steps", "step")})
    points.setdefault(int(record["step"]), {}).update(epoch)
    return sorted(points.items())


def final_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The final table of ``summary.json`` as numbers: ``final/best/<attack>`` (``best.pt``),
    ``final/last/<attack>`` (``last.pt``), the selection split (``selection/...``) and
    ``final/<key>`` for the best epoch, wall time and test-set size.

    Example:
        >>> m = final_metrics({"final": {"natural": 0.5}, "final_last": {"natural": 0.4}, "best_epoch": 2,
        ...                    "train_time_s": 9.5, "selection_split": {"n_evaluated": 64, "seed": 13}})
        >>> m["final/best/natural"], m["final/last/natural"], m["final/best_epoch"], m["selection/n_evaluated"]
        (0.5, 0.4, 2.0, 64.0)
    """
    out = {**_numbers(summary.get("final") or {}, "final/best/"), **_numbers(summary.get("final_last") or {},
                                                                             "final/last/")}
    out.update(_numbers(summary.get("selection_split") or {}, "selection/"))
    keys = ("best_epoch", "best_subset_robust_acc", "checkpoint_epoch", "last_epoch", "n_test", "train_time_s",
            "stopped_early")
    out.update(_numbers({k: summary[k] for k in keys if k in summary}, "final/"))
    return out


def run_files(rd: RunDir) -> list[Path]:
    """The files ``train.log_artifacts=true`` uploads at the end of a run: ``best.pt`` (else
    ``last.pt``), ``summary.json``, ``config.yaml``, ``metrics.jsonl``, and a report
    (``report.md``) and figures (``*.png``, ``figures/``) when the run folder has them."""
    files = [rd.best_or_last(), rd.summary, rd.config, rd.metrics, rd.path / "report.md"]
    files += sorted(rd.path.glob("*.png")) + sorted(p for p in (rd.path / "figures").glob("*") if p.is_file())
    return [p for p in files if p.is_file()]


def last_step(history: Sequence[Mapping[str, Any]]) -> int:
    """The global step of the last completed epoch (0 before the first)."""
    return int(history[-1]["step"]) if history else 0
