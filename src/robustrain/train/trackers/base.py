"""The tracker interface, the registry of backends and the check that their packages are installed.

A backend is a small class with four methods (Lightning's ``loggers/`` seam): :meth:`Tracker.start`
opens its run, or reopens the one a stored id names (``--resume``); :meth:`Tracker.log_metrics`
logs numbers at a global step; :meth:`Tracker.log_artifact` uploads a file; :meth:`Tracker.finish`
closes the run. What is logged, and when, is decided once for every backend
(:mod:`robustrain.train.trackers.records`, :class:`~robustrain.train.trackers.fanout.Trackers`).

Example:
    >>> sorted(TRACKERS.names())
    ['mlflow', 'tensorboard', 'wandb']
    >>> TRACKERS.get("mlflow").extra
    'mlflow'
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from robustrain.utils.errors import ConfigError
from robustrain.utils.registry import Registry

__all__ = ["TRACKERS", "Tracker", "TrackerRun", "check_trackers", "register_tracker"]

#: name (a ``train.loggers`` entry) -> backend class
TRACKERS: Registry[type["Tracker"]] = Registry("tracker")


def register_tracker(name: str, *, help: str = ""):
    """Class decorator: register a backend under ``name`` (what users write in
    ``train.loggers``) with one line of ``help`` for ``robustrain list trackers``."""
    return TRACKERS.register(name, help=help)


@dataclass(frozen=True)
class TrackerRun:
    """What a backend needs to open (or reopen) the run of one training run.

    Attributes:
        name: the run's display name (the run folder's name).
        run_dir: the run folder.
        out_dir: the folder holding run folders (``out_dir``): local stores default to it.
        project: ``train.tracker_project`` (empty: the backend's environment variable, else
            ``robustrain``).
        params: the resolved config, flattened to dotted keys.
        tags: short run tags (method, model, dataset, seed, scale, selection).
        stored: what :meth:`Tracker.start` returned when the run began (``trackers.json``), to
            reopen the same tracker run on ``--resume``; None for a new tracker run.
        first_step: the first global step that will be logged (earlier ones are in the tracker).
    """

    name: str
    run_dir: Path
    out_dir: Path
    project: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    stored: Mapping[str, Any] | None = None
    first_step: int = 0


class Tracker(abc.ABC):
    """One experiment-tracking backend. Any exception a method raises turns the backend off for
    the rest of the run with one warning (:class:`~robustrain.train.trackers.fanout.Trackers`);
    a backend need not catch anything itself."""

    #: the registered name (``train.loggers`` entry)
    name: ClassVar[str] = ""
    #: the import that shows the backend's package is installed
    module: ClassVar[str] = ""
    #: the pyproject extra that installs it (``pip install -e .[EXTRA]``) and its pip packages
    extra: ClassVar[str] = ""
    package: ClassVar[str] = ""

    @classmethod
    def required_modules(cls) -> tuple[str, ...]:
        """The imports that must work before the run starts (:func:`check_trackers`)."""
        return (cls.module,)

    @abc.abstractmethod
    def start(self, run: TrackerRun) -> dict[str, Any]:
        """Open a new run, or reopen ``run.stored``'s, and log ``run.params`` / ``run.tags``.

        Returns:
            JSON-serialisable data that reopens this run, with its id under ``run_id`` (and its
            store, project ...), kept in the
            run folder's ``trackers.json`` and handed back as ``stored`` on ``--resume``.
        """

    @abc.abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log finite numbers at global step ``step`` (steps arrive in increasing order)."""

    def log_summary(self, metrics: Mapping[str, float], step: int) -> None:
        """Log the run's final numbers (the final table); by default as metrics at ``step``."""
        self.log_metrics(metrics, step)

    @abc.abstractmethod
    def log_artifact(self, path: Path) -> None:
        """Upload the file ``path`` (``train.log_artifacts=true``)."""

    @abc.abstractmethod
    def finish(self, *, failed: bool = False) -> None:
        """Close the run (``failed``: training ended with an exception)."""


def check_trackers(names: Sequence[str]) -> None:
    """Check, before any work, that every tracker of ``names`` is known and its package imports.

    Raises:
        ConfigError: an unknown name, or a missing package (one line with the install command).

    Example:
        >>> check_trackers([])
        >>> try:
        ...     check_trackers(["neptune"])
        ... except ConfigError as e:
        ...     print(e)
        train.loggers: unknown tracker 'neptune'; known: mlflow, tensorboard, wandb
    """
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"train.loggers: unknown tracker {name!r}; known: {', '.join(TRACKERS.names())}")
        backend = TRACKERS.get(name)
        for module in backend.required_modules():
            try:
                importlib.import_module(module)
            except ImportError as e:
                also = " (train.tensorboard=true)" if name == "tensorboard" else ""
                missing = e.name if e.name and e.name.split(".")[0] != "torch" else module.split(".")[-1]
                raise ConfigError(
                    f"train.loggers includes {name}{also} but {missing} is not installed: pip install -e "
                    f".[{backend.extra}] (or pip install {backend.package}), or leave {name} out") from None
