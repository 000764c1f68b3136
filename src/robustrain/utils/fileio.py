"""Atomic file writes: a reader sees the old file or the new one, never a part of either.

Every file robustrain writes that a later command reads (checkpoints, model cards, result
tables, figures) goes through :func:`atomic_open` (or :func:`write_atomic` for data already in memory): a temporary file in the same folder, ``fsync``, then
``os.replace``; an error or interrupt removes the temporary file and leaves the old file intact.

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
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "write_atomic", "write_json"]


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
