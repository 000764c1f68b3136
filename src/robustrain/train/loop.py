"""The one training loop shared by every method and model.

``fit(cfg)`` orchestrates: it checks the run folder (:class:`~robustrain.artifacts.RunDir`),
builds the run (:func:`~robustrain.build.build_run`), restores a checkpoint when resuming, runs
:func:`train_one_epoch` and the end-of-epoch callbacks (the overfitting guard and the
best-checkpoint selection, :mod:`robustrain.train.callbacks`) for each epoch, saves
``last.pt`` / ``best.pt`` / ``metrics.jsonl`` through a :class:`~robustrain.train.logging.RunWriter`,
and ends with the final table (``eval.final_attacks`` on the test split for ``best.pt``, chosen
on the validation split held out of the TRAINING data, and for ``last.pt``) from
:func:`~robustrain.eval.evaluate_checkpoint`, written to ``summary.json`` with the selection
protocol (issue 13: the test split never selects a checkpoint).

Nothing in the loop depends on which method runs: a method is ``method(model, batch) ->
LossOutput``. Per-step metrics stay on the device and are read once per ``train.log_every``
steps, so the step itself never waits for the host.

Resuming (``fit(cfg, resume=True)`` / ``robustrain train --resume RUN_DIR``) restores model,
optimiser, EMA, method state, loop state (epoch, step: the lr schedule is a pure function of
it), callbacks' state and RNG states; data order and augmentation are functions of (seed,
epoch), so on CPU a resumed run is bit-identical to an uninterrupted one.

Under ``torchrun`` (``torchrun --nproc_per_node=N -m robustrain train ...``) the same loop
runs data-parallel: each rank trains on its shard of every global batch through
DistributedDataParallel, metrics and evaluation counts are all-reduced, rank 0 writes the
run folder, and every rank reads ``last.pt`` on resume; see :mod:`robustrain.utils.distributed`.

Example:
    >>> from robustrain.config import load_config
    >>> from robustrain.train import fit
    >>> cfg = load_config(None, ["data.name=synthetic", "train.epochs=1", "method=standard",
    ...                          "eval.n=64", "eval.final_n=64", "out_dir=/tmp/rr-doc"])
    >>> summary = fit(cfg, overwrite=True, progress=False, verbose=False)
    >>> sorted(summary["final"])
    ['cw30', 'natural', 'pgd20']
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from robustrain.artifacts import RunDir, load_checkpoint
from robustrain.build import Run, build_run
from robustrain.config import Config, config_from_dict, config_to_dict, parse_overrides, upgrade_saved_config
from robustrain.eval.robust import PROTOCOL, evaluate_checkpoint, format_table
from robustrain.methods import prediction_stats
from robustrain.schedules import lr_at, momentum_at
from robustrain.train.awp import AWP
from robustrain.train.callbacks import BestCheckpoint, Callback, default_callbacks
from robustrain.train.logging import RunWriter
from robustrain.train.state import TrainState, checkpoint, restore
from robustrain.utils import distributed as ddp
from robustrain.utils.errors import CheckpointError, ConfigError, NonFiniteLossError
from robustrain.utils.runtime import autocast_for, fast_math

__all__ = ["RESUME_OVERRIDES", "fit", "train_one_epoch", "training_module"]

#: ``torch.compile`` options of ``train.compile``: static shapes (``data.drop_last=true`` is
#: required), so every graph is specialised to the batch size and never re-traced as dynamic.
COMPILE_OPTIONS: dict[str, Any] = {"dynamic": False}


def training_module(run: Run, model: nn.Module) -> nn.Module:
    """The module the method trains: ``model`` (``run.model``, DDP-wrapped under torchrun), or
    with ``train.compile`` its compiled wrapper.

    The wrapper shares parameters and buffers with ``run.model``, which everything else keeps
    using: optimiser, EMA, checkpoints (no ``_orig_mod.`` prefixes) and evaluation, which runs
    the uncompiled model in fp32 (its batch sizes and precision differ from training, so a
    compiled eval would only add graphs). Dynamo builds one graph per distinct forward of a
    step (attack forwards in ``bn_mode`` with an input gradient, the training forward in
    train mode, no-grad target forwards ...) on the first step of each method phase; later
    steps and epochs reuse them (``tests/test_fastpath.py`` checks no recompilation).
    """
    if not run.cfg.train.compile:
        return model
    return torch.compile(model, **COMPILE_OPTIONS)


def _accumulate(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    if key in sums:
        sums[key] += value
    else:
        sums[key] = value.clone()


def train_one_epoch(run: Run, state: TrainState, train_model: nn.Module, *, progress: bool = False,
                    run_dir: Path | None = None) -> dict[str, Any]:
    """Train epoch ``state.epoch`` (0-based); advance ``state.step`` per batch.

    Sets the method's and the loader's epoch and each step's lr (and cyclic momentum) from the
    schedule, runs ``method(train_model, batch)`` under bf16 autocast when asked and TF32 on
    CUDA, and keeps the per-step sums on the device. With ``awp.gamma > 0`` each step trains at
    AWP-perturbed weights (:mod:`robustrain.train.awp`: one extra forward/backward per step). The mean loss is read back once per
    ``train.log_every`` steps (averaged over ranks, so every rank takes the same decision).

    Returns:
        the epoch's record so far: ``epoch`` (1-based), ``step``, ``lr``, ``train`` (mean loss,
        accuracy and the method's metrics) and ``epoch_time_s``.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; the message says how to continue
            (resume ``run_dir`` with a lower lr, or start again when no epoch completed).
    """
    cfg, epoch = run.cfg, state.epoch
    epochs, steps_per_epoch = cfg.train.epochs, len(run.loader)
    total_steps = epochs * steps_per_epoch
    t0 = time.perf_counter()
    run.method.set_epoch(epoch)
    run.loader.set_epoch(epoch)
    ddp.seed_for_rank(cfg.seed, epoch)  # DDP: per-rank attack noise, a function of the epoch
    run.model.train()
    awp = AWP(cfg.awp.gamma, cfg.awp.warmup) if cfg.awp.enabled else None
    if awp is not None and not awp.active(epoch):
        awp = None  # the official warm-up: no AWP before 1-based epoch awp.warmup
    sums: dict[str, torch.Tensor] = {}  # the epoch's per-sample sums
    interval: dict[str, torch.Tensor] = {}  # the same since the last log point
    n_seen = torch.zeros((), device=run.device)
    interval_n = torch.zeros((), device=run.device)
    steps_log: list[dict[str, float]] = []
    lr = cfg.optim.lr
    bar = tqdm(run.loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}",
               disable=not progress, leave=False, dynamic_ncols=True)
    for i, batch in enumerate(bar):
        lr = lr_at(cfg.schedule, state.step, total_steps, cfg.optim.lr)
        momentum = momentum_at(cfg.schedule, state.step, total_steps)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
            if momentum is not None:
                group["momentum"] = momentum
        if cfg.train.channels_last:
            batch = batch._replace(x=batch.x.contiguous(memory_format=torch.channels_last))
        with fast_math(run.device):
            # AWP (awp.gamma > 0): train at w + v, v from one ascent step of the method's own loss
            awp_handle = awp.perturb(run.model, lambda: _method_loss(run, train_model, batch),
                                     method=run.method) if awp is not None else None
            # ... on the adversaries the ascent generated at w (replayed, not attacked again)
            with autocast_for(run.device, cfg.train.bf16), \
                    (awp_handle.replay() if awp_handle is not None else contextlib.nullcontext()):
                out = run.method(train_model, batch)
            run.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            run.optimizer.step()
            if awp_handle is not None:
                awp_handle.restore()  # after the step, as the official code (robustrain.train.awp)
        if run.ema is not None:
            run.ema.update(run.model, state.step)
        state.step += 1
        bs = batch.y.shape[0]
        n_seen += bs
        interval_n += bs
        logits = out.logits.detach()
        step_sums = {"loss": out.loss.detach().float() * bs, "acc": (logits.argmax(1) == batch.y).sum().float()}
        step_sums.update({k: v.detach().float() * bs for k, v in out.metrics.items()})
        # signs of a one-class collapse, for every method (issue 19)
        step_sums.update({k: v * bs for k, v in prediction_stats(logits).items()})
        for k, v in step_sums.items():
            _accumulate(sums, k, v)
            _accumulate(interval, k, v)
        if (i + 1) % cfg.train.log_every == 0 or i + 1 == steps_per_epoch:
            # one host read per log point; means over ranks, so every rank takes the same NaN decision
            means = _means(interval, interval_n)
            interval.clear()
            interval_n = torch.zeros((), device=run.device)
            if not math.isfinite(means["loss"]):
                raise NonFiniteLossError(_nan_advice(means["loss"], epoch, state.step, cfg.optim.lr, run_dir))
            steps_log.append({"step": state.step, "lr": lr, **means})
            if progress:
                bar.set_postfix(loss=f"{means['loss']:.3f}",
                                acc=f"{(sums['acc'] / n_seen).item():.3f}", lr=f"{lr:.4f}")
    return {"epoch": epoch + 1, "step": state.step, "lr": lr, "train": _means(sums, n_seen),
            "steps": steps_log, "epoch_time_s": time.perf_counter() - t0}


def training_time(history: Sequence[dict[str, Any]]) -> float:
    """Seconds of training of a run's completed epochs, summed over every process that trained
    it (a resumed run counts the epochs of the first process too; an epoch cut short by an
    interrupt is not counted). Records written before ``wall_time_s`` count training and
    selection time.

    Example:
        >>> training_time([{"wall_time_s": 2.0}, {"epoch_time_s": 1.0, "eval_time_s": 0.5}])
        3.5
    """
    return float(sum(r["wall_time_s"] if "wall_time_s" in r else r.get("epoch_time_s", 0.0) + r.get("eval_time_s", 0.0)
                     for r in history))


def _means(sums: dict[str, torch.Tensor], n: torch.Tensor) -> dict[str, float]:
    """Per-sample means of device sums over every rank (one all-reduce, one host read)."""
    totals = ddp.all_reduce_sum(torch.stack([*sums.values(), n]))
    return dict(zip(sums, (totals[:-1] / totals[-1]).tolist()))


def _method_loss(run: Run, train_model: nn.Module, batch: Any) -> torch.Tensor:
    """The method's training loss (AWP's ascent), under the same autocast as the training step."""
    with autocast_for(run.device, run.cfg.train.bf16):
        return run.method(train_model, batch).loss


def _nan_advice(loss: float, epoch: int, step: int, lr: float, run_dir: Path | None) -> str:
    where = f"non-finite training loss ({loss}) at epoch {epoch + 1}, step {step}"
    if epoch > 0 and run_dir is not None:
        return (f"{where}; the {epoch} completed epoch(s) in {run_dir} are intact: continue with a lower learning "
                f"rate, `robustrain train --resume {run_dir} optim.lr={lr / 2:g}`, or check the method's "
                "hyper-parameters")
    return (f"{where}; no epoch completed, so nothing was kept: start again with a lower learning rate "
            f"(optim.lr={lr / 2:g} --overwrite) or check the method's hyper-parameters")


def _say(verbose: bool, msg: str) -> None:
    if verbose:
        print(msg, flush=True)


def _epoch_line(cfg: Config, record: dict[str, Any], improved: bool) -> str:
    train, ev = record["train"], record.get("eval")
    return (f"epoch {record['epoch']:>3}/{cfg.train.epochs}  loss {train['loss']:.4f}  "
            f"train-acc {100 * train['acc']:.2f}  "
            + (f"val nat {100 * ev['natural']:.2f}  val {cfg.eval.attack} {100 * ev[cfg.eval.attack]:.2f}  "
               if ev else "")
            + f"lr {record['lr']:.4f}  {record['epoch_time_s']:.1f}s" + ("  *best" if improved else ""))


#: settings ``--resume`` may change (recorded in the run): none of them changes what a
#: checkpoint means, only how training continues
RESUME_OVERRIDES = ("optim.lr", "train.log_every", "eval.every")


def _resume_config(saved: dict[str, Any], overrides: Sequence[str]) -> tuple[Config, list[str]]:
    """The saved config with the allowed ``--resume`` overrides applied."""
    # a run older than a method field resumes with the value it was trained with
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in upgrade_saved_config(saved).items()}
    applied = []
    for path, value in parse_overrides(overrides):
        key = ".".join(path)
        if key not in RESUME_OVERRIDES:
            raise ConfigError(f"--resume accepts only {', '.join(RESUME_OVERRIDES)} as overrides, got {key}; "
                              "other settings change what the run is: start a new run (name=NEW_NAME)")
        data[path[0]][path[1]] = value
        applied.append(f"{key}={value}")
    return config_from_dict(data), applied


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (None: ``path`` exists)."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def _discard_if_empty(rd: RunDir, created: Path | None) -> None:
    """Remove the folders this call created (up to ``created``) when nothing but the lock file
    was written in them: a failed start leaves no trace."""
    if created is None or not rd.path.is_dir() or {p.name for p in rd.path.iterdir()} - {RunDir.LOCK}:
        return
    shutil.rmtree(rd.path, ignore_errors=True)
    folder = rd.path.parent
    while folder != created.parent and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _best_epoch_on_disk(rd: RunDir) -> int | None:
    if not rd.best.is_file():
        return None
    try:
        return int(load_checkpoint(rd.best)["epoch"])
    except CheckpointError:
        return -1  # damaged: treated as behind


def fit(
    cfg: Config,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    verbose: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    callbacks: list[Callback] | None = None,
    resume_overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Train ``cfg`` and return the run summary (also written to ``summary.json``).

    Args:
        cfg: the validated run configuration.
        run_dir: run folder; default ``{cfg.out_dir}/{cfg.run_name}``.
        resume: continue the run in ``run_dir`` from its ``last.pt`` (its saved config wins).
        overwrite: replace an existing run in ``run_dir``.
        progress: live progress bar; None = only when stderr is a terminal.
        verbose: print one line per epoch and the final table.
        on_epoch_end: optional callback ``(epoch, record)`` after each epoch's checkpoint.
        callbacks: the end-of-epoch callbacks (default :func:`~robustrain.train.callbacks.default_callbacks`:
            the overfitting guard when on, then the best-checkpoint selection, which must be among them).
        resume_overrides: with ``resume``, dotted overrides of :data:`RESUME_OVERRIDES` only (e.g.
            ``["optim.lr=0.05"]`` after a NaN); recorded in the checkpoint, the epoch's metrics and
            ``summary.json``.

    Raises:
        RunExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        RunLockedError: another process is writing ``run_dir``.
        RunFolderError: ``run_dir`` cannot be created or written (checked before any work).
        NonFiniteLossError: the loss became NaN/inf (checkpoints of earlier epochs are kept).
    """
    if cfg.train.tensorboard:
        try:
            importlib.import_module("torch.utils.tensorboard")
        except ImportError:
            raise ConfigError("train.tensorboard=true needs TensorBoard: pip install tensorboard, "
                              "or set train.tensorboard=false") from None
    if resume_overrides and not resume:
        raise ValueError("resume_overrides apply to resume=True only")
    rd = RunDir(run_dir if run_dir else Path(cfg.out_dir) / cfg.run_name).prepare(resume=resume, overwrite=overwrite)
    applied: list[str] = []
    if resume:
        cfg, applied = _resume_config(load_checkpoint(rd.last)["config"], resume_overrides)
    if progress is None:
        progress = sys.stderr.isatty()
    # torchrun: join the process group; its rendezvous orders every rank's run-folder checks
    # above before rank 0's writes below
    ddp.init_distributed(cfg.train.device)
    is_main = ddp.is_main_process()
    progress, verbose = progress and is_main, verbose and is_main
    created = _first_missing(rd.path)
    # rank 0 writes the folder: it holds the writer lock for the whole run (checked writable first)
    with rd.lock() if is_main else contextlib.nullcontext(rd):
        try:
            ckpt = None
            if is_main:
                rd.prepare(resume=resume, overwrite=overwrite)  # again, now that no one else can write
                for tmp in rd.remove_temp_files():
                    print(f"robustrain: removed {tmp.name}, left by an interrupted write", file=sys.stderr)
            if resume:
                ckpt = load_checkpoint(rd.last)
            run = build_run(cfg)  # data and model errors surface here, before a file is written
            ddp_model = ddp.wrap_model(run.model, sync_bn=cfg.train.sync_bn)  # run.model in one process
        except BaseException:
            if is_main:
                _discard_if_empty(rd, created)
            raise
        return _fit(cfg, rd, run, ddp_model, ckpt, applied, is_main=is_main, resume=resume, overwrite=overwrite,
                    progress=progress, verbose=verbose, on_epoch_end=on_epoch_end, callbacks=callbacks)


