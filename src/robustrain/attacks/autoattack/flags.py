"""Capture of the package's sanity flags: :func:`captured`.

pyautoattack reports its sanity checks (randomised defence, zero gradients, Square beating
the gradient attacks, ...) through its logger, ``print`` and ``warnings``. :func:`captured`
collects them as flags (returned with the result, never lost in a log), sends the verbose
output to a log file (and, with ``verbose``, to stderr) and hands warnings that are not the
package's back to the caller's filters.

Example:
    >>> import logging
    >>> with captured(None, False) as flags:
    ...     logging.getLogger("auto-attack").warning("See flags_doc.md for details.")
    >>> flags
    ['See https://github.com/fra31/auto-attack/blob/master/flags_doc.md']
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Iterator

from robustrain.attacks.autoattack.protocol import FLAGS_DOC

__all__ = ["captured"]


class _Collector(logging.Handler):
    """Keeps the messages of WARNING and above: the package's sanity flags."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _clean_flag(message: str) -> str:
    return " ".join(message.replace("See flags_doc.md for details.", f"See {FLAGS_DOC}").split())


@contextlib.contextmanager
def captured(log_path: Path | None, verbose: bool) -> Iterator[list[str]]:
    """Route the package's logger, prints and warnings: flags into the yielded list, the
    verbose output into ``log_path`` (appended) and, with ``verbose``, to stderr."""
    logger = logging.getLogger("auto-attack")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    collector = _Collector()
    handlers: list[logging.Handler] = [collector]
    file_handler = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handlers.append(file_handler)
    if verbose:
        handlers.append(logging.StreamHandler())
    logger.handlers = handlers
    logger.setLevel(logging.DEBUG if (file_handler or verbose) else logging.WARNING)
    logger.propagate = False  # keep the package's chatter out of the user's root logger
    flags: list[str] = []
    stdout = io.StringIO()
    try:
        # the package prints a few lines itself (e.g. Square on non-square images)
        to_log = contextlib.redirect_stdout(stdout) if not verbose else contextlib.nullcontext()
        with warnings.catch_warnings(record=True) as caught, to_log:
            warnings.simplefilter("always")
            yield flags
    finally:
        logger.handlers, logger.level, logger.propagate = saved[2], saved[0], saved[1]
        if file_handler is not None:
            file_handler.close()
            if stdout.getvalue():
                with log_path.open("a", encoding="utf-8") as f:
                    f.write(stdout.getvalue())
        flags.extend(_clean_flag(m) for m in collector.messages)
        for w in caught:
            if "pyautoattack" in str(w.filename):
                flags.append(_clean_flag(str(w.message)))
            else:  # not ours to swallow: hand it back to the caller's warning filters
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
