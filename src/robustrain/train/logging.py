"""Writing a run folder: the resolved config, metrics as JSON lines, checkpoints, the summary.

:class:`RunWriter` is what rank 0 of a training run writes into its
:class:`~robustrain.artifacts.RunDir` (file names are the RunDir's): ``config.yaml`` and
``summary.json`` atomically, and per epoch one transaction: ``last.pt`` (the commit point: it
carries the metrics history), then ``best.pt`` as an atomic copy of it when the epoch was selected,
then ``metrics.jsonl`` rewritten atomically from the history (optionally mirrored to TensorBoard).
An interruption between those steps is repaired when the run resumes
(:meth:`robustrain.artifacts.RunDir.repair`). On other ranks it writes nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from robustrain.artifacts import RunDir, read_metrics, save_checkpoint
from robustrain.config import Config, dump_config

__all__ = ["MetricsLogger", "RunWriter", "read_metrics"]


class MetricsLogger:
    """Appends records to a JSON-lines file (flushed per record) and mirrors scalars to
    TensorBoard when asked. The trainer writes ``metrics.jsonl`` through :class:`RunWriter`
    (atomically, from the checkpoint's history) and uses this only for TensorBoard
    (``path=None``).

    Args:
        path: the JSON-lines file (appended to), or None for TensorBoard only.
        tensorboard_dir: folder for TensorBoard event files, or None.
    """

    def __init__(self, path: str | Path | None, tensorboard_dir: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise RuntimeError(
                    "train.tensorboard=true but TensorBoard is not installed: "
                    "pip install tensorboard, or set train.tensorboard=false"
                ) from None
            self._tb = SummaryWriter(str(tensorboard_dir))

    def log(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record, allow_nan=True) + "\n")
        if self._tb is not None:
            step = record.get("step", 0)
            for key, value in _flatten(record).items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = v
    return out


class RunWriter:
    """The run folder's writer (a no-op object on ranks other than 0).

    Args:
        run_dir: the run folder (checked by :meth:`RunDir.prepare` beforehand).
        cfg: the run's config, written as ``config.yaml``.
        clear: remove a previous run's files first (``--overwrite``).
        enabled: False on DDP ranks other than 0.
    """

    def __init__(self, run_dir: RunDir, cfg: Config, *, clear: bool = False, enabled: bool = True) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        self.logger: MetricsLogger | None = None
        if not enabled:
            return
        if clear:
            run_dir.clear()
        run_dir.path.mkdir(parents=True, exist_ok=True)
        run_dir.write_config(dump_config(cfg))
        self.logger = MetricsLogger(None, run_dir.tensorboard if cfg.train.tensorboard else None)

    def save(self, ckpt: dict[str, Any], history: list[dict[str, Any]], *, best: bool) -> None:
        """The epoch's transaction: ``last.pt`` (the commit point; ``ckpt`` carries ``history``),
        ``best.pt`` when ``best``, then ``metrics.jsonl`` from ``history``."""
        if not self.enabled:
            return
        save_checkpoint(ckpt, self.run_dir.last)
        if best:
            self.run_dir.copy_last_to_best()
        self.run_dir.write_metrics(history)
        self.logger.log(history[-1])

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            self.run_dir.write_summary(summary)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
