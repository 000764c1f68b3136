"""Layer 2: the files robustrain writes and reads back, usable without a Config or the trainer.

* :mod:`~robustrain.artifacts.checkpoint` — the checkpoint format, atomic saves, ``weights_only`` loads;
* :mod:`~robustrain.artifacts.model_card` — :class:`ModelSpec`, stored in every checkpoint and
  export, and the export card reader;
* :mod:`~robustrain.artifacts.loading` — :func:`load_model`: checkpoint or export -> eval-mode model;
* :mod:`~robustrain.artifacts.export` — :func:`export_model`: plain weights + RobustBench-style card;
* :mod:`~robustrain.artifacts.weights_file` — the exported weights' formats (``.pt``, ``.safetensors``);
* :mod:`~robustrain.artifacts.run_dir` — :class:`RunDir`, the one owner of run-folder file names.

Its errors (``CheckpointError``, ``RunExistsError``, ``RunFolderError``, ``RunLockedError``) live
in :mod:`robustrain.utils.errors`.
"""

from robustrain.artifacts.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from robustrain.artifacts.export import export_model
from robustrain.artifacts.loading import LoadedModel, check_dataset, eval_data, load_model
from robustrain.artifacts.model_card import ModelSpec, read_export_info
from robustrain.artifacts.run_dir import RunDir, checkpoint_file, read_metrics

__all__ = [
    "FORMAT",
    "LoadedModel",
    "ModelSpec",
    "RunDir",
    "check_dataset",
    "eval_data",
    "checkpoint_file",
    "export_model",
    "load_checkpoint",
    "load_model",
    "read_export_info",
    "read_metrics",
    "save_checkpoint",
]