def _fit(cfg: Config, rd: RunDir, run: Run, ddp_model: nn.Module, ckpt: dict[str, Any] | None, applied: list[str],
         *, is_main: bool,
         resume: bool, overwrite: bool, progress: bool, verbose: bool,
         on_epoch_end: Callable[[int, dict[str, Any]], None] | None, callbacks: list[Callback] | None) -> dict[str, Any]:
    state = TrainState()
    if callbacks is None:
        callbacks = default_callbacks(cfg, progress=progress, verbose=is_main)
    best = next((cb for cb in callbacks if isinstance(cb, BestCheckpoint)), None)
    if best is None:
        raise ValueError("fit needs a BestCheckpoint among its callbacks (it selects best.pt)")
    with RunWriter(rd, cfg, clear=overwrite and not resume, enabled=is_main) as writer:
        if ckpt is not None:
            restore(ckpt, run, state, callbacks)
            if not state.history and rd.metrics.is_file():  # a checkpoint from before the history key
                state.history = _readable_records(rd)[: state.epoch]
            if applied:
                state.resumes.append({"epoch": state.epoch, "overrides": applied})
            if is_main:
                for line in rd.repair(state.history, best.best_epoch, state.epoch, _best_epoch_on_disk(rd)):
                    print(f"robustrain: repaired {rd.path}: {line}", file=sys.stderr)
            if state.epoch >= cfg.train.epochs:
                _say(verbose, f"{rd.path} already finished ({state.epoch} of {cfg.train.epochs} epochs): "
                              "nothing to train, the final table is computed again")
            else:
                _say(verbose, f"resuming {rd.path} at epoch {state.epoch + 1}/{cfg.train.epochs}"
                              + (f" with {', '.join(applied)}" if applied else ""))
        train_model = training_module(run, ddp_model)  # compiled lazily, on the first step
        _say(verbose, f"run {rd.path}: {cfg.method_label} on {cfg.data.name} with {cfg.model.name}, "
                      f"{cfg.train.epochs} epochs x {len(run.loader)} steps, device {run.device}; "
                      f"best.pt: {selection_text(cfg, run.selection)}")
        if cfg.awp_note() is not None:
            _say(verbose, f"note: {cfg.awp_note()}")
        stopped_early: int | None = None
        while state.epoch < cfg.train.epochs:
            t_epoch = time.perf_counter()
            record = train_one_epoch(run, state, train_model, progress=progress, run_dir=rd.path)
            if applied and state.resumes and state.resumes[-1]["epoch"] == state.epoch:
                record["resumed_with"] = list(applied)
            state.epoch += 1
            # DDP: rank 0's BatchNorm statistics everywhere, so every rank evaluates the saved model
            ddp.broadcast_buffers([run.model, run.ema.module if run.ema is not None else None])
            stop = False
            for cb in callbacks:
                stop = cb.on_epoch_end(run, state, record, stopping=stop) or stop
            # the epoch's whole wall time (training, guard, selection): summed over processes below
            record["wall_time_s"] = time.perf_counter() - t_epoch
            state.history.append(record)
            # every rank holds the same state (DDP, replicated method buffers); rank 0 writes
            writer.save(checkpoint(run, state, callbacks), state.history, best=best.improved)
            ddp.barrier()  # DDP: the epoch's files exist on every rank's return from the epoch
            _say(verbose, _epoch_line(cfg, record, best.improved))
            if on_epoch_end is not None:
                on_epoch_end(state.epoch, record)
            if stop:
                stopped_early = state.epoch
                break

        summary = _final_table(run, rd, best, last_epoch=state.epoch, verbose=verbose, progress=progress)
        summary["train_time_s"] = training_time(state.history)
        summary["stopped_early"] = stopped_early
        if state.resumes:
            summary["resumed_with"] = state.resumes
        writer.write_summary(summary)
    return summary


