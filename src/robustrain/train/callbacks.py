"""End-of-epoch callbacks with their own checkpointed state: the overfitting guard and the
best-checkpoint selection (as Lightning's ``EarlyStopping`` and ``ModelCheckpoint``).

A callback's ``on_epoch_end(run, state, record, stopping=...)`` sees the epoch's record (it may
add keys to it) and returns whether training should stop; its ``state_dict`` is saved under
``callbacks.<name>`` in every checkpoint and restored on ``--resume``. The trainer calls the
callbacks in order, passing on whether an earlier one asked to stop.

Example:
    >>> guard = OverfitGuard(attack="pgd", drop=0.5, stop=True)
    >>> guard.update(0.40), guard.update(0.42), guard.update(0.10)
    (False, False, True)
    >>> guard.state_dict()
    {'best': 0.42}
    >>> best = BestCheckpoint(monitor="pgd20")
    >>> best.update(0.30, epoch=1), best.update(0.25, epoch=2), best.update(0.30, epoch=3)
    (True, False, True)
    >>> best.state_dict()
    {'best': 0.3, 'best_epoch': 3}
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from robustrain.build import Run
from robustrain.config import Config
from robustrain.data.batch import to_unit_float
from robustrain.eval.robust import build_eval_attacks, evaluate_robustness
from robustrain.utils.runtime import fp32_eval

if TYPE_CHECKING:  # annotations only: state.py imports this module
    from robustrain.train.state import TrainState

__all__ = ["BestCheckpoint", "Callback", "ONE_CLASS", "OverfitGuard", "default_callbacks", "one_class_share"]

#: a model that gives this fraction of a balanced image set to ONE class has collapsed (issue 19:
#: UIAT's eval-mode target drove small models to one class early in training)
ONE_CLASS = 0.8


def one_class_share(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int,
                    device: torch.device | str) -> tuple[float, int, float]:
    """(fraction of ``x`` given to the most frequent predicted class, that class, natural
    accuracy) of ``model`` in fp32 eval mode (running statistics), the mode of every evaluation.
    ``x``: uint8 (0..255) or float [0, 1] images.

    Example:
        >>> net = nn.Linear(2, 3)
        >>> with torch.no_grad():
        ...     _ = net.bias.copy_(torch.tensor([0.0, 9.0, 0.0]))
        >>> one_class_share(net, torch.zeros(4, 2), torch.tensor([1, 1, 0, 2]), batch_size=2, device="cpu")
        (1.0, 1, 0.5)
    """
    preds = []
    with torch.no_grad(), fp32_eval(model):
        for i in range(0, x.shape[0], batch_size):
            preds.append(model(to_unit_float(x[i:i + batch_size].to(device))).argmax(dim=1).cpu())
    pred = torch.cat(preds)
    counts = torch.bincount(pred)
    return float(counts.max()) / pred.numel(), int(counts.argmax()), float((pred == y.cpu()).float().mean())


class Callback:
    """Base of end-of-epoch callbacks; ``name`` is its key in checkpoints."""

    name: str = "callback"

    def on_epoch_end(self, run: Run, state: "TrainState", record: dict[str, Any], *, stopping: bool) -> bool:
        """Called after each epoch (``state.epoch`` epochs done); return True to stop training."""
        return False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def legacy_state(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        """This callback's state from a checkpoint written before ``callbacks`` existed."""
        return {}


