"""TensorBoard: event files in the run folder's ``tensorboard/`` (``pip install -e .[tensorboard]``).

Scalars go to ``add_scalar`` at their global step; the config and the tags are one text entry
each. A resumed run writes into the same folder with ``purge_step`` set to its first new step, so
TensorBoard hides whatever an interrupted process logged past the last kept epoch: one curve.
Artifacts are not TensorBoard's business (they stay in the run folder).

Example (``tensorboard --logdir runs`` shows every run of ``runs/``):
    >>> TensorBoardTracker.required_modules()
    ('torch.utils.tensorboard',)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from robustrain.artifacts import RunDir
from robustrain.train.trackers.base import Tracker, TrackerRun, register_tracker

__all__ = ["TensorBoardTracker"]


@register_tracker("tensorboard", help="TensorBoard event files in RUN_DIR/tensorboard/ (tensorboard --logdir OUT_DIR)")
class TensorBoardTracker(Tracker):
    """TensorBoard scalars and text in ``RUN_DIR/tensorboard``."""

    name = "tensorboard"
    module, extra, package = "torch.utils.tensorboard", "tensorboard", "tensorboard"

    def __init__(self) -> None:
        self._writer: Any = None

    def start(self, run: TrackerRun) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter  # optional package (checked before the run)

        log_dir = RunDir(run.run_dir).tensorboard
        resumed = run.stored is not None
        self._writer = SummaryWriter(str(log_dir), purge_step=run.first_step if resumed else None)
        if not resumed:
            self._writer.add_text("config", _table(run.params), 0)
            self._writer.add_text("tags", _table(run.tags), 0)
            self._writer.flush()
        return {"run_id": log_dir.name, "log_dir": str(log_dir)}

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)
        self._writer.flush()

    def log_artifact(self, path: Path) -> None:
        """Nothing: the files stay in the run folder next to ``tensorboard/``."""

    def finish(self, *, failed: bool = False) -> None:
        if self._writer is not None:
            self._writer.close()


def _table(items: Mapping[str, Any]) -> str:
    """A two-column Markdown table (TensorBoard's text tab renders Markdown)."""
    return "| key | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in items.items())
