"""The final table of a training run (issue 22: moved out of ``fit``): ``eval.final_attacks`` on
the test images for ``best.pt`` (selected on the validation split held out of the training data,
never on test images) and ``last.pt``, the summary that ``summary.json`` keeps, and its text.

Example:
    >>> from robustrain.config import load_config
    >>> scale_note(load_config(None, ["data.name=cifar10", "model=resnet18"])) is None
    True
"""

from __future__ import annotations

from typing import Any

from robustrain.artifacts import RunDir
from robustrain.build import Run
from robustrain.config import Config, config_to_dict
from robustrain.eval.robust import evaluate_checkpoint, format_table

__all__ = ["SMALL_SCALE_DATA", "SMALL_SCALE_MODELS", "final_summary", "scale_note", "selection_text"]

#: datasets that are subsets or stand-ins of the papers' datasets (a run on them is small-scale)
SMALL_SCALE_DATA = ("cifar10-mini", "synthetic")

#: models far smaller than the papers' (ResNet-18 / WideResNets)
SMALL_SCALE_MODELS = ("small_cnn",)


def selection_text(cfg: Config, selection: dict[str, Any]) -> str:
    """How ``best.pt`` was chosen, in one line (``summary.json``'s ``selection`` and the tables).

    Example:
        >>> from robustrain.config import load_config
        >>> cfg = load_config(None, [])
        >>> selection_text(cfg, {"n_evaluated": 256, "n_held_out": 508, "seed": 13})
        'best pgd20 on 256 of the 508 validation images held out of the cifar10-mini training split (split seed 13); never on test images'
    """
    return (f"best {cfg.eval.attack} on {selection['n_evaluated']} of the {selection['n_held_out']} validation images "
            f"held out of the {cfg.data.name} training split (split seed {selection['seed']}); never on test images")


def scale_note(cfg: Config) -> str | None:
    """The warning printed under a small-scale run's table (None for a paper-scale setting)."""
    if cfg.data.name not in SMALL_SCALE_DATA and cfg.model.name not in SMALL_SCALE_MODELS:
        return None
    return (f"small-scale run ({cfg.model.name} on {cfg.data.name}, {cfg.train.epochs} epochs): a smoke-scale "
            "number for comparing settings of this library, not a paper number")


def final_summary(run: Run, rd: RunDir, *, best_epoch: int, best_value: float, last_epoch: int, verbose: bool,
                  progress: bool) -> dict[str, Any]:
    """``eval.final_attacks`` on the first ``eval.final_n`` test images, for ``best.pt`` (selected
    on the validation split held out of the training data: ``best_epoch`` with ``best_value`` of
    ``eval.attack``) and for ``last.pt`` (``last_epoch``); the table printed when ``verbose``.

    ``summary["final"]`` is ``best.pt``'s table (as before), ``summary["final_last"]`` the last
    epoch's; when the best epoch is the last, ``last.pt`` holds the same weights and is not
    evaluated twice. ``selection`` says which images chose ``best.pt`` (``selection_split``: the
    same as numbers).
    """
    cfg = run.cfg
    path = rd.best_or_last()
    n = cfg.eval.final_n or int(run.test_x.shape[0])
    x, y, attacks = run.test_x[:n], run.test_y[:n], list(cfg.eval.final_attacks)
    options = dict(device=run.device, batch_size=cfg.data.eval_batch_size, seed=cfg.seed, progress=progress,
                   shard=True)
    if cfg.eval.eps is not None:
        options["eps"] = cfg.eval.eps
    rec = evaluate_checkpoint(path, x, y, attacks, warn_flags=True, **options)
    if path == rd.last or int(rec.loaded.epoch) == last_epoch:
        rec_last = rec  # best.pt is the last epoch's checkpoint: the same weights
    else:
        rec_last = evaluate_checkpoint(rd.last, x, y, attacks, warn_flags=True, **options)
    acc, acc_last = rec.accuracy, rec_last.accuracy
    selection = {**run.selection, "best_epoch": best_epoch}
    note = scale_note(cfg)
    summary = {
        "run_dir": str(rd.path),
        "checkpoint": path.name,
        "checkpoint_epoch": int(rec.loaded.epoch),
        "weights": rec.loaded.weights,
        "selection": selection_text(cfg, run.selection),
        "selection_split": selection,
        "best_epoch": best_epoch,
        "best_subset_robust_acc": best_value,
        "n_test": n,
        "protocol": rec.result.protocol,
        "final": acc,
        "final_last": acc_last,
        "last_epoch": int(rec_last.loaded.epoch),
        "small_scale": note is not None,
        "config": config_to_dict(cfg),
    }
    if note is not None:
        summary["scale_note"] = note
    if verbose:
        name = f"{cfg.method_label} / {cfg.model.name}"
        print(f"\nfinal evaluation on {n} {cfg.data.name} test images ({summary['weights']} weights) of "
              f"best.pt (selected on validation images) and last.pt:")
        print(format_table({f"{name}, best.pt (epoch {rec.loaded.epoch})": acc,
                            f"{name}, last.pt (epoch {rec_last.loaded.epoch})": acc_last}, list(acc)))
        print(f"selection: {summary['selection']}")
        print(f"protocol: {summary['protocol']}")
        if note is not None:
            print(f"note: {note}")
    return summary
