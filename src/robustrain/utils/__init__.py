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

from robustrain.utils.checks import (
    check_choice,
    check_field_types,
    check_in_range,
    check_keys,
    check_nonnegative,
    check_positive,
)
from robustrain.utils.errors import (
    CheckpointError,
    ConfigError,
    DatasetFileError,
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
from robustrain.utils.fileio import atomic_open, write_atomic, write_json
from robustrain.utils.registry import Registry, RegistryEntry
from robustrain.utils.runtime import autocast_for, fast_math, fp32_eval, no_tf32, resolve_device, seed_everything
from robustrain.utils.units import format_eps, format_value, is_eps_like, parse_number

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetFileError",
    "DownloadError",
    "NonFiniteLossError",
    "PlotDependencyError",
    "Registry",
    "RegistryEntry",
    "ReproduceError",
    "RobustrainError",
    "RunExistsError",
    "RunFolderError",
    "RunLockedError",
    "UsageError",
    "atomic_open",
    "autocast_for",
    "check_choice",
    "check_field_types",
    "check_in_range",
    "check_keys",
    "check_nonnegative",
    "check_positive",
    "fast_math",
    "format_eps",
    "format_value",
    "fp32_eval",
    "is_eps_like",
    "no_tf32",
    "parse_number",
    "resolve_device",
    "seed_everything",
    "write_atomic",
    "write_json",
]
