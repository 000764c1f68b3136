"""Layer 7: the training loop (one for every method and model).

* :mod:`~robustrain.train.loop` — :func:`fit` (the orchestrator) and :func:`train_one_epoch`;
* :mod:`~robustrain.train.state` — :class:`TrainState` (epoch, step) and the run's checkpoint;
* :mod:`~robustrain.train.callbacks` — :class:`OverfitGuard` and :class:`BestCheckpoint`, each
  with its own checkpointed state;
* :mod:`~robustrain.train.logging` — :class:`RunWriter` (rank 0's files) and the metrics log;
* :mod:`~robustrain.train.trackers` — experiment trackers (TensorBoard, W&B, MLflow) behind one
  interface, fed by the RunWriter (``train.loggers``).

The pieces the loop is built from live lower down and are imported from there:
``build_model``/``build_run`` in :mod:`robustrain.build`, checkpoints in
:mod:`robustrain.artifacts`, ``EMA`` in :mod:`robustrain.models`, schedules in
:mod:`robustrain.schedules`, device and seeding in :mod:`robustrain.utils.runtime`, errors in
:mod:`robustrain.utils.errors`.
"""

from robustrain.train.awp import AWP
from robustrain.train.callbacks import BestCheckpoint, Callback, OverfitGuard, default_callbacks
from robustrain.train.loop import fit, train_one_epoch
from robustrain.train.state import TrainState

__all__ = [
    "AWP",
    "BestCheckpoint",
    "Callback",
    "OverfitGuard",
    "TrainState",
    "default_callbacks",
    "fit",
    "train_one_epoch",
]
