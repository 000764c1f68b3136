"""Layer 2: the files robustrain writes and reads back, usable without a Config or the trainer.

* :mod:`~robustrain.artifacts.checkpoint` — the checkpoint format, atomic saves, ``weights_only`` loads;
* :mod:`~robustrain.artifacts.model_card` — :class:`ModelSpec`, stored in every checkpoint and
  export, and the export card reader;
* :mod:`~robustrain.artifacts.loading` — :func:`load_model`: checkpoint or export -> eval-mode model;
* :mod:`~robustrain.artifacts.export` — :func:`export_model`: plain weights + RobustBench-style card;
* :mod:`~robustrain.artifacts.run_dir` — :class:`RunDir`, the one owner of run-folder file names.
"""

from robustrain.artifacts.checkpoint import (
    FORMAT,
    content_digest,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from robustrain.artifacts.export import export_model
from robustrain.artifacts.loading import LoadedModel, check_dataset, load_model
from robustrain.artifacts.model_card import EXPORT_FORMAT, ModelSpec, export_info_path, read_export_info
from robustrain.artifacts.run_dir import RunDir, checkpoint_file, read_metrics
from robustrain.utils.errors import CheckpointError, RunExistsError, RunFolderError, RunLockedError

__all__ = [
    "CheckpointError",
    "EXPORT_FORMAT",
    "FORMAT",
    "LoadedModel",
    "ModelSpec",
    "RunDir",
    "RunExistsError",
    "RunFolderError",
    "RunLockedError",
    "check_dataset",
    "content_digest",
    "checkpoint_file",
    "export_info_path",
    "export_model",
    "load_checkpoint",
    "load_model",
    "read_export_info",
    "read_metrics",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
