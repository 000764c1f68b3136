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
epoch), so on CPU a resumed run is bit-identical to an uninterrupted one. With
``train.checkpoint_every=N`` ``last.pt`` is also written after every N-th step inside an epoch,
with the epoch's progress (:class:`~robustrain.train.state.EpochProgress`: batches done, metric
sums, per-step records); a resume from it skips the batches done in the loader's plan of that
epoch and ends the epoch with the record an uninterrupted run writes. ``metrics.jsonl`` and
``best.pt`` only ever get completed epochs.

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
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from robustrain.artifacts import RunDir, load_checkpoint, read_metrics
from robustrain.build import Run, build_run
from robustrain.config import Config, config_from_dict, config_to_dict, parse_overrides, upgrade_saved_config
from robustrain.eval.final import final_summary, selection_text
from robustrain.methods.at import prediction_stats
from robustrain.methods.sample_state import describe_sample_state
from robustrain.schedules import lr_at, momentum_at
from robustrain.train.awp import AWP
from robustrain.train.callbacks import BestCheckpoint, Callback, default_callbacks
from robustrain.train.logging import RunWriter
from robustrain.train.state import EpochProgress, TrainState, checkpoint, restore
from robustrain.train.trackers import check_trackers
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


def _set_lr(run: Run, step: int, total_steps: int) -> float:
    """Set the optimiser's lr (and cyclic momentum) for 0-based global ``step``; returns the lr."""
    cfg = run.cfg
    lr = lr_at(cfg.schedule, step, total_steps, cfg.optim.lr)
    momentum = momentum_at(cfg.schedule, step, total_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
        if momentum is not None:
            group["momentum"] = momentum
    return lr


def _step_sums(out: Any, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """One step's per-sample sums on the device (no host sync): loss, accuracy, the method's metrics
    and the signs of a one-class collapse (issue 19; under DDP ``majority`` is each rank's share of
    its own part of the batch, averaged over ranks)."""
    bs, logits = y.shape[0], out.logits.detach()
    sums = {"loss": out.loss.detach().float() * bs, "acc": (logits.argmax(1) == y).sum().float()}
    sums.update({k: v.detach().float() * bs for k, v in out.metrics.items()})
    sums.update({k: v * bs for k, v in prediction_stats(logits).items()})
    return sums


def train_one_epoch(run: Run, state: TrainState, train_model: nn.Module, *, progress: bool = False,
                    run_dir: Path | None = None, on_step: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train epoch ``state.epoch`` (0-based), steps ``state.step`` + 0, 1, ...; the caller
    advances ``state.epoch`` and ``state.step`` once the epoch is done (``fit``'s ``_epoch``).

    The epoch's progress lives in ``state.partial`` (:class:`~robustrain.train.state.EpochProgress`),
    current after every step; ``on_step()`` runs after each step (``fit`` writes the mid-epoch
    checkpoints of ``train.checkpoint_every`` from it). When ``state.partial`` is already set (a
    resume from such a checkpoint) the epoch goes on from batch ``state.partial.step`` of the
    loader's plan, with its sums and the checkpoint's RNG states. A completed epoch leaves
    ``state.partial`` None.

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
    resumed = state.partial is not None
    prog = state.partial if resumed else EpochProgress.start(run.device)
    state.partial, before_s = prog, prog.elapsed_s
    run.method.set_epoch(epoch)
    run.loader.set_epoch(epoch, start_step=prog.step)  # the batches done are skipped, the plan is the same
    if not resumed:  # a resumed epoch goes on with the RNG states of its checkpoint
        ddp.seed_for_rank(cfg.seed, epoch)  # DDP: per-rank attack noise, a function of the epoch
    run.model.train()
    awp = AWP(cfg.awp.gamma, cfg.awp.warmup) if cfg.awp.enabled else None
    if awp is not None and not awp.active(epoch):
        awp = None  # the official warm-up: no AWP before 1-based epoch awp.warmup
    sums = prog.sums  # the epoch's per-sample sums
    interval = prog.interval  # the same since the last log point
    n_seen, interval_n = prog.n_seen, prog.interval_n
    steps_log = prog.steps
    lr = cfg.optim.lr
    bar = tqdm(run.loader, total=steps_per_epoch, initial=prog.step, desc=f"epoch {epoch + 1}/{epochs}",
               disable=not progress, leave=False, dynamic_ncols=True)
    for i, batch in enumerate(bar, start=prog.step):
        step = state.step + i  # 0-based global step of this batch; the lr schedule is a function of it
        lr = _set_lr(run, step, total_steps)
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
            run.ema.update(run.model, step)
        bs = batch.y.shape[0]
        n_seen += bs
        interval_n += bs
        for k, v in _step_sums(out, batch.y).items():
            _accumulate(sums, k, v)
            _accumulate(interval, k, v)
        if (i + 1) % cfg.train.log_every == 0 or i + 1 == steps_per_epoch:
            # one host read per log point; means over ranks, so every rank takes the same NaN decision
            means = _means(interval, interval_n)
            interval.clear()
            interval_n.zero_()
            if not math.isfinite(means["loss"]):
                raise NonFiniteLossError(_nan_advice(means["loss"], epoch, step + 1, cfg.optim.lr, run_dir))
            steps_log.append({"step": step + 1, "lr": lr, **means})
            if progress:
                bar.set_postfix(loss=f"{means['loss']:.3f}",
                                acc=f"{(sums['acc'] / n_seen).item():.3f}", lr=f"{lr:.4f}")
        prog.step = i + 1
        if on_step is not None:
            prog.elapsed_s = before_s + time.perf_counter() - t0
            on_step()
    state.partial = None  # the epoch is complete: its progress is the record
    return {"epoch": epoch + 1, "step": state.step + steps_per_epoch, "lr": lr, "train": _means(sums, n_seen),
            "steps": steps_log, "epoch_time_s": before_s + time.perf_counter() - t0}


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
    if run_dir is not None and (epoch > 0 or RunDir(run_dir).last.is_file()):
        # epoch 1 may have a last.pt too: a train.checkpoint_every checkpoint from inside the epoch
        kept = f"the {epoch} completed epoch(s) in {run_dir} are" if epoch > 0 else f"{run_dir}/last.pt (inside epoch 1) is"
        return (f"{where}; {kept} intact: continue with a lower learning "
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
RESUME_OVERRIDES = ("optim.lr", "train.log_every", "eval.every", "train.checkpoint_every")


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
        ConfigError: a tracker of ``train.loggers`` is unknown or its package is missing (checked
            before any work; a tracker failing later is a warning, never the run's end).
        NonFiniteLossError: the loss became NaN/inf (checkpoints of earlier epochs are kept).
    """
    if resume_overrides and not resume:
        raise ValueError("resume_overrides apply to resume=True only")
    rd = RunDir(run_dir if run_dir else Path(cfg.out_dir) / cfg.run_name).prepare(resume=resume, overwrite=overwrite)
    applied: list[str] = []
    if resume:
        cfg, applied = _resume_config(load_checkpoint(rd.last)["config"], resume_overrides)
    check_trackers(cfg.train.trackers)  # a tracker's missing package: one line with its install command
    # torchrun: join the process group; its rendezvous orders every rank's run-folder checks
    # above before rank 0's writes below
    ddp.init_distributed(cfg.train.device)
    is_main = ddp.is_main_process()
    progress = (sys.stderr.isatty() if progress is None else progress) and is_main
    verbose = verbose and is_main
    # rank 0 writes the folder under its lock; a start that fails before writing leaves nothing
    with rd.open(resume=resume, overwrite=overwrite, writer=is_main):
        ckpt = load_checkpoint(rd.last) if resume else None
        run = build_run(cfg)  # data and model errors surface here, before a file is written
        ddp_model = ddp.wrap_model(run.model, sync_bn=cfg.train.sync_bn)  # run.model in one process
        callbacks = default_callbacks(cfg, progress=progress, verbose=is_main) if callbacks is None else callbacks
        best = next((cb for cb in callbacks if isinstance(cb, BestCheckpoint)), None)
        if best is None:
            raise ValueError("fit needs a BestCheckpoint among its callbacks (it selects best.pt)")
        state = TrainState()
        with RunWriter(rd, cfg, clear=overwrite and not resume, enabled=is_main, resume=resume,
                       selection=run.selection) as writer:
            if ckpt is not None:
                _restore(ckpt, run, state, callbacks, rd, best, applied, is_main=is_main, verbose=verbose)
            train_model = training_module(run, ddp_model)  # compiled lazily, on the first step
            _say(verbose, _header(cfg, rd, run))
            stopped_early: int | None = None
            while state.epoch < cfg.train.epochs:
                record, stop = _epoch(run, state, train_model, callbacks, rd, applied, progress=progress,
                                      on_step=_mid_epoch_saver(run, state, callbacks, writer))
                writer.save(checkpoint(run, state, callbacks), state.history, best=best.improved)
                ddp.barrier()  # DDP: the epoch's files exist on every rank's return from the epoch
                _say(verbose, _epoch_line(cfg, record, best.improved))
                if on_epoch_end is not None:
                    on_epoch_end(state.epoch, record)
                if stop:
                    stopped_early = state.epoch
                    break
            summary = final_summary(run, rd, best_epoch=best.best_epoch, best_value=best.best,
                                    last_epoch=state.epoch, verbose=verbose, progress=progress)
            summary.update(train_time_s=training_time(state.history), stopped_early=stopped_early,
                           **({"resumed_with": state.resumes} if state.resumes else {}))
            writer.write_summary(summary, state.history)
    return summary


def _restore(ckpt: dict[str, Any], run: Run, state: TrainState, callbacks: list[Callback], rd: RunDir,
             best: BestCheckpoint, applied: list[str], *, is_main: bool, verbose: bool) -> None:
    """Resume: load the checkpoint, bring the run folder in line with it, say where training goes on."""
    restore(ckpt, run, state, callbacks)
    if not state.history and rd.metrics.is_file():  # a checkpoint from before the history key
        state.history = read_metrics(rd.metrics, strict=False)[: state.epoch]
    if applied:
        state.resumes.append({"epoch": state.epoch, "overrides": applied})
    if is_main:
        for line in rd.repair(state.history, best.best_epoch, state.epoch, _best_epoch_on_disk(rd),
                              mid_epoch=state.partial is not None):
            print(f"robustrain: repaired {rd.path}: {line}", file=sys.stderr)
    cfg = run.cfg
    if state.epoch >= cfg.train.epochs:
        _say(verbose, f"{rd.path} already finished ({state.epoch} of {cfg.train.epochs} epochs): "
                      "nothing to train, the final table is computed again")
    else:
        inside = f", step {state.partial.step + 1}/{len(run.loader)}" if state.partial is not None else ""
        _say(verbose, f"resuming {rd.path} at epoch {state.epoch + 1}/{cfg.train.epochs}{inside}"
                      + (f" with {', '.join(applied)}" if applied else ""))


def _header(cfg: Config, rd: RunDir, run: Run) -> str:
    """The run's first line: what trains where, and how best.pt is chosen (+ an AWP warm-up note)."""
    line = (f"run {rd.path}: {cfg.method_label} on {cfg.data.name} with {cfg.model.name}, "
            f"{cfg.train.epochs} epochs x {len(run.loader)} steps, device {run.device}; "
            f"best.pt: {selection_text(cfg, run.selection)}")
    note = cfg.awp_note()
    lines = [line] + [f"per-sample state: {text}" for text in describe_sample_state(run.method)]
    return "\n".join(lines + ([] if note is None else [f"note: {note}"]))


def _mid_epoch_saver(run: Run, state: TrainState, callbacks: list[Callback],
                     writer: RunWriter) -> Callable[[], None] | None:
    """``train.checkpoint_every=N``: after every N-th optimisation step of the run that does not
    end an epoch (the epoch's own checkpoint follows that one), ``last.pt`` with the epoch's
    progress (:meth:`RunWriter.save_progress`: rank 0 writes; every rank builds the checkpoint,
    a collective under DDP). None when off."""
    every, steps = run.cfg.train.checkpoint_every, len(run.loader)
    if not every:
        return None

    def save() -> None:
        done = state.partial.step
        if done < steps and (state.step + done) % every == 0:
            writer.save_progress(checkpoint(run, state, callbacks))

    return save


def _epoch(run: Run, state: TrainState, train_model: nn.Module, callbacks: list[Callback], rd: RunDir,
           applied: list[str], *, progress: bool,
           on_step: Callable[[], None] | None = None) -> tuple[dict[str, Any], bool]:
    """One epoch: train, advance the loop counters, run the callbacks; (its record, stop?).

    ``state.epoch`` and ``state.step`` move here and only here (the step count of the epoch is
    the loader's length), and the record joins ``state.history``.
    """
    t_epoch = time.perf_counter()
    before_s = state.partial.elapsed_s if state.partial is not None else 0.0  # a resumed epoch's earlier part
    record = train_one_epoch(run, state, train_model, progress=progress, run_dir=rd.path, on_step=on_step)
    state.step += len(run.loader)
    state.epoch += 1
    if applied and state.resumes and state.resumes[-1]["epoch"] == state.epoch - 1:
        record["resumed_with"] = list(applied)
    # DDP: rank 0's BatchNorm statistics everywhere, so every rank evaluates the saved model
    ddp.broadcast_buffers([run.model, run.ema.module if run.ema is not None else None])
    stop = False
    for cb in callbacks:
        stop = cb.on_epoch_end(run, state, record, stopping=stop) or stop
    # the epoch's whole wall time (training, guard, selection): summed over processes by training_time
    record["wall_time_s"] = before_s + time.perf_counter() - t_epoch
    state.history.append(record)
    return record, stop
