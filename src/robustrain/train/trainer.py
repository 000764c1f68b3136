"""The one training loop shared by every method and model.

``fit(cfg)`` builds the run from a :class:`~robustrain.config.Config`, trains with the
configured method, evaluates every ``eval.every`` epochs on a held-out subset (natural +
``eval.attack``, fp32, eval mode, EMA weights when on), keeps ``best.pt`` (by robust
accuracy) and ``last.pt``, and ends with the final table (``eval.final_attacks`` on the test
split, using ``best.pt``'s weights) written to ``summary.json``.

Nothing in the loop depends on which method runs: a method is ``method(model, batch) ->
LossOutput``. Per-step metrics stay on the device and are read once per ``train.log_every``
steps, so the step itself never waits for the host.

Resuming (``fit(cfg, resume=True)`` / ``robustrain train --resume RUN_DIR``) restores model,
optimiser, EMA, method state, step counter (the lr schedule is a pure function of it), RNG
states and epoch; data order and augmentation are functions of (seed, epoch), so on CPU a
resumed run is bit-identical to an uninterrupted one.

Under ``torchrun`` (``torchrun --nproc_per_node=N -m robustrain train ...``) the same loop
runs data-parallel: each rank trains on its shard of every global batch through
DistributedDataParallel, metrics and evaluation counts are all-reduced, rank 0 writes the
run folder, and every rank reads ``last.pt`` on resume; see
:mod:`robustrain.utils.distributed`.

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
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from robustrain.config import Config, ConfigError, config_from_dict, config_to_dict, dump_config
from robustrain.data import DeviceLoader, get_dataset_info, load_split
from robustrain.eval.robust import PROTOCOL, build_eval_attacks, evaluate_attacks, format_table
from robustrain.utils.errors import ConfigError, NonFiniteLossError, RunExistsError
from robustrain.utils.fileio import atomic_open
from robustrain.methods import MethodContext, create_method
from robustrain.models import create_model
from robustrain.utils import distributed as ddp
from robustrain.train.checkpoint import FORMAT, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from robustrain.train.ema import EMA
from robustrain.train.logging import MetricsLogger
from robustrain.schedules import lr_at, momentum_at

__all__ = ["fit", "build_model", "resolve_device", "NonFiniteLossError", "RunExistsError", "seed_everything"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return ddp.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but CUDA is not available here; use train.device=cpu")
    return ddp.local_device(dev)  # cuda -> cuda:LOCAL_RANK under torchrun


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: Config, device: torch.device | str = "cpu") -> nn.Module:
    """The [0,1]-input model of ``cfg`` (dataset normalisation composed in front)."""
    info = get_dataset_info(cfg.data.name)
    model = create_model(
        cfg.model.name,
        info.num_classes,
        mean=info.mean,
        std=info.std,
        in_channels=info.image_shape[0],
        **dict(cfg.model.params),
    )
    return model.to(device)


@dataclass
class _Run:
    cfg: Config
    device: torch.device
    model: nn.Module
    method: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    loader: DeviceLoader
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    guard_x: torch.Tensor
    guard_y: torch.Tensor


def _build(cfg: Config) -> _Run:
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.seed)
    info = get_dataset_info(cfg.data.name)
    train_x, train_y = load_split(cfg.data.name, "train", root=cfg.data.root, download=cfg.data.download)
    test_x, test_y = load_split(cfg.data.name, "test", root=cfg.data.root, download=cfg.data.download)
    extra = None
    if cfg.data.extra.path is not None:
        from robustrain.data import load_extra_data

        # generated images (data.extra): memory-mapped and validated here, before anything is written
        extra = load_extra_data(cfg.data.extra.path, image_shape=info.image_shape, num_classes=info.num_classes)
    model = build_model(cfg, device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ctx = MethodContext(
        num_classes=info.num_classes,
        image_shape=tuple(info.image_shape),
        # generated samples have ids N.. N+M-1 (MixedLoader): per-sample buffers cover them
        num_train=int(train_x.shape[0]) + (len(extra) if extra is not None else 0),
        epochs=cfg.train.epochs,
    )
    method = create_method(cfg.method.name, ctx, **dict(cfg.method.params)).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        nesterov=cfg.optim.nesterov,
        weight_decay=cfg.optim.weight_decay,
        # fused: the whole SGD update in one CUDA kernel (on CPU the default loop is as fast
        # for these sizes)
        **({"fused": True} if device.type == "cuda" else {}),
    )
    ema = EMA(model, cfg.train.ema_decay) if cfg.train.ema else None
    loader = DeviceLoader(
        train_x,
        train_y,
        cfg.data.batch_size,
        shuffle=True,
        # each dataset's standard augmentation: crop(pad 4)+flip for CIFAR, none for digits
        augment=cfg.data.augment and (info.aug_pad > 0 or info.aug_flip),
        pad=info.aug_pad,
        flip=info.aug_flip,
        drop_last=cfg.data.drop_last,
        seed=cfg.seed,
        device=device,
        rank=ddp.get_rank(),  # DDP: this rank's shard of every global batch
        world_size=ddp.get_world_size(),
    )
    if len(loader) == 0:
        raise ValueError(
            f"data.batch_size={cfg.data.batch_size} leaves no training batch for {train_x.shape[0]} images "
            "with data.drop_last=true; lower the batch size"
        )
    if extra is not None:
        from robustrain.data import MixedLoader

        # ratio originals + generated per batch; epoch = one original-split equivalent
        loader = MixedLoader(loader, extra.images, extra.labels, ratio=cfg.data.extra.ratio)
    n_eval = min(cfg.eval.n, int(test_x.shape[0]))
    n_guard = min(cfg.guard.n, int(train_x.shape[0]))
    return _Run(cfg, device, model, method, optimizer, ema, loader,
                test_x[:n_eval], test_y[:n_eval], test_x, test_y, train_x[:n_guard], train_y[:n_guard])


def _prepare_run_dir(cfg: Config, run_dir: Path | None, resume: bool, overwrite: bool) -> Path:
    if run_dir is None:
        run_dir = Path(cfg.out_dir) / cfg.run_name
    has_run = (run_dir / "last.pt").exists() or (run_dir / "metrics.jsonl").exists()
    if resume:
        if not (run_dir / "last.pt").exists():
            raise RunExistsError(f"cannot resume: {run_dir / 'last.pt'} does not exist")
        return run_dir
    if has_run:
        if not overwrite:
            raise RunExistsError(
                f"run folder {run_dir} already holds a run; pass --resume to continue it, "
                "--overwrite to replace it, or name=NEW_NAME for a new run"
            )
    return run_dir


def _clear_run_dir(run_dir: Path) -> None:
    for name in ("last.pt", "best.pt", "metrics.jsonl", "summary.json", "config.yaml"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)


def _checkpoint(run: _Run, epoch: int, step: int, best: float, best_epoch: int, metrics: dict,
                guard_best: float) -> dict:
    return {
        "format": FORMAT,
        "config": config_to_dict(run.cfg),
        "epoch": epoch,
        "step": step,
        "model": run.model.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "method": run.method.state_dict(),
        "rng": rng_state(),
        "best": best,
        "best_epoch": best_epoch,
        "guard_best": guard_best,
        "metrics": metrics,
    }


def _copy_atomic(src: Path, dst: Path) -> None:
    with open(src, "rb") as fsrc, atomic_open(dst, "wb") as fdst:
        shutil.copyfileobj(fsrc, fdst)


def _autocast(run: _Run):
    if run.cfg.train.bf16:
        return torch.autocast(run.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


#: ``torch.compile`` options of ``train.compile``: static shapes (``data.drop_last=true`` is
#: required), so every graph is specialised to the batch size and never re-traced as dynamic.
_COMPILE_OPTIONS: dict[str, Any] = {"dynamic": False}


def _training_module(run: _Run, model: nn.Module) -> nn.Module:
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
    return torch.compile(model, **_COMPILE_OPTIONS)


@contextlib.contextmanager
def _fast_math(run: _Run):
    """TF32 matmuls/convolutions and cuDNN autotuning for the training step on CUDA.

    Set around each step and restored after it, so evaluation (outside) runs with the
    process's own settings; a no-op on other devices. Uses the ``fp32_precision`` API only
    (mixing it with the legacy ``allow_tf32`` flags is an error in recent PyTorch).
    """
    if run.device.type != "cuda":
        yield
        return
    matmul, conv, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn
    saved = (matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark)
    matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark = "tf32", "tf32", True
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark = saved


def _say(verbose: bool, msg: str) -> None:
    if verbose:
        print(msg, flush=True)


def fit(
    cfg: Config,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    verbose: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
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

    Raises:
        RunExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        NonFiniteLossError: the loss became NaN/inf (checkpoints of earlier epochs are kept).
    """
    from tqdm.auto import tqdm

    if cfg.train.tensorboard:
        try:
            importlib.import_module("torch.utils.tensorboard")
        except ImportError:
            raise ConfigError("train.tensorboard=true needs TensorBoard: pip install tensorboard, "
                              "or set train.tensorboard=false") from None
    run_dir = _prepare_run_dir(cfg, Path(run_dir) if run_dir else None, resume, overwrite)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(run_dir / "last.pt")
        cfg = config_from_dict(ckpt["config"])
    if progress is None:
        progress = sys.stderr.isatty()
    # torchrun: join the process group; its rendezvous orders every rank's run-folder checks
    # above before rank 0's writes below
    ddp.init_distributed(cfg.train.device)
    is_main = ddp.is_main_process()
    progress, verbose = progress and is_main, verbose and is_main

    run = _build(cfg)  # data and model errors surface here, before the run folder is touched
    ddp_model = ddp.wrap_model(run.model, sync_bn=cfg.train.sync_bn)  # run.model in one process
    logger = None
    if is_main:  # rank 0 writes the run folder
        if not resume and overwrite:
            _clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
        logger = MetricsLogger(run_dir / "metrics.jsonl",
                               run_dir / "tensorboard" if cfg.train.tensorboard else None)
    start_epoch, step, best, best_epoch, guard_best = 0, 0, -1.0, -1, 0.0
    if ckpt is not None:
        run.model.load_state_dict(ckpt["model"])
        if run.ema is not None and ckpt.get("ema") is not None:
            run.ema.module.load_state_dict(ckpt["ema"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.method.load_state_dict(ckpt["method"])
        set_rng_state(ckpt["rng"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        best, best_epoch = float(ckpt["best"]), int(ckpt["best_epoch"])
        guard_best = float(ckpt.get("guard_best", 0.0))
        _say(verbose, f"resuming {run_dir} at epoch {start_epoch + 1}/{cfg.train.epochs}")

    epochs = cfg.train.epochs
    steps_per_epoch = len(run.loader)
    total_steps = epochs * steps_per_epoch
    eval_model = run.ema.module if run.ema is not None else run.model
    train_model = _training_module(run, ddp_model)  # compiled lazily, on the first step
    attack_names = list(dict.fromkeys(["natural", cfg.eval.attack]))  # eval.attack may be natural
    eval_attacks = build_eval_attacks(attack_names)
    guard_attacks = build_eval_attacks([cfg.guard.attack]) if cfg.guard.enabled else {}
    stopped_early: int | None = None
    _say(verbose, f"run {run_dir}: {cfg.method.name} on {cfg.data.name} with {cfg.model.name}, "
                  f"{epochs} epochs x {steps_per_epoch} steps, device {run.device}")

    t_run = time.perf_counter()
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            run.method.set_epoch(epoch)
            run.loader.set_epoch(epoch)
            ddp.seed_for_rank(cfg.seed, epoch)  # DDP: per-rank attack noise, a function of the epoch
            run.model.train()
            sums: dict[str, torch.Tensor] = {}
            n_seen = torch.zeros((), device=run.device)
            interval_loss = torch.zeros((), device=run.device)
            bar = tqdm(run.loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}",
                       disable=not progress, leave=False, dynamic_ncols=True)
            for i, batch in enumerate(bar):
                lr = lr_at(cfg.schedule, step, total_steps, cfg.optim.lr)
                momentum = momentum_at(cfg.schedule, step, total_steps)
                for group in run.optimizer.param_groups:
                    group["lr"] = lr
                    if momentum is not None:
                        group["momentum"] = momentum
                if cfg.train.channels_last:
                    batch = batch._replace(x=batch.x.contiguous(memory_format=torch.channels_last))
                with _fast_math(run):
                    with _autocast(run):
                        out = run.method(train_model, batch)
                    run.optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    run.optimizer.step()
                if run.ema is not None:
                    run.ema.update(run.model, step)
                step += 1
                bs = batch.y.shape[0]
                n_seen += bs
                interval_loss += out.loss.detach().float()
                _accumulate(sums, "loss", out.loss.detach().float() * bs)
                _accumulate(sums, "acc", (out.logits.detach().argmax(1) == batch.y).sum().float())
                for k, v in out.metrics.items():
                    _accumulate(sums, k, v.detach().float() * bs)
                if (i + 1) % cfg.train.log_every == 0 or i + 1 == steps_per_epoch:
                    # the mean over ranks: every rank takes the same NaN decision
                    mean_loss = (ddp.all_reduce_sum(interval_loss)
                                 / (((i % cfg.train.log_every) + 1) * ddp.get_world_size())).item()
                    interval_loss.zero_()
                    if not math.isfinite(mean_loss):
                        raise NonFiniteLossError(
                            f"non-finite training loss ({mean_loss}) at epoch {epoch + 1}, step {step}; "
                            f"checkpoints of completed epochs in {run_dir} are intact; lower optim.lr "
                            "or check the method's hyper-parameters, then --resume or start again"
                        )
                    if progress:
                        bar.set_postfix(loss=f"{mean_loss:.3f}",
                                        acc=f"{(sums['acc'] / n_seen).item():.3f}", lr=f"{lr:.4f}")
            totals = ddp.all_reduce_sum(torch.stack([*sums.values(), n_seen]))  # sums over ranks
            train_metrics = {k: v for k, v in zip(sums, (totals[:-1] / totals[-1]).tolist())}
            train_time = time.perf_counter() - t0
            # DDP: rank 0's BatchNorm statistics everywhere, so every rank evaluates the saved model
            ddp.broadcast_buffers([run.model, run.ema.module if run.ema is not None else None])

            record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": lr,
                                      "train": train_metrics, "epoch_time_s": train_time}
            collapsed = False
            if cfg.guard.enabled:
                guard_acc = _evaluate(run.model, run.guard_x, run.guard_y, guard_attacks,
                                      batch_size=cfg.data.eval_batch_size, device=run.device,
                                      seed=cfg.seed, progress=False)[cfg.guard.attack]
                collapsed = guard_best > 0 and guard_acc < (1 - cfg.guard.drop) * guard_best
                record["guard"] = {cfg.guard.attack: guard_acc, "best": max(guard_best, guard_acc)}
                if collapsed:
                    record["catastrophic_overfitting"] = True
                if collapsed and is_main:
                    print(f"robustrain: warning: catastrophic overfitting at epoch {epoch + 1}: "
                          f"{cfg.guard.attack} accuracy on the {run.guard_x.shape[0]} guard images fell from "
                          f"{100 * guard_best:.1f}% to {100 * guard_acc:.1f}%"
                          + ("; stopping (guard.stop=true), best.pt keeps the best model" if cfg.guard.stop
                             else " (guard.stop=true would stop the run here)"), file=sys.stderr, flush=True)
                guard_best = max(guard_best, guard_acc)
            last_epoch = epoch + 1 == epochs or (collapsed and cfg.guard.stop)
            if (epoch + 1) % cfg.eval.every == 0 or last_epoch:
                t1 = time.perf_counter()
                acc = _evaluate(eval_model, run.eval_x, run.eval_y, eval_attacks,
                                batch_size=cfg.data.eval_batch_size, device=run.device,
                                seed=cfg.seed, progress=progress)
                record["eval"] = acc
                record["eval_time_s"] = time.perf_counter() - t1
                robust = acc[cfg.eval.attack]
                is_best = robust >= best  # ties go to the later epoch (further along the schedule)
                if is_best:
                    best, best_epoch = robust, epoch + 1
            else:
                is_best = False
            record["best"] = {"epoch": best_epoch, cfg.eval.attack: best}
            if is_main:  # every rank holds the same state (DDP, replicated method buffers)
                save_checkpoint(_checkpoint(run, epoch + 1, step, best, best_epoch, record, guard_best),
                                run_dir / "last.pt")
                if is_best:
                    _copy_atomic(run_dir / "last.pt", run_dir / "best.pt")
                logger.log(record)
            ddp.barrier()  # DDP: the epoch's files exist on every rank's return from the epoch
            ev = record.get("eval")
            _say(verbose, f"epoch {epoch + 1:>3}/{epochs}  loss {train_metrics['loss']:.4f}  "
                          f"train-acc {100 * train_metrics['acc']:.2f}  "
                          + (f"nat {100 * ev['natural']:.2f}  {cfg.eval.attack} {100 * ev[cfg.eval.attack]:.2f}  "
                             if ev else "")
                          + f"lr {lr:.4f}  {train_time:.1f}s" + ("  *best" if is_best else ""))
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)
            if collapsed and cfg.guard.stop:
                stopped_early = epoch + 1
                break
    finally:
        if logger is not None:
            logger.close()

    summary = _final_eval(run, run_dir, best, best_epoch, verbose, progress)
    summary["train_time_s"] = time.perf_counter() - t_run
    summary["stopped_early"] = stopped_early
    if is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _accumulate(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    if key in sums:
        sums[key] += value
    else:
        sums[key] = value.clone()


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Any, **kwargs: Any) -> dict[str, float]:
    """``evaluate_attacks``; under DDP sharded (rank r takes images r, r + W, ...) with the
    correct-counts all-reduced, so every rank gets the same accuracies (exact integer sums)
    and takes the same best.pt / guard decisions. The protocol is unchanged; only which
    random start an image draws differs from a one-process evaluation."""
    if not ddp.is_distributed():
        return evaluate_attacks(model, x, y, attacks, **kwargs)
    attacks = build_eval_attacks(attacks) if isinstance(attacks, (list, tuple)) else attacks
    xs, ys = ddp.shard(x), ddp.shard(y)
    acc = evaluate_attacks(model, xs, ys, attacks, **kwargs) if xs.shape[0] else {}
    device = next(model.parameters()).device
    counts = torch.tensor([round(acc.get(name, 0.0) * xs.shape[0]) for name in attacks],
                          dtype=torch.float64, device=device)
    return dict(zip(attacks, (ddp.all_reduce_sum(counts) / x.shape[0]).tolist()))


def _final_eval(run: _Run, run_dir: Path, best: float, best_epoch: int, verbose: bool,
                progress: bool) -> dict[str, Any]:
    cfg = run.cfg
    which = "best.pt" if (run_dir / "best.pt").exists() else "last.pt"
    ckpt = load_checkpoint(run_dir / which, map_location=run.device)
    model = build_model(cfg, run.device)
    model.load_state_dict(ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])
    n = cfg.eval.final_n or int(run.test_x.shape[0])
    x, y = run.test_x[:n], run.test_y[:n]
    acc = _evaluate(model, x, y, list(cfg.eval.final_attacks), batch_size=cfg.data.eval_batch_size,
                    device=run.device, seed=cfg.seed, progress=progress)
    summary = {
        "run_dir": str(run_dir),
        "checkpoint": which,
        "checkpoint_epoch": int(ckpt["epoch"]),
        "weights": "ema" if ckpt.get("ema") is not None else "model",
        "selection": f"best {cfg.eval.attack} on the first {run.eval_x.shape[0]} test images",
        "best_epoch": best_epoch,
        "best_subset_robust_acc": best,
        "n_test": n,
        "protocol": PROTOCOL,
        "final": acc,
        "config": config_to_dict(cfg),
    }
    if verbose:
        print(f"\nfinal evaluation of {run_dir / which} (epoch {ckpt['epoch']}, {summary['weights']} weights) "
              f"on {n} {cfg.data.name} test images:")
        print(format_table({f"{cfg.method.name} / {cfg.model.name}": acc}, list(acc)))
        print(f"protocol: {PROTOCOL}")
    return summary
