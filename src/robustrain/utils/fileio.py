"""Atomic file writes: a reader sees the old file or the new one, never a part of either.

Every file robustrain writes that a later command reads (checkpoints, model cards, result
tables, figures) goes through :func:`atomic_open` (or :func:`write_atomic` for data already in memory): a temporary file in the same folder, ``fsync``, then
``os.replace``; an error or interrupt removes the temporary file and leaves the old file intact.
A full disk or a file-size limit (``ulimit -f``; ENOSPC, EFBIG, EDQUOT) becomes one
:class:`~robustrain.utils.errors.DiskFullError` naming the file, whatever layer wrote the bytes
(``torch.save`` wraps the OSError in a RuntimeError). :func:`unwritable_reason` says, before any
work starts, why a file could not be written at a path (a folder there, a file above it, a
read-only folder).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "out" / "a.txt"
    >>> with atomic_open(p) as f:
    ...     _ = f.write("hello")
    >>> p.read_text(), sorted(q.name for q in p.parent.iterdir())
    ('hello', ['a.txt'])
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from robustrain.utils.errors import DiskFullError

__all__ = ["DISK_FULL_ERRNOS", "atomic_open", "disk_full_cause", "unwritable_reason", "write_atomic", "write_json"]

#: errno values that mean "no room": a full disk, a file-size limit, a full quota
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", None)) if e is not None)


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC / EFBIG / EDQUOT ``OSError`` in ``exc``'s chain (itself, its cause or context),
    None when there is none.

    Example:
        >>> try:
        ...     try:
        ...         raise OSError(errno.ENOSPC, "No space left on device")
        ...     except OSError:
        ...         raise RuntimeError("writer failed")
        ... except RuntimeError as e:
        ...     disk_full_cause(e).errno == errno.ENOSPC
        True
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder`` (raises OSError when that is impossible)."""
    fd, tmp = tempfile.mkstemp(prefix=".robustrain-probe.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def unwritable_reason(path: str | os.PathLike) -> str | None:
    """Why a file could not be written at ``path`` (by :func:`atomic_open`), or None when it can.

    Checked without creating anything that stays: ``path`` must not be a folder, its nearest
    existing ancestor must be a folder (not a file such as ``/dev/null``) in which a file can be
    created (a probe file is made and removed at once, so read-only mounts and permissions are
    both seen, also for root).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> unwritable_reason(d / "new" / "a.json") is None
        True
        >>> unwritable_reason(d).endswith("is a folder")
        True
        >>> _ = (d / "f").write_text("x")
        >>> unwritable_reason(d / "f" / "a.json").endswith("is a file, not a folder")
        True
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder"
    folder = path.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    try:
        _probe(folder)
    except OSError as e:
        return f"folder {folder} is not writable ({e.strerror or e})"
    return None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` when the block ends without error.

    Args:
        path: the destination (its folder is created).
        mode: ``"w"`` (text) or ``"wb"`` (binary).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if disk_full_cause(e) is not None:
            raise DiskFullError(_disk_full_message(path)) from None
        raise
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if not isinstance(e, DiskFullError) and disk_full_cause(e) is not None:
            raise DiskFullError(_disk_full_message(path)) from None
        raise


def _disk_full_message(path: Path) -> str:
    kept = "the previous file is intact" if path.exists() else "nothing was written"
    return f"disk full (or file size limit) writing {path}; {kept}; free space (or raise `ulimit -f`) and rerun"


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text, or bytes written as is) to ``path`` through :func:`atomic_open`.

    Example:
        >>> import tempfile
        >>> p = write_atomic(Path(tempfile.mkdtemp()) / "b.txt", "two")
        >>> p.read_text()
        'two'
    """
    path = Path(path)
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON (with a final newline) through :func:`atomic_open`.

    Example:
        >>> import tempfile
        >>> json.loads(write_json({"a": [1, 2]}, Path(tempfile.mkdtemp()) / "c.json").read_text())
        {'a': [1, 2]}
    """
    path = Path(path)
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    return path
