"""Run logging: metrics as JSON lines (one object per line), optional TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger", "read_metrics"]


class MetricsLogger:
    """Appends records to ``metrics.jsonl`` (flushed per record, so a crash loses nothing
    already logged) and mirrors scalars to TensorBoard when asked.

    Args:
        path: the JSON-lines file (appended to, so a resumed run continues it).
        tensorboard_dir: folder for TensorBoard event files, or None.
    """

    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None) -> None:
        self.path = Path(path)
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


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]
