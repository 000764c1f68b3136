"""Loop state that owns its checkpoint keys, and the checkpoint of a whole run.

:class:`TrainState` is the loop's position (epochs completed, optimisation steps taken), in
the spirit of torchtune's ``TrainingProgress``; it writes and reads its own keys. Inside an
epoch it also holds an :class:`EpochProgress` (batches done, the epoch's metric sums so far),
written only into mid-epoch checkpoints (``train.checkpoint_every``, key ``partial``), so a
run resumed there ends the epoch with the record an uninterrupted run writes. Every other
piece of a checkpoint is owned by the object it describes: model, EMA, optimiser and method
(their ``state_dict``), each callback (its ``state_dict`` under ``callbacks.<name>``), the
model card (:class:`~robustrain.artifacts.ModelSpec`) and the RNG states. :func:`checkpoint`
assembles them and :func:`restore` puts them back, so a resumed run continues bit-identically.

Example:
    >>> state = TrainState(epoch=3, step=120)
    >>> other = TrainState()
    >>> other.load_state_dict(state.state_dict())
    >>> other
    TrainState(epoch=3, step=120)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from robustrain.artifacts import FORMAT
from robustrain.artifacts.checkpoint import rng_state, set_rng_state
from robustrain.utils.errors import CheckpointError
from robustrain.build import Run
from robustrain.config import config_to_dict
from robustrain.train.callbacks import Callback
from robustrain.utils import distributed as ddp

__all__ = ["EpochProgress", "TrainState", "checkpoint", "restore"]


@dataclass
class EpochProgress:
    """An epoch under way: how many of its batches are done and its metric sums so far.

    :func:`~robustrain.train.loop.train_one_epoch` keeps it current after every step, so a
    checkpoint taken between two steps holds all the rest of the epoch needs to end with the
    record (and ``metrics.jsonl`` line) of an uninterrupted epoch.

    Attributes:
        step: batches of the epoch done; the loader resumes at this one (``set_epoch(epoch, step)``).
        sums: the epoch's per-sample metric sums (device tensors; their order is the record's).
        n_seen: samples of the epoch seen (this rank).
        interval, interval_n: the same since the last log point (``train.log_every``).
        steps: the epoch's per-log-point records so far (the record's ``steps``).
        elapsed_s: training seconds of the epoch spent by earlier processes (counted in the
            resumed epoch's ``epoch_time_s``; work after the last checkpoint is not).
        world_size: processes that trained it: a mid-epoch checkpoint resumes with as many.

    Example:
        >>> p = EpochProgress.start("cpu")
        >>> p.step, float(p.n_seen)
        (0, 0.0)
    """

    step: int
    sums: dict[str, torch.Tensor]
    n_seen: torch.Tensor
    interval: dict[str, torch.Tensor]
    interval_n: torch.Tensor
    steps: list[dict[str, float]] = field(default_factory=list)
    elapsed_s: float = 0.0
    world_size: int = 1

    @classmethod
    def start(cls, device: torch.device | str) -> "EpochProgress":
        """A new epoch's progress: nothing done, sums empty, counters zero on ``device``."""
        zero = torch.zeros((), device=device)
        return cls(0, {}, zero, {}, zero.clone(), world_size=ddp.get_world_size())

    def state_dict(self) -> dict[str, Any]:
        """The progress as checkpoint entries. Under DDP the sums are every rank's totals (a
        collective: every rank calls it at the same step); rank 0 carries them on resume."""
        return {"step": self.step, "sums": _totals(self.sums), "n_seen": _totals({"n": self.n_seen})["n"],
                "interval": _totals(self.interval), "interval_n": _totals({"n": self.interval_n})["n"],
                "steps": list(self.steps), "elapsed_s": self.elapsed_s, "world_size": self.world_size}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "EpochProgress":
        return cls(int(state["step"]), dict(state["sums"]), state["n_seen"], dict(state["interval"]),
                   state["interval_n"], list(state["steps"]), float(state["elapsed_s"]), int(state["world_size"]))

    def resume_on(self, device: torch.device) -> None:
        """Move the sums to ``device``; on DDP ranks other than 0 start them at zero (rank 0's
        hold every rank's totals, and the log points all-reduce them)."""
        keep = ddp.is_main_process()
        place = lambda t: t.to(device) if keep else torch.zeros_like(t, device=device)  # noqa: E731
        self.sums = {k: place(v) for k, v in self.sums.items()}
        self.interval = {k: place(v) for k, v in self.interval.items()}
        self.n_seen, self.interval_n = place(self.n_seen), place(self.interval_n)


def _totals(sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies of ``sums`` summed over ranks (plain copies in one process)."""
    return {k: ddp.all_reduce_sum(v.detach().clone()) for k, v in sums.items()}


@dataclass
class TrainState:
    """The training loop's position and record.

    Attributes:
        epoch: epochs completed (the next epoch to run, 0-based).
        step: optimisation steps taken (the lr schedule is a pure function of it).
        history: one metrics record per completed epoch (``metrics.jsonl`` is re-derived from it,
            so the checkpoint is the single commit point of an epoch).
        resumes: one entry per ``--resume`` that changed settings: ``{"epoch", "overrides"}``.
        partial: the epoch under way (None between epochs); ``epoch`` and ``step`` keep
            counting completed epochs only, so a mid-epoch ``last.pt`` reads as the last
            completed epoch to everything but a resume.
    """

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    partial: EpochProgress | None = None

    def state_dict(self) -> dict[str, Any]:
        # top-level checkpoint keys, as every robustrain checkpoint has had them; ``partial``
        # only in a checkpoint written inside an epoch
        state = {"epoch": self.epoch, "step": self.step, "history": list(self.history),
                 "resumes": list(self.resumes)}
        if self.partial is not None:
            state["partial"] = self.partial.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state.get("history") or [])
        self.resumes = list(state.get("resumes") or [])
        partial = state.get("partial")
        self.partial = EpochProgress.from_state_dict(partial) if partial is not None else None

    def __repr__(self) -> str:
        inside = f", partial_step={self.partial.step}" if self.partial is not None else ""
        return f"TrainState(epoch={self.epoch}, step={self.step}{inside})"


def checkpoint(run: Run, state: TrainState, callbacks: Iterable[Callback]) -> dict[str, Any]:
    """The checkpoint of ``run`` after ``state.epoch`` epochs (the epoch's record is the last of
    ``state.history``), plus ``state.partial``'s steps of the next when written inside an epoch:
    a plain dict for ``weights_only`` loads.

    Inside an epoch under DDP this is a collective (every rank calls it at the same step): the
    metric sums are totalled and every rank's RNG states are gathered (``rng_ranks``), since
    each rank draws its own attack noise and goes on from its own stream.
    """
    ckpt = {
        "format": FORMAT,
        "config": config_to_dict(run.cfg),
        "model_card": run.spec.to_dict(),
        **state.state_dict(),
        "model": run.model.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "method": run.method.state_dict(),
        "rng": rng_state(),
        "callbacks": {cb.name: cb.state_dict() for cb in callbacks},
    }
    if state.partial is not None and ddp.is_distributed():
        ckpt["rng_ranks"] = ddp.all_gather_object(rng_state())
    return ckpt


def restore(ckpt: dict[str, Any], run: Run, state: TrainState, callbacks: Iterable[Callback]) -> None:
    """Put a checkpoint written by :func:`checkpoint` back into ``run``, ``state`` and ``callbacks``.

    Checkpoints written before callbacks had their own keys keep the selection and guard state at
    the top level (``best``, ``best_epoch``, ``guard_best``); each callback reads those itself.

    Raises:
        CheckpointError: the checkpoint lacks a piece a resume needs (an export or a damaged file),
            or holds another model's, optimiser's or method's state.
    """
    missing = [k for k in ("model", "optimizer", "method", "rng", "step") if ckpt.get(k) is None]
    if missing:
        raise CheckpointError(f"cannot resume from this checkpoint: it lacks {', '.join(missing)} (not a "
                              "training checkpoint, or damaged); start the run again with --overwrite")
    try:
        run.model.load_state_dict(ckpt["model"])
        if run.ema is not None and ckpt.get("ema") is not None:
            run.ema.module.load_state_dict(ckpt["ema"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.method.load_state_dict(ckpt["method"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"cannot resume: the checkpoint holds another model's or method's state "
                              f"({first[:160]}); resume it with the config it was written with") from None
    set_rng_state(ckpt["rng"])
    state.load_state_dict(ckpt)
    if state.partial is not None:
        world = ddp.get_world_size()
        if state.partial.world_size != world:
            raise CheckpointError(
                f"last.pt was written inside epoch {state.epoch + 1} (after step {state.partial.step}) by "
                f"{state.partial.world_size} process(es), and this run has {world}: resume it with "
                f"{state.partial.world_size} (torchrun --nproc_per_node={state.partial.world_size})")
        if "rng_ranks" in ckpt:
            set_rng_state(ckpt["rng_ranks"][ddp.get_rank()])
        state.partial.resume_on(run.device)
    saved = ckpt.get("callbacks")
    for cb in callbacks:
        cb.load_state_dict(saved[cb.name] if saved is not None and cb.name in saved else cb.legacy_state(ckpt))
