"""Weights & Biases (``pip install -e .[wandb]``).

Settings come from W&B's own environment variables: ``WANDB_MODE`` (``online``, ``offline``:
files only, upload later with ``wandb sync``), ``WANDB_ENTITY``, ``WANDB_API_KEY``,
``WANDB_PROJECT`` (``train.tracker_project`` wins; default ``robustrain``) and ``WANDB_DIR``
(default: ``OUT_DIR``, so the files land in ``OUT_DIR/wandb/``). The config goes in as the run's
config (dotted keys), tags of at most 64 characters as ``key:value`` tags (longer ones, such as
the selection protocol, into the config under ``tag.<key>``), every metric at its global step,
the final table into the run summary. ``--resume`` reopens the stored id (``resume="must"``).
W&B's console capture is off: the run folder and the terminal stay robustrain's.

Example:
    >>> tags, config = wandb_tags({"method": "trades", "selection": "x" * 80})
    >>> tags, sorted(config)
    (['method:trades'], ['tag.selection'])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from robustrain.train.trackers.base import Tracker, TrackerRun, register_tracker

__all__ = ["WandbTracker", "wandb_tags"]

#: W&B refuses longer tags
_MAX_TAG = 64


def wandb_tags(tags: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """``(W&B tags, config entries)``: ``key:value`` tags that fit W&B's 64 characters, the rest
    as config entries ``tag.<key>``."""
    short, long = [], {}
    for k, v in tags.items():
        text = f"{k}:{v}"
        if len(text) <= _MAX_TAG:
            short.append(text)
        else:
            long[f"tag.{k}"] = v
    return short, long


@register_tracker("wandb", help="Weights & Biases run (WANDB_PROJECT or robustrain; WANDB_MODE=offline: local files)")
class WandbTracker(Tracker):
    """One W&B run per training run, continued by ``--resume``."""

    name = "wandb"
    module, extra, package = "wandb", "wandb", "wandb"

    def __init__(self) -> None:
        self._run: Any = None

    def start(self, run: TrackerRun) -> dict[str, Any]:
        import wandb  # optional package (checked before the run)

        stored = dict(run.stored or {})
        tags, long_tags = wandb_tags(run.tags)
        kwargs: dict[str, Any] = dict(
            project=stored.get("project") or run.project or os.environ.get("WANDB_PROJECT") or "robustrain",
            dir=os.environ.get("WANDB_DIR") or str(Path(run.out_dir).absolute()),
            config={**run.params, **long_tags}, name=run.name, tags=tags, reinit="create_new",
            settings=wandb.Settings(console="off"))
        if stored.get("entity"):
            kwargs["entity"] = stored["entity"]
        if stored:
            kwargs.update(id=stored["run_id"], resume="must")
        Path(kwargs["dir"]).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(**kwargs)
        return {"run_id": self._run.id, "project": self._run.project, "entity": self._run.entity or ""}

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._run.log(dict(metrics), step=step)

    def log_summary(self, metrics: Mapping[str, float], step: int) -> None:
        """Into the run summary (the numbers W&B's run table shows), not the history: a resumed
        online run's history may already have moved past ``step``."""
        self._run.summary.update(dict(metrics))

    def log_artifact(self, path: Path) -> None:
        import wandb

        kind = "model" if path.suffix == ".pt" else "run-file"
        artifact = wandb.Artifact(f"{self._run.id}-{path.stem}", type=kind)
        artifact.add_file(str(path))
        self._run.log_artifact(artifact)

    def finish(self, *, failed: bool = False) -> None:
        if self._run is not None:
            self._run.finish(exit_code=1 if failed else 0)