class OverfitGuard(Callback):
    """Catastrophic-overfitting guard: robust accuracy on a fixed training batch after every epoch.

    When it falls below ``(1 - drop)`` times the best seen so far the epoch is flagged
    (``record["catastrophic_overfitting"] = True``), a warning is printed and, with ``stop``,
    training ends (``best.pt`` keeps the best model).

    It also watches for a one-class collapse, whatever the method: when the natural predictions
    on the guard images or on the held-out validation images give :data:`ONE_CLASS` (80%) or
    more of them to one class, the epoch is flagged (``record["one_class_collapse"]``) and a
    warning names the epoch, the class, the share and the natural accuracy. The shares are in
    ``record["guard"]`` (``majority``, ``val_majority``) every epoch. The batch is ``run.guard_x`` (images of the
    training part, not of the validation split); the model
    evaluated is the raw model (not the EMA), in fp32 and eval mode.

    Args:
        attack: registry attack name (``pgd``: PGD-10, 8/255).
        drop: relative fall that counts as a collapse (0.5).
        stop: end the run at a collapse.
        batch_size: evaluation batch size.
        seed: seed of the attack's random starts.
        verbose: print the warning (rank 0).
    """

    name = "overfit_guard"

    def __init__(self, attack: str = "pgd", drop: float = 0.5, stop: bool = False, *, batch_size: int = 256,
                 seed: int = 0, verbose: bool = True) -> None:
        self.attack, self.drop, self.stop = attack, drop, stop
        self.batch_size, self.seed, self.verbose = batch_size, seed, verbose
        self.best = 0.0
        self._attacks = build_eval_attacks([attack])

    @classmethod
    def from_config(cls, cfg: Config, *, verbose: bool = True) -> "OverfitGuard | None":
        """The guard of ``cfg.guard`` (None when ``guard.enabled=false``)."""
        if not cfg.guard.enabled:
            return None
        return cls(cfg.guard.attack, cfg.guard.drop, cfg.guard.stop, batch_size=cfg.data.eval_batch_size,
                   seed=cfg.seed, verbose=verbose)

    def update(self, acc: float) -> bool:
        """Record the epoch's guard accuracy; True when it collapsed."""
        collapsed = self.best > 0 and acc < (1 - self.drop) * self.best
        self.best = max(self.best, acc)
        return collapsed

    def measure(self, run: Run) -> float:
        """The guard accuracy of ``run.model`` on ``run.guard_x`` (fp32, eval mode)."""
        return evaluate_robustness(run.model, run.guard_x, run.guard_y, self._attacks, batch_size=self.batch_size,
                                   device=run.device, seed=self.seed, progress=False, shard=True,
                                   warn_flags=True).accuracy[self.attack]

    def on_epoch_end(self, run: Run, state: "TrainState", record: dict[str, Any], *, stopping: bool) -> bool:
        acc = self.measure(run)
        previous = self.best
        collapsed = self.update(acc)
        record["guard"] = {self.attack: acc, "best": self.best}
        self._check_one_class(run, state.epoch, record)
        if collapsed:
            record["catastrophic_overfitting"] = True
            if self.verbose:
                print(f"robustrain: warning: catastrophic overfitting at epoch {state.epoch}: "
                      f"{self.attack} accuracy on the {run.guard_x.shape[0]} guard images fell from "
                      f"{100 * previous:.1f}% to {100 * acc:.1f}%"
                      + ("; stopping (guard.stop=true), best.pt keeps the best model" if self.stop
                         else " (guard.stop=true would stop the run here)"), file=sys.stderr, flush=True)
        return collapsed and self.stop

    def _check_one_class(self, run: Run, epoch: int, record: dict[str, Any]) -> None:
        """Record the guard's and the held-out images' one-class shares; warn at a collapse."""
        found = []
        for key, what, x, y in (("majority", "guard images", run.guard_x, run.guard_y),
                                ("val_majority", "held-out validation images", run.eval_x, run.eval_y)):
            share, cls, acc = one_class_share(run.model, x, y, batch_size=self.batch_size, device=run.device)
            record["guard"][key] = share
            if share >= ONE_CLASS:
                found.append(f"{100 * share:.1f}% of the {x.shape[0]} {what} are given class {cls} "
                             f"(natural accuracy {100 * acc:.1f}%)")
        if not found:
            return
        record["one_class_collapse"] = True
        if self.verbose:
            print(f"robustrain: warning: one-class collapse at epoch {epoch}: " + "; ".join(found)
                  + ". The model predicts one class whatever the input: lower the lr or the method's "
                  "regulariser weight, or check that its loss targets use batch statistics (issue 19)",
                  file=sys.stderr, flush=True)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state.get("best", 0.0))

    def legacy_state(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        return {"best": ckpt.get("guard_best", 0.0)}


class BestCheckpoint(Callback):
    """Select ``best.pt``: natural and ``monitor`` accuracy on the validation images
    (``run.eval_x``: held out of the TRAINING split, never test images; issue 13) every ``every``
    epochs and at the last (or stopping) epoch; the best ``monitor`` accuracy wins, ties going to
    the later epoch (further along the schedule).

    Adds ``eval``, ``eval_time_s`` (when it evaluated) and ``best`` to the record; after
    :meth:`on_epoch_end`, ``improved`` says whether this epoch's weights are the new best. The
    weights evaluated are the EMA's when on (``run.eval_model``), in fp32 and eval mode.

    Args:
        monitor: the attack (or ``natural``) whose accuracy selects.
        every: evaluate every this many epochs.
        epochs: the run's length (the last epoch is always evaluated).
        batch_size: evaluation batch size.
        seed: seed of the attacks' random starts.
        progress: progress bars while evaluating.
    """

    name = "best_checkpoint"

    def __init__(self, monitor: str = "pgd20", every: int = 1, epochs: int = 1, *, batch_size: int = 256,
                 seed: int = 0, progress: bool = False, eps: float | None = None) -> None:
        self.monitor, self.every, self.epochs = monitor, every, epochs
        self.batch_size, self.seed, self.progress = batch_size, seed, progress
        self.best, self.best_epoch, self.improved = -1.0, -1, False
        # eval.attack may be natural
        self._attacks = build_eval_attacks(list(dict.fromkeys(["natural", monitor])), eps=eps)

    @classmethod
    def from_config(cls, cfg: Config, *, progress: bool = False) -> "BestCheckpoint":
        return cls(cfg.eval.attack, cfg.eval.every, cfg.train.epochs, batch_size=cfg.data.eval_batch_size,
                   seed=cfg.seed, progress=progress, eps=cfg.eval.eps)

    def update(self, acc: float, epoch: int) -> bool:
        """Record an evaluation of epoch ``epoch`` (1-based); True when it is the new best."""
        self.improved = acc >= self.best
        if self.improved:
            self.best, self.best_epoch = acc, epoch
        return self.improved

    def on_epoch_end(self, run: Run, state: "TrainState", record: dict[str, Any], *, stopping: bool) -> bool:
        self.improved = False
        if state.epoch % self.every == 0 or state.epoch == self.epochs or stopping:
            t0 = time.perf_counter()
            acc = evaluate_robustness(run.eval_model, run.eval_x, run.eval_y, self._attacks,
                                      batch_size=self.batch_size, device=run.device, seed=self.seed,
                                      progress=self.progress, shard=True, warn_flags=True).accuracy
            record["eval"] = acc
            record["eval_time_s"] = time.perf_counter() - t0
            self.update(acc[self.monitor], state.epoch)
        record["best"] = {"epoch": self.best_epoch, self.monitor: self.best}
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state.get("best", -1.0)), int(state.get("best_epoch", -1))

    def legacy_state(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        return {"best": ckpt.get("best", -1.0), "best_epoch": ckpt.get("best_epoch", -1)}


def default_callbacks(cfg: Config, *, progress: bool = False, verbose: bool = True) -> list[Callback]:
    """The callbacks of a run: the overfitting guard (when on), then the best-checkpoint selection."""
    guard = OverfitGuard.from_config(cfg, verbose=verbose)
    return [cb for cb in (guard, BestCheckpoint.from_config(cfg, progress=progress)) if cb is not None]