def _readable_records(rd: RunDir) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` up to its first unreadable line (an interrupted append)."""
    records = []
    for line in rd.metrics.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return records


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


def _final_table(run: Run, rd: RunDir, best: BestCheckpoint, *, last_epoch: int, verbose: bool,
                 progress: bool) -> dict[str, Any]:
    """``eval.final_attacks`` on the first ``eval.final_n`` test images, for ``best.pt`` (selected
    on the validation split held out of the training data) and for ``last.pt``.

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
    rec = evaluate_checkpoint(path, x, y, attacks, warn_flags=True, **options)
    if path == rd.last or int(rec.loaded.epoch) == last_epoch:
        rec_last = rec  # best.pt is the last epoch's checkpoint: the same weights
    else:
        rec_last = evaluate_checkpoint(rd.last, x, y, attacks, warn_flags=True, **options)
    acc, acc_last = rec.accuracy, rec_last.accuracy
    selection = {**run.selection, "best_epoch": best.best_epoch}
    note = scale_note(cfg)
    summary = {
        "run_dir": str(rd.path),
        "checkpoint": path.name,
        "checkpoint_epoch": int(rec.loaded.epoch),
        "weights": rec.loaded.weights,
        "selection": selection_text(cfg, run.selection),
        "selection_split": selection,
        "best_epoch": best.best_epoch,
        "best_subset_robust_acc": best.best,
        "n_test": n,
        "protocol": PROTOCOL,
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
        print(f"protocol: {PROTOCOL}")
        if note is not None:
            print(f"note: {note}")
    return summary
