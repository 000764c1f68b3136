"""Run a plan: check that it can run, train what is missing (resumably), evaluate, write.

:func:`run_plan` does the rows in the paper's order: the helper first (HAT), then training (a
finished run is skipped, an interrupted one resumed from ``last.pt``, one interrupted in its
first epoch restarted), then the evaluation of the row's columns
(:mod:`robustrain.reproduce.results`); ``results.md`` / ``results.json`` are rewritten after
every row, so rerunning the same command continues an interrupted reproduction.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import torch

from robustrain.artifacts import RunDir
from robustrain.data import load_split
from robustrain.reproduce.plan import Plan, RunSpec
from robustrain.reproduce.results import _seed_values, _write, collect_results
from robustrain.train import fit
from robustrain.utils.errors import NonFiniteLossError, ReproduceError

__all__ = ["check_ready", "run_plan"]


def check_ready(plan: Plan) -> None:
    """Fail before anything runs when a run cannot: no GPU for full-scale training, missing
    dataset files.

    Raises:
        ReproduceError: full scale without a CUDA device (and ``train.device`` left at auto).
        DatasetFileError: a dataset file is missing or corrupt (the message names it).
    """
    to_train = {id(s) for s in plan.specs() if RunDir(s.train_dir).state() != "done"}
    autos = [s for s in plan.specs() if id(s) in to_train and s.cfg.train.device == "auto"]
    if plan.scale.needs_gpu and autos and not torch.cuda.is_available():
        raise ReproduceError(
            f"--scale {plan.scale.name} trains paper-scale runs (ResNet-18/WRN, 30-400 epochs) and needs a CUDA GPU; "
            "none is visible. Use --scale mini, or --set train.device=cpu to train on the CPU anyway")
    needed: dict[tuple[str, str | None], set[str]] = {}
    for s in plan.specs():
        splits = needed.setdefault((s.cfg.data.name, s.cfg.data.root), {"test"})
        if id(s) in to_train:
            splits.add("train")
    for (name, root), splits in sorted(needed.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        for split in sorted(splits):
            load_split(name, split, root=root)


def _train(spec: RunSpec, *, progress: bool | None, verbose: bool, say: Callable[[str], None]) -> None:
    if spec.owner is not None:
        return _train(spec.owner, progress=progress, verbose=verbose, say=say)
    run_dir = spec.train_dir
    state = RunDir(run_dir).state()
    if state == "done":
        return
    if spec.helper is not None:
        _train(spec.helper, progress=progress, verbose=verbose, say=say)
    action = {"partial": "resuming", "started": "restarting (interrupted in its first epoch)"}.get(state, "training")
    say(f"{spec.label}: {action} in {run_dir}")
    if state == "partial":
        fit(spec.cfg, run_dir=run_dir, resume=True, progress=progress, verbose=verbose)
    else:
        fit(spec.cfg, run_dir=run_dir, overwrite=state == "started", progress=progress, verbose=verbose)


def run_plan(plan: Plan, *, progress: bool | None = None, verbose: bool = True,
             say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train what is missing, evaluate, and write ``results.md`` / ``results.json``.

    Rows are done in the paper's order and the results rewritten after each, so an
    interrupted reproduction keeps everything finished; rerunning the same command continues.
    A run whose loss becomes NaN/inf is reported in its row and the others go on.

    Returns:
        the results dict (``results.json``); ``result["failed"]`` lists failed rows.
    """
    say = say or (lambda s: print(s, flush=True))
    if progress is None:
        progress = sys.stderr.isatty()
    check_ready(plan)
    failures: dict[str, str] = {}
    _write(plan, collect_results(plan))
    for rp in plan.rows:
        if rp.skip is not None:
            say(f"{plan.table.name} {rp.row.id}: {rp.skip}")
            continue
        for spec in rp.runs:
            try:
                _train(spec, progress=progress, verbose=verbose, say=say)
            except NonFiniteLossError as e:
                failures[rp.row.id] = str(e).split(";")[0]
                say(f"{spec.label}: failed: {e}")
                break
            _seed_values(plan, rp.row, spec, compute=True, progress=progress, say=say)
        _write(plan, collect_results(plan, failures=failures))
    result = collect_results(plan, failures=failures)
    result["failed"] = sorted(failures)
    md, js = _write(plan, result)
    say(f"wrote {md} and {js}")
    return result
