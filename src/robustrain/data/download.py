"""Atomic, md5-checked download of one file with the standard library only."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from robustrain.utils.errors import DownloadError

__all__ = ["DownloadError", "download_file"]


def download_file(
    url: str, dest: str | os.PathLike, md5: str | None = None, *, timeout: float = 60.0
) -> Path:
    """Fetches ``url`` into ``dest``: streamed to a temporary file beside it, md5-checked, renamed.

    Nothing is written at ``dest`` unless the whole file arrived and its md5 matches, so an
    interrupted or failed download never leaves a half file that a later run would trust.

    Args:
        url: http(s) or file URL.
        dest: final path; its folder is created.
        md5: expected md5 hex digest, or ``None`` to skip the check.
        timeout: socket timeout in seconds.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: no network, HTTP error, timeout, md5 mismatch or unwritable folder.

    Example:
        >>> import pathlib, tempfile
        >>> src = pathlib.Path(tempfile.mkdtemp()) / "a.txt"; _ = src.write_text("hi")
        >>> out = download_file(src.as_uri(), src.with_name("b.txt"))
        >>> out.read_text()
        'hi'
    """
    dest = Path(dest)
    # Connect first: without network nothing is created on disk, not even the folder.
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except _NETWORK_ERRORS as exc:
        raise DownloadError(f"could not download {url}: {_reason(exc)}") from None
    with response:
        # Unique temporary name beside dest (same file system, so the final rename is atomic).
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            out = open(tmp, "xb")
        except OSError as exc:
            raise DownloadError(f"cannot write to {dest.parent}: {exc.strerror or exc}") from None
        try:
            digest = hashlib.md5(usedforsecurity=False)
            with out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
            got = digest.hexdigest()
            if md5 is not None and got != md5:
                raise DownloadError(f"downloaded {url} but its md5 is {got}, expected {md5}")
            os.replace(tmp, dest)
            return dest
        except DownloadError:
            tmp.unlink(missing_ok=True)
            raise
        except _NETWORK_ERRORS as exc:
            tmp.unlink(missing_ok=True)
            # ``from None``: the user needs the reason, not the chain of urllib internals.
            raise DownloadError(f"could not download {url}: {_reason(exc)}") from None
        except BaseException:
            # KeyboardInterrupt and the like: still leave nothing half-written behind.
            tmp.unlink(missing_ok=True)
            raise


# What a failed fetch can raise (URLError and socket.timeout are OSErrors; ValueError: bad URL).
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
