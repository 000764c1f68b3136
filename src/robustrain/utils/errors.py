"""One error hierarchy: every error robustrain raises for the user carries its exit code.

``robustrain.cli.main`` catches :class:`RobustrainError` once, prints its one-line message
and returns ``exit_code``: 2 for bad input on the command line or in a config (nothing was run
or written), 1 for a failure while working (missing data, damaged checkpoint, NaN loss ...).
Each class also derives from the builtin a caller would naturally catch (``ValueError`` for
bad values, ``FileNotFoundError`` for missing data, ``ImportError`` for a missing optional
package), so library users need not know this module.

Example:
    >>> err = ConfigError("unknown key train.epoch")
    >>> isinstance(err, ValueError), err.exit_code, DatasetFileError("x").exit_code
    (True, 2, 1)
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetFileError",
    "DiskFullError",
    "DownloadError",
    "MissingExtraError",
    "NonFiniteLossError",
    "PlotDependencyError",
    "ReproduceError",
    "RobustrainError",
    "RunExistsError",
    "RunFolderError",
    "RunLockedError",
    "UsageError",
]


class RobustrainError(Exception):
    """Base of every error meant to be printed as one line, without a traceback."""

    exit_code: int = 1


class ConfigError(RobustrainError, ValueError):
    """An unknown key or invalid value in a config file or override (exit code 2)."""

    exit_code = 2


class UsageError(RobustrainError, ValueError):
    """A bad command-line argument (exit code 2)."""

    exit_code = 2


class ReproduceError(RobustrainError, ValueError):
    """A reproduction that cannot run as asked; the message names the problem and the fix
    (exit code 2)."""

    exit_code = 2


class CheckpointError(RobustrainError, ValueError):
    """A missing, corrupt or foreign checkpoint or exported-model file."""


class RunExistsError(RobustrainError, ValueError):
    """The run folder already holds a run (and neither resume nor overwrite was asked)."""


class RunFolderError(RobustrainError, ValueError):
    """The run folder cannot be used: a file, under a file, or not writable (exit code 2: checked
    before any work starts)."""

    exit_code = 2


class RunLockedError(RobustrainError, RuntimeError):
    """Another live process is writing the same run folder."""


class NonFiniteLossError(RobustrainError, RuntimeError):
    """The training loss became NaN or infinite."""


class PlotDependencyError(RobustrainError, ImportError):
    """matplotlib (the ``plot`` extra) is not installed."""


class MissingExtraError(RobustrainError, ImportError):
    """An optional package (a ``pip install -e .[EXTRA]`` extra: timm, safetensors ...) is not
    installed; the message names the install command (exit code 2: raised before any work).

    Example:
        >>> err = MissingExtraError("timm backbones need timm: pip install -e .[timm]")
        >>> isinstance(err, ImportError), err.exit_code
        (True, 2)
    """

    exit_code = 2


class DownloadError(RobustrainError, OSError):
    """A download failed; the message is one line and nothing was left at the destination."""


class DiskFullError(RobustrainError, OSError):
    """A write failed because the disk is full or a file-size limit (``ulimit -f``) was hit;
    the file being written was left as it was before (exit code 1).

    Example:
        >>> err = DiskFullError("disk full (or file size limit) writing x.json; free space and rerun")
        >>> isinstance(err, OSError), err.exit_code, str(err)[:9]
        (True, 1, 'disk full')
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)  # one argument: str(err) is the message, no "[Errno ...]"
        self.message = message

    def __str__(self) -> str:
        return self.message


class DatasetFileError(RobustrainError, FileNotFoundError, ValueError):
    """A dataset's files are missing, fail their md5 check, are unreadable or could not be fetched.

    It subclasses ``FileNotFoundError`` (callers that treat "data not there" as an OS error catch
    it) and ``ValueError`` (callers that treat it as bad input catch it). Its message is a single
    line meant to be printed as is, without a traceback: it names the dataset, what is wrong, the
    folders that were searched, the expected files with their md5s, where they come from and how
    to download them.

    Example:
        >>> err = DatasetFileError("dataset 'x': file missing")
        >>> isinstance(err, FileNotFoundError) and isinstance(err, ValueError), str(err)
        (True, "dataset 'x': file missing")
    """

    def __init__(self, message: str) -> None:
        # A single-argument OSError keeps ``str(err)`` equal to the message (no "[Errno ...]").
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
