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

from dataclasses import dataclass
from typing import Any, Iterable

from robustrain.artifacts import FORMAT, rng_state, set_rng_state
from robustrain.build import Run
from robustrain.config import config_to_dict
from robustrain.train.callbacks import Callback

__all__ = ["TrainState", "checkpoint", "restore"]


@dataclass
class TrainState:
    """The training loop's position.

    Attributes:
        epoch: epochs completed (the next epoch to run, 0-based).
        step: optimisation steps taken (the lr schedule is a pure function of it).
    """

    epoch: int = 0
    step: int = 0

    def state_dict(self) -> dict[str, int]:
        # top-level checkpoint keys, as every robustrain checkpoint has had them
        return {"epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])


def checkpoint(run: Run, state: TrainState, callbacks: Iterable[Callback], record: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint of ``run`` after ``record``'s epoch: a plain dict for ``weights_only`` loads."""
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
        "metrics": record,
    }


def restore(ckpt: dict[str, Any], run: Run, state: TrainState, callbacks: Iterable[Callback]) -> None:
    """Put a checkpoint written by :func:`checkpoint` back into ``run``, ``state`` and ``callbacks``.

    Checkpoints written before callbacks had their own keys keep the selection and guard state at
    the top level (``best``, ``best_epoch``, ``guard_best``); each callback reads those itself.
    """
    run.model.load_state_dict(ckpt["model"])
    if run.ema is not None and ckpt.get("ema") is not None:
        run.ema.module.load_state_dict(ckpt["ema"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.method.load_state_dict(ckpt["method"])
    set_rng_state(ckpt["rng"])
    state.load_state_dict(ckpt)
    saved = ckpt.get("callbacks")
    for cb in callbacks:
        cb.load_state_dict(saved[cb.name] if saved is not None and cb.name in saved else cb.legacy_state(ckpt))
