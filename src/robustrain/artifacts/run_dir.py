"""``RunDir``: the one owner of a run folder's file names and of its life cycle.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON object per
epoch), ``last.pt``, ``best.pt`` (the selected checkpoint), ``summary.json`` (the final table),
with TensorBoard on ``tensorboard/``, and with experiment trackers (``train.loggers``)
``trackers.json``, their run ids. Every command that reads or writes a run folder (train,
eval, report, analyze, reproduce) names those files through this class.

Writing is a transaction per epoch. ``last.pt`` is the commit point: it is replaced atomically
and carries the whole metrics history and the selection state, so every other file of the
epoch (``best.pt``, ``metrics.jsonl``) can be re-derived from it. A ``last.pt`` written inside
an epoch (``train.checkpoint_every``) replaces only itself, atomically; its history holds the
completed epochs, so ``metrics.jsonl`` and ``best.pt`` stay those of the last completed epoch. :meth:`RunDir.repair`, run when
a run resumes, brings them back in line after an interruption between the commit and the
copies, and says what it repaired. One writer at a time: :meth:`RunDir.lock` takes an OS file
lock (``.lock``, released by the kernel when the process dies, so it never goes stale) and a
second writer is refused with the PID holding it.

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

import contextlib
import errno
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

from robustrain.utils.errors import CheckpointError, RunExistsError, RunFolderError, RunLockedError
from robustrain.utils.fileio import atomic_open, unwritable_reason, write_atomic, write_json

try:  # POSIX advisory locks; elsewhere the lock is a no-op (documented)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunDir", "checkpoint_file", "existing_checkpoint"]


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
    TRACKERS = "trackers.json"
    LOCK = ".lock"

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

    @property
    def trackers(self) -> Path:
        """The experiment trackers' run ids (``train.loggers``), so that ``--resume`` continues them."""
        return self.path / self.TRACKERS

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
        for p in (self.last, self.best, self.metrics, self.summary, self.config, self.trackers):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.tensorboard, ignore_errors=True)
        self.remove_temp_files()

    def remove_temp_files(self) -> list[Path]:
        """Delete the temporary files of atomic writes that a kill interrupted (``.NAME.*.tmp``);
        only safe while holding :meth:`lock`."""
        removed = []
        if self.path.is_dir():
            for p in self.path.glob(".*.tmp"):
                if p.is_file():
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed

    def ensure_writable(self) -> None:
        """Create the folder if needed and check that files can be created in it.

        Raises:
            RunFolderError: ``out_dir`` or the folder is a file, lies under a file (``/dev/null/x``),
                or is not writable.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise RunFolderError(f"run folder {self.path} is a file, not a folder; choose another out_dir or "
                                 "name") from None
        except OSError as e:
            raise RunFolderError(f"cannot create run folder {self.path} ({e.strerror or e}); choose an out_dir "
                                 "in a writable place") from None
        if not self.path.is_dir():
            raise RunFolderError(f"run folder {self.path} is not a folder; choose another out_dir or name")
        # a probe file (made and removed at once): sees read-only mounts and permissions, also for root
        reason = unwritable_reason(self.path / ".write-probe")
        if reason is not None or not os.access(self.path, os.W_OK | os.X_OK):
            raise RunFolderError(f"run folder {self.path} is not writable ({reason or 'permissions'}); fix its "
                                 "permissions or choose another out_dir")

    @contextlib.contextmanager
    def lock(self) -> Iterator["RunDir"]:
        """Hold the run folder's writer lock (creating the folder) for the block.

        Raises:
            RunLockedError: another live process holds it (its PID is named).
            RunFolderError: the folder cannot be created or written.
        """
        self.ensure_writable()
        path = self.path / self.LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunFolderError(f"run folder {self.path} is not writable ({e.strerror or e}); fix its "
                                 "permissions or choose another out_dir") from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    raise RunLockedError(
                        f"run folder {self.path} is in use by another robustrain process (PID {holder}); wait "
                        "for it to finish or stop it, or use name=NEW_NAME for a separate run") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield self
        finally:
            os.close(fd)  # releases the lock; the file stays (unlinking it would race a waiting writer)

    @contextlib.contextmanager
    def open(self, *, resume: bool, overwrite: bool, writer: bool = True) -> Iterator["RunDir"]:
        """The run folder's whole life cycle around a training run (issue 22): check that a run
        may start or resume here, take the writer lock, remove the temporary files an
        interrupted write left, and, when the block fails before anything but the lock was
        written, remove the folders this call created (a failed start leaves no trace).

        Args:
            resume, overwrite: as :meth:`prepare` (checked before and again under the lock).
            writer: this process writes the folder (rank 0 under torchrun); other ranks only
                check it, without the lock.

        Raises:
            RunExistsError, RunLockedError, RunFolderError: as :meth:`prepare` and :meth:`lock`.
        """
        self.prepare(resume=resume, overwrite=overwrite)
        if not writer:
            yield self
            return
        created = _first_missing(self.path)
        with self.lock():
            try:
                self.prepare(resume=resume, overwrite=overwrite)  # again, now that no one else can write
                for tmp in self.remove_temp_files():
                    print(f"robustrain: removed {tmp.name}, left by an interrupted write", file=sys.stderr)
                yield self
            except BaseException:
                self._discard_if_empty(created)
                raise

    def _discard_if_empty(self, created: Path | None) -> None:
        """Remove the folders :meth:`open` created (up to ``created``) when nothing but the lock
        file was written in them."""
        if created is None or not self.path.is_dir() or {p.name for p in self.path.iterdir()} - {self.LOCK}:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        folder = self.path.parent
        while folder != created.parent and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def repair(self, history: list[dict[str, Any]], best_epoch: int, last_epoch: int,
               best_epoch_on_disk: int | None, *, mid_epoch: bool = False) -> list[str]:
        """Bring ``metrics.jsonl`` and ``best.pt`` in line with the committed ``last.pt``.

        Args:
            history: the metrics records ``last.pt`` carries (one per completed epoch).
            best_epoch: the epoch ``last.pt`` says was selected.
            last_epoch: the epoch of ``last.pt`` (its last completed epoch).
            best_epoch_on_disk: the epoch of the current ``best.pt`` (None: none).
            mid_epoch: ``last.pt`` was written inside epoch ``last_epoch + 1``
                (``train.checkpoint_every``): its weights are not the selected epoch's, so it is
                never copied to ``best.pt``.

        Returns:
            one line per file repaired (empty when everything was in order).
        """
        done = []
        if best_epoch == last_epoch and best_epoch_on_disk != best_epoch and last_epoch > 0 and not mid_epoch:
            self.copy_last_to_best()
            done.append(f"best.pt was behind (epoch {best_epoch_on_disk}): copied from last.pt (epoch {last_epoch})")
        elif best_epoch > 0 and best_epoch_on_disk not in (None, best_epoch):
            done.append(f"best.pt holds epoch {best_epoch_on_disk} but epoch {best_epoch} was selected and its "
                        "weights are gone; best.pt is left as it is")
        text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in history)
        current = self.metrics.read_text() if self.metrics.is_file() else None
        if history and current != text:
            write_atomic(self.metrics, text)
            have = 0 if current is None else sum(1 for line in current.splitlines() if line.strip())
            done.append(f"metrics.jsonl had {have} line(s), last.pt {len(history)} epoch(s): rewritten from last.pt")
        return done

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

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """``metrics.jsonl`` := one line per record, atomically (the whole file: it is small)."""
        write_atomic(self.metrics, "".join(json.dumps(r, allow_nan=True) + "\n" for r in history))


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (None: ``path`` exists)."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def read_metrics(path: str | Path, *, strict: bool = True) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, each a JSON object: the one reader of the file
    (issue 22).

    Args:
        path: the file.
        strict: a line that is not a JSON object is an error naming the file and the line
            (reading a run); False: the records before the first such line (resuming after a
            kill that interrupted an append keeps what was complete).

    Raises:
        CheckpointError: (``strict``) an unreadable file or a damaged line.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "metrics.jsonl"
        >>> _ = p.write_text('{"epoch": 1}\\n{"epoch": 2, "lr": 0.')
        >>> read_metrics(p, strict=False)
        [{'epoch': 1}]
        >>> try:
        ...     read_metrics(p)
        ... except CheckpointError as e:
        ...     "metrics.jsonl line 2 is not valid JSON" in str(e)
        True
    """
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as e:
        if not strict:
            return []
        raise CheckpointError(f"cannot read {path} ({e.strerror or e})") from None
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
            problem = None if isinstance(record, dict) else f"is not a JSON object (a {type(record).__name__})"
        except (UnicodeDecodeError, ValueError) as e:
            problem = f"is not valid JSON ({str(e).splitlines()[0][:80]})"
        if problem is not None:
            if not strict:
                break
            raise CheckpointError(f"{path} line {number} {problem}; the run was probably killed while writing it: "
                                  f"delete or repair line {number} and rerun")
        records.append(record)
    return records


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's best.pt (its last.pt without one)."""
    path = Path(path)
    return RunDir(path).best_or_last() if path.is_dir() else path


def existing_checkpoint(path: str | Path, label: str = "checkpoint") -> Path:
    """:func:`checkpoint_file`, which must exist: else a one-line CheckpointError naming ``label``
    (``checkpoint``, ``--surrogate`` ...) and what to give instead."""
    ckpt = checkpoint_file(path)
    if not ckpt.is_file():
        why = (f"the run folder {path} holds no best.pt or last.pt yet (no epoch finished?)" if Path(path).is_dir()
               else "give a best.pt / last.pt, a run folder or an exported OUT.pt")
        raise CheckpointError(f"{label} {ckpt} does not exist; {why}")
    return ckpt
