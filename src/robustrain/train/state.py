"""Loop state that owns its checkpoint keys, and the checkpoint of a whole run.

:class:`TrainState` is the loop's position (epochs completed, optimisation steps taken), in
the spirit of torchtune's ``TrainingProgress``; it writes and reads its own keys. Every other
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

from robustrain.artifacts import FORMAT
from robustrain.artifacts.checkpoint import rng_state, set_rng_state
from robustrain.utils.errors import CheckpointError
from robustrain.build import Run
from robustrain.config import config_to_dict
from robustrain.train.callbacks import Callback

__all__ = ["TrainState", "checkpoint", "restore"]


@dataclass
class TrainState:
    """The training loop's position and record.

    Attributes:
        epoch: epochs completed (the next epoch to run, 0-based).
        step: optimisation steps taken (the lr schedule is a pure function of it).
        history: one metrics record per completed epoch (``metrics.jsonl`` is re-derived from it,
            so the checkpoint is the single commit point of an epoch).
        resumes: one entry per ``--resume`` that changed settings: ``{"epoch", "overrides"}``.
    """

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        # top-level checkpoint keys, as every robustrain checkpoint has had them
        return {"epoch": self.epoch, "step": self.step, "history": list(self.history), "resumes": list(self.resumes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state.get("history") or [])
        self.resumes = list(state.get("resumes") or [])

    def __repr__(self) -> str:
        return f"TrainState(epoch={self.epoch}, step={self.step})"


def checkpoint(run: Run, state: TrainState, callbacks: Iterable[Callback]) -> dict[str, Any]:
    """The checkpoint of ``run`` after ``state.epoch`` epochs (the epoch's record is the last of
    ``state.history``): a plain dict for ``weights_only`` loads."""
    return {
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
    saved = ckpt.get("callbacks")
    for cb in callbacks:
        cb.load_state_dict(saved[cb.name] if saved is not None and cb.name in saved else cb.legacy_state(ckpt))
