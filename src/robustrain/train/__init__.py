"""Layer 7: the training loop (one for every method and model).

* :mod:`~robustrain.train.loop` — :func:`fit` (the orchestrator) and :func:`train_one_epoch`;
* :mod:`~robustrain.train.state` — :class:`TrainState` (epoch, step) and the run's checkpoint;
* :mod:`~robustrain.train.callbacks` — :class:`OverfitGuard` and :class:`BestCheckpoint`, each
  with its own checkpointed state;
* :mod:`~robustrain.train.logging` — :class:`RunWriter` (rank 0's files) and the metrics log.

Also re-exported for convenience: the pieces the loop is built from, which live lower down
(``build_model``/``build_run`` in :mod:`robustrain.build`, checkpoints in
:mod:`robustrain.artifacts`, ``EMA`` in :mod:`robustrain.models`, schedules in
:mod:`robustrain.schedules`, device and seeding in :mod:`robustrain.utils.runtime`).
"""

from robustrain.artifacts import CheckpointError, RunExistsError, load_checkpoint, save_checkpoint
from robustrain.build import Run, build_model, build_run
from robustrain.models import EMA
from robustrain.schedules import SCHEDULES, lr_at
from robustrain.train.awp import AWP
from robustrain.train.callbacks import BestCheckpoint, Callback, OverfitGuard, default_callbacks
from robustrain.train.logging import MetricsLogger, RunWriter, read_metrics
from robustrain.train.loop import fit, train_one_epoch, training_module
from robustrain.train.state import TrainState, checkpoint, restore
from robustrain.utils.errors import NonFiniteLossError
from robustrain.utils.runtime import resolve_device, seed_everything

__all__ = [
    "AWP",
    "EMA",
    "SCHEDULES",
    "BestCheckpoint",
    "Callback",
    "CheckpointError",
    "MetricsLogger",
    "NonFiniteLossError",
    "OverfitGuard",
    "Run",
    "RunExistsError",
    "RunWriter",
    "TrainState",
    "build_model",
    "build_run",
    "checkpoint",
    "default_callbacks",
    "fit",
    "load_checkpoint",
    "lr_at",
    "read_metrics",
    "resolve_device",
    "restore",
    "save_checkpoint",
    "seed_everything",
    "train_one_epoch",
    "training_module",
]
