"""The one error a user sees when dataset files are missing, corrupt or cannot be fetched."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from robustrain.utils.errors import DatasetFileError

__all__ = ["DatasetFileError", "format_file_error"]

# Shown at the end of every file error: the two ways to ask for a download.
DOWNLOAD_HINT = "pass --download on the command line or data.download=true in a config"


def format_file_error(
    dataset: str,
    problem: str,
    *,
    dirs: Sequence[Path],
    files: Iterable[tuple[str, str]],
    source: str,
    download_available: bool = True,
    hint: str | None = None,
) -> str:
    """Builds the one-line message of a :class:`DatasetFileError`.

    Example:
        >>> msg = format_file_error("toy", "missing a.bin", dirs=[Path("/d")],
        ...                         files=[("a.bin", "0" * 32)], source="https://example.org/")
        >>> msg.startswith("dataset 'toy': missing a.bin;")
        True
    """
    where = " or ".join(str(d) for d in dirs) if dirs else "(no folder)"
    expected = ", ".join(f"{name} (md5 {md5})" for name, md5 in files) or "(none)"
    if hint is None:
        hint = (
            f"place the files there, or {DOWNLOAD_HINT}"
            if download_available
            else "place the files there (this dataset has no automatic download)"
        )
    return (
        f"dataset {dataset!r}: {problem}; looked in {where}; expected files: {expected}; "
        f"source: {source}; fix: {hint}"
    )
