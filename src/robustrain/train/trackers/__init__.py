"""Experiment trackers (issue 21): TensorBoard, Weights & Biases and MLflow behind one interface.

``train.loggers=[tensorboard,wandb,mlflow]`` (``train.tensorboard=true`` is ``tensorboard``):

* :mod:`~robustrain.train.trackers.base` — :class:`Tracker` (start, log_metrics, log_artifact,
  finish), the :data:`TRACKERS` registry and :func:`check_trackers` (a missing package is one
  line with its install command, before any work);
* :mod:`~robustrain.train.trackers.records` — what is logged, the same for every backend: the
  config as parameters, tags, each epoch record with its per-step records, the final table,
  the files of ``train.log_artifacts=true``;
* :mod:`~robustrain.train.trackers.fanout` — :class:`Trackers`, the fan-out that turns a failing
  backend into one warning and keeps the run ids in ``trackers.json`` for ``--resume``;
* one module per backend: :mod:`~robustrain.train.trackers.tensorboard`,
  :mod:`~robustrain.train.trackers.wandb`, :mod:`~robustrain.train.trackers.mlflow`.

Only rank 0 logs (:class:`~robustrain.train.logging.RunWriter` holds the trackers); the run
folder stays the record of truth.

Example:
    >>> from robustrain.train.trackers import TRACKERS
    >>> TRACKERS.names()
    ['mlflow', 'tensorboard', 'wandb']
"""

# the backends register themselves in TRACKERS on import
from robustrain.train.trackers import mlflow, tensorboard, wandb  # noqa: F401
from robustrain.train.trackers.base import TRACKERS, Tracker, TrackerRun, check_trackers, register_tracker
from robustrain.train.trackers.fanout import Trackers

__all__ = ["TRACKERS", "Tracker", "TrackerRun", "Trackers", "check_trackers", "register_tracker"]
