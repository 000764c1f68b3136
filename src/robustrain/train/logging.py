"""Writing a run folder: the resolved config, metrics as JSON lines, checkpoints, the summary.

:class:`RunWriter` is what rank 0 of a training run writes into its
:class:`~robustrain.artifacts.RunDir` (file names are the RunDir's): ``config.yaml`` and
``summary.json`` atomically, and per epoch one transaction: ``last.pt`` (the commit point: it
carries the metrics history), then ``best.pt`` as an atomic copy of it when the epoch was selected,
then ``metrics.jsonl`` rewritten atomically from the history, then the epochs the experiment
trackers (``train.loggers``, :mod:`robustrain.train.trackers`) have not logged yet.
Inside an epoch (``train.checkpoint_every``) only ``last.pt`` is replaced.
An interruption between those steps is repaired when the run resumes
(:meth:`robustrain.artifacts.RunDir.repair`). On other ranks it writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from robustrain.artifacts import RunDir, read_metrics, save_checkpoint
from robustrain.config import Config, dump_config
from robustrain.train.trackers import TrackerRun, Trackers
from robustrain.train.trackers.records import config_params, run_files, run_tags

__all__ = ["RunWriter", "read_metrics"]


class RunWriter:
    """The run folder's writer (a no-op object on ranks other than 0).

    Args:
        run_dir: the run folder (checked by :meth:`RunDir.prepare` beforehand).
        cfg: the run's config, written as ``config.yaml``.
        clear: remove a previous run's files first (``--overwrite``).
        enabled: False on DDP ranks other than 0.
        resume: the run resumes: its trackers reopen the runs named in ``trackers.json``.
        selection: ``Run.selection`` (how ``best.pt`` is chosen), a tag of the tracker runs.
    """

    def __init__(self, run_dir: RunDir, cfg: Config, *, clear: bool = False, enabled: bool = True,
                 resume: bool = False, selection: Mapping[str, Any] | None = None) -> None:
        self.run_dir, self.enabled, self.cfg = run_dir, enabled, cfg
        self.trackers: Trackers | None = None
        if not enabled:
            return
        if clear:
            run_dir.clear()
        run_dir.path.mkdir(parents=True, exist_ok=True)
        run_dir.write_config(dump_config(cfg))
        if cfg.train.trackers:
            self.trackers = Trackers.create(cfg.train.trackers, state_path=run_dir.trackers, resume=resume)
            self.trackers.start(TrackerRun(
                name=run_dir.path.name, run_dir=run_dir.path, out_dir=Path(cfg.out_dir),
                project=cfg.train.tracker_project, params=config_params(cfg), tags=run_tags(cfg, selection)))

    def save(self, ckpt: dict[str, Any], history: list[dict[str, Any]], *, best: bool) -> None:
        """The epoch's transaction: ``last.pt`` (the commit point; ``ckpt`` carries ``history``),
        ``best.pt`` when ``best``, then ``metrics.jsonl`` from ``history``."""
        if not self.enabled:
            return
        save_checkpoint(ckpt, self.run_dir.last)
        if best:
            self.run_dir.copy_last_to_best()
        self.run_dir.write_metrics(history)
        if self.trackers is not None:
            self.trackers.log_history(history)

    def save_progress(self, ckpt: dict[str, Any]) -> None:
        """A checkpoint written inside an epoch (``train.checkpoint_every``): ``last.pt`` only,
        atomically; ``best.pt`` and ``metrics.jsonl`` keep the completed epochs (``ckpt``'s
        history is theirs)."""
        if self.enabled:
            save_checkpoint(ckpt, self.run_dir.last)

    def write_summary(self, summary: dict[str, Any], history: Sequence[Mapping[str, Any]] = ()) -> None:
        """``summary.json``, then the final table (and with ``train.log_artifacts`` the run's
        files) to the trackers, after any epoch of ``history`` they have not logged."""
        if not self.enabled:
            return
        self.run_dir.write_summary(summary)
        if self.trackers is not None:
            files = run_files(self.run_dir) if self.cfg.train.log_artifacts else []
            self.trackers.log_final(summary, history, files)

    def close(self, *, failed: bool = False) -> None:
        if self.trackers is not None:
            self.trackers.close(failed=failed)
            self.trackers = None

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(failed=exc_type is not None)
