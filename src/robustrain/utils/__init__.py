"""Layer 0: utilities every other layer may use, importing nothing of robustrain above them.

* :mod:`~robustrain.utils.registry` — name -> object registries (``list``, configs, tests read them);
* :mod:`~robustrain.utils.checks` — ``ValueError`` validators for hyper-parameter dataclasses;
* :mod:`~robustrain.utils.errors` — one error hierarchy, each error with its exit code;
* :mod:`~robustrain.utils.fileio` — atomic file writes;
* :mod:`~robustrain.utils.units` — ``8/255`` in and out;
* :mod:`~robustrain.utils.runtime` — device, seeding, training fast-math and strict fp32 evaluation;
* :mod:`~robustrain.utils.distributed` — process group, DDP wrapping and collectives that are
  the identity in one process.
"""

from robustrain.utils.errors import (
    CheckpointError,
    ConfigError,
    DatasetFileError,
    DiskFullError,
    MissingExtraError,
    DownloadError,
    NonFiniteLossError,
    PlotDependencyError,
    ReproduceError,
    RobustrainError,
    RunExistsError,
    RunFolderError,
    RunLockedError,
    UsageError,
)
from robustrain.utils.registry import Registry
from robustrain.utils.runtime import fp32_eval, resolve_device, seed_everything
from robustrain.utils.units import format_eps, parse_number

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetFileError",
    "DiskFullError",
    "MissingExtraError",
    "DownloadError",
    "NonFiniteLossError",
    "PlotDependencyError",
    "Registry",
    "ReproduceError",
    "RobustrainError",
    "RunExistsError",
    "RunFolderError",
    "RunLockedError",
    "UsageError",
    "format_eps",
    "fp32_eval",
    "parse_number",
    "resolve_device",
    "seed_everything",
]
