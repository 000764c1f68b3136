"""Parsers for the official on-disk formats: IDX (MNIST family), CIFAR python pickles, SVHN .mat.

Each parser takes bytes (or a loaded dict) and returns numpy arrays; finding, verifying and
reading the files is the job of :mod:`robustrain.data.readers`. Malformed input raises
``ValueError`` with a short reason, which the readers turn into a ``DatasetFileError``.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any, Mapping

import numpy as np

__all__ = ["parse_idx", "load_cifar_pickle", "cifar_arrays", "svhn_arrays"]

# IDX type code (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def parse_idx(data: bytes) -> np.ndarray:
    """Parses an IDX file (the MNIST format): magic ``00 00 <type> <ndim>``, big-endian dims, data.

    Args:
        data: the decompressed file content.

    Returns:
        An array of the stored shape and dtype (native byte order).

    Raises:
        ValueError: bad magic number, unknown type code or wrong length.

    Example:
        >>> import struct
        >>> raw = struct.pack(">BBBBI", 0, 0, 0x08, 1, 3) + bytes([7, 8, 9])
        >>> parse_idx(raw).tolist()
        [7, 8, 9]
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("not an IDX file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"not an IDX file (unknown type code 0x{type_code:02x})")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError("truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"IDX size mismatch: {len(data)} bytes for shape {dims} (expected {expected})"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays: a data file must not be able to run code."""

    # (module, name) pairs a CIFAR batch may reference; numpy.core.* is numpy 1's name for
    # numpy 2's numpy._core.*, and pickles written by either must load under both.
    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5 pickles of arrays
        # Python-3 pickles (protocol <= 2) store bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        canonical = module.replace("numpy._core", "numpy.core", 1)
        if (canonical, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if canonical.startswith("numpy.core"):
            for candidate in (canonical.replace("numpy.core", "numpy._core", 1), canonical):
                try:
                    return getattr(importlib.import_module(candidate), name)
                except (ImportError, AttributeError):
                    continue
        return getattr(importlib.import_module(module), name)


def load_cifar_pickle(data: bytes) -> dict[str, Any]:
    """Loads one CIFAR python batch (a Python-2 era pickle) with str keys.

    Only numpy arrays, lists, dicts, strings and numbers are allowed in the pickle.

    Example:
        >>> import pickle
        >>> load_cifar_pickle(pickle.dumps({b"labels": [1, 2]}, protocol=2))
        {'labels': [1, 2]}
    """
    try:
        # latin1 is the documented way to read Python-2 pickles holding numpy arrays.
        obj = _CifarUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # any unpickling failure means the file is not a CIFAR batch
        raise ValueError(f"not a CIFAR python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a CIFAR python batch (top level is not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def cifar_arrays(batch: Mapping[str, Any], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Turns a loaded CIFAR batch into ``(images uint8 (N,3,32,32), labels int64 (N,))``.

    The official ``data`` rows are 3072 bytes: the red, green then blue 32x32 planes, i.e.
    already channel-first, so a reshape is all it takes.

    Example:
        >>> x, y = cifar_arrays({"data": np.zeros((2, 3072), np.uint8), "labels": [3, 4]}, "labels")
        >>> x.shape, y.tolist()
        ((2, 3, 32, 32), [3, 4])
    """
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"CIFAR batch lacks 'data' or {label_key!r} (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"CIFAR batch has data {data.shape} and {labels.shape[0]} labels")
    return np.ascontiguousarray(data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32)), labels


def svhn_arrays(mat: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Turns a loaded SVHN ``*_32x32.mat`` into ``(images uint8 (N,3,32,32), labels int64 (N,))``.

    The .mat stores ``X`` as (32, 32, 3, N) and ``y`` as (N, 1) with digit 0 labelled 10;
    label 10 becomes 0 so labels are the digits themselves.

    Example:
        >>> mat = {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[10], [3]])}
        >>> x, y = svhn_arrays(mat)
        >>> x.shape, y.tolist()
        ((2, 3, 32, 32), [0, 3])
    """
    if "X" not in mat or "y" not in mat:
        raise ValueError("SVHN .mat lacks 'X' or 'y'")
    images = np.asarray(mat["X"])
    labels = np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != labels.shape[0]:
        raise ValueError(f"SVHN .mat has X {images.shape} and {labels.shape[0]} labels")
    labels[labels == 10] = 0
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError("SVHN labels outside 1..10")
    images = np.ascontiguousarray(images.astype(np.uint8, copy=False).transpose(3, 2, 0, 1))
    return images, labels
