""":class:`Trackers`: every tracker of a run behind one object, each backend's failure isolated.

A backend that raises (server unreachable, disk full, a bug in the backend) is one warning and is
off for the rest of the run; training goes on and the run folder stays the record of truth. What
each backend has logged is kept in the run folder's ``trackers.json`` (written atomically):
``{name: {"run": <what start returned: its id ...>, "epoch": E, "step": S, "final_step": F}}``
(F: the step of the final table, once logged), so ``--resume``
reopens the same tracker run and logs only the epochs after ``E``: a resumed run is one curve,
without duplicated steps.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from robustrain.train.trackers.base import Tracker, TrackerRun
    >>> class Broken(Tracker):
    ...     def start(self, run): return {"run_id": "b1"}
    ...     def log_metrics(self, metrics, step): raise OSError("disk full")
    ...     def log_artifact(self, path): pass
    ...     def finish(self, *, failed=False): pass
    >>> folder = Path(tempfile.mkdtemp())
    >>> trackers = Trackers({"broken": Broken()}, state_path=folder / "trackers.json")
    >>> trackers.start(TrackerRun(name="demo", run_dir=folder, out_dir=folder))
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     trackers.log_history([{"epoch": 1, "step": 4, "train": {"loss": 1.0}}])
    ...     trackers.log_history([{"epoch": 2, "step": 8, "train": {"loss": 0.5}}])
    >>> len(caught), trackers.active
    (1, [])
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from robustrain.train.trackers.base import TRACKERS, Tracker, TrackerRun
from robustrain.train.trackers.records import epoch_points, final_metrics, last_step
from robustrain.utils.fileio import write_json

__all__ = ["Trackers", "read_tracker_state"]

T = TypeVar("T")


def read_tracker_state(path: Path) -> dict[str, dict[str, Any]]:
    """The contents of ``trackers.json`` (empty when it is missing or unreadable: the tracker
    runs then start anew; the run folder itself is never at stake)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


class Trackers:
    """The run's trackers (rank 0 only; :class:`~robustrain.train.logging.RunWriter` holds it).

    Args:
        backends: name -> backend, in the order of ``train.loggers``.
        state_path: ``trackers.json`` (None: nothing is kept, no resume).
        stored: what ``trackers.json`` held when the run resumed (empty for a new run).
    """

    def __init__(self, backends: Mapping[str, Tracker], *, state_path: Path | None = None,
                 stored: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._active: dict[str, Tracker] = dict(backends)
        self.state_path = state_path
        self._state: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (stored or {}).items()}
        self._where = str(state_path.parent) if state_path is not None else "the run folder"
        self._state_warned = False

    @classmethod
    def create(cls, names: Sequence[str], *, state_path: Path, resume: bool) -> "Trackers":
        """One backend per name of ``names`` (registered in :data:`TRACKERS`); with ``resume``
        the run ids of ``state_path`` are reopened by :meth:`start`."""
        return cls({n: TRACKERS.get(n)() for n in names}, state_path=state_path,
                   stored=read_tracker_state(state_path) if resume else None)

    @property
    def active(self) -> list[str]:
        """The backends still logging."""
        return list(self._active)

    def _call(self, name: str, fn: Callable[[Tracker], T]) -> T | None:
        tracker = self._active.get(name)
        if tracker is None:
            return None
        try:
            return fn(tracker)
        except Exception as e:  # any failure of a tracker: one warning, the run goes on without it
            del self._active[name]
            text = " ".join(str(e).split())[:300] or "no message"
            warnings.warn(f"tracker {name} failed ({type(e).__name__}: {text}); it is off for the rest of this run "
                          f"and training goes on ({self._where} keeps every record)", stacklevel=3)
            return None

    def start(self, run: TrackerRun) -> None:
        """Open (or, with a stored id, reopen) every backend's run and log params and tags."""
        for name in list(self._active):
            entry = self._state.get(name)
            own = dataclasses.replace(run, stored=entry.get("run") if entry else None,
                                      first_step=int(entry.get("step", 0)) + 1 if entry else 0)
            info = self._call(name, lambda t: t.start(own))
            if name in self._active:
                # the stored run reopened (not a new one because the stored one was gone)
                same = entry is not None and (info or {}).get("run_id") == (entry.get("run") or {}).get("run_id")
                self._state[name] = {"run": info, "epoch": int(entry["epoch"]) if same else 0,
                                     "step": int(entry["step"]) if same else 0}
                if same and "final_step" in entry:
                    self._state[name]["final_step"] = entry["final_step"]
        self._save()

    def log_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Log the epoch records of ``history`` (``metrics.jsonl``'s) that each backend has not
        logged yet, each at its global step with its per-step records."""
        changed = False
        for name in list(self._active):
            state = self._state[name]
            new = [r for r in history if int(r["epoch"]) > state["epoch"]]
            for record in new:
                points = epoch_points(record)
                if self._call(name, lambda t: [t.log_metrics(m, step) for step, m in points]) is None:
                    break
                state["epoch"], state["step"] = int(record["epoch"]), int(record["step"])
                changed = True
        if changed:
            self._save()

    def log_final(self, summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                  files: Sequence[Path] = ()) -> None:
        """The final table (``summary.json``) at the last epoch's step, after any epoch not logged
        yet; then ``files`` (``train.log_artifacts=true``). A backend that has the final table of
        this step already (a finished run resumed again) does not get it twice."""
        self.log_history(history)
        metrics, step = final_metrics(summary), last_step(history)
        for name in list(self._active):
            if self._state[name].get("final_step") == step:
                continue
            self._call(name, lambda t: t.log_summary(metrics, step))
            for path in files:
                self._call(name, lambda t: t.log_artifact(path))
            if name in self._active:
                self._state[name]["final_step"] = step
        self._save()

    def close(self, *, failed: bool = False) -> None:
        """Finish every backend's run (``failed``: training ended with an exception)."""
        for name in list(self._active):
            self._call(name, lambda t: t.finish(failed=failed))
        self._active.clear()

    def _save(self) -> None:
        if self.state_path is None or not self._state:
            return
        try:
            write_json(self._state, self.state_path)
        except OSError as e:
            if not self._state_warned:
                self._state_warned = True
                warnings.warn(f"cannot write {self.state_path} ({e.strerror or e}); a --resume of this run will start "
                              "new tracker runs", stacklevel=3)
