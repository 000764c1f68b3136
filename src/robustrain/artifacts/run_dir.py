"""``RunDir``: the one owner of a run folder's file names and of its life cycle.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON object per
epoch), ``last.pt``, ``best.pt`` (the selected checkpoint), ``summary.json`` (the final table) and,
with TensorBoard on, ``tensorboard/``. Every command that reads or writes a run folder (train,
eval, report, analyze, reproduce) names those files through this class.

Example:
    >>> import tempfile
    >>> rd = RunDir(tempfile.mkdtemp())
    >>> rd.state(), rd.best_or_last().name
    ('new', 'last.pt')
    >>> _ = rd.prepare(resume=False, overwrite=False)
    >>> rd.write_summary({"final": {"natural": 0.5}})
    >>> rd.state(), rd.read_summary()["final"]
    ('done', {'natural': 0.5})
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from robustrain.utils.errors import RunExistsError
from robustrain.utils.fileio import atomic_open, write_atomic, write_json

__all__ = ["RunDir", "checkpoint_file"]


class RunDir:
    """A run folder (it need not exist yet).

    Args:
        path: the folder, e.g. ``runs/uiat-small_cnn-cifar10-mini-s0``.
    """

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    LAST = "last.pt"
    BEST = "best.pt"
    SUMMARY = "summary.json"
    TENSORBOARD = "tensorboard"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ---------------------------------------------------------------- file names
    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    def best_or_last(self) -> Path:
        """``best.pt`` when the run selected one, else ``last.pt``."""
        return self.best if self.best.is_file() else self.last

    # ---------------------------------------------------------------- life cycle
    def state(self) -> str:
        """``done`` (summary.json), ``partial`` (last.pt to resume), ``started`` (interrupted in
        the first epoch) or ``new``."""
        if self.summary.exists():
            return "done"
        if self.last.exists():
            return "partial"
        if self.metrics.exists() or self.config.exists():
            return "started"
        return "new"

    def has_run(self) -> bool:
        return self.last.exists() or self.metrics.exists()

    def prepare(self, *, resume: bool, overwrite: bool) -> "RunDir":
        """Check that a run may start (or resume) here; nothing is written.

        Raises:
            RunExistsError: ``resume`` without ``last.pt``, or a run already here and neither
                ``resume`` nor ``overwrite``.
        """
        if resume:
            if not self.last.exists():
                raise RunExistsError(f"cannot resume: {self.last} does not exist")
            return self
        if self.has_run() and not overwrite:
            raise RunExistsError(
                f"run folder {self.path} already holds a run; pass --resume to continue it, "
                "--overwrite to replace it, or name=NEW_NAME for a new run"
            )
        return self

    def clear(self) -> None:
        """Remove the files of a previous run (for ``--overwrite``); other files stay."""
        for p in (self.last, self.best, self.metrics, self.summary, self.config):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.tensorboard, ignore_errors=True)

    # ---------------------------------------------------------------- reading and writing
    def write_config(self, text: str) -> None:
        write_atomic(self.config, text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(summary, self.summary)

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text())

    def copy_last_to_best(self) -> None:
        """``best.pt`` := ``last.pt``, atomically."""
        with open(self.last, "rb") as src, atomic_open(self.best, "wb") as dst:
            shutil.copyfileobj(src, dst)

    def read_metrics(self) -> list[dict[str, Any]]:
        """All records of ``metrics.jsonl``."""
        return read_metrics(self.metrics)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's best.pt (its last.pt without one)."""
    path = Path(path)
    return RunDir(path).best_or_last() if path.is_dir() else path
