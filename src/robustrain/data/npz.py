"""Extra (generated) training images on disk: a memory-mapped ``.npz`` / ``.npy`` reader and writer.

The extra-data setting of the UIAT paper (Table 4; Appendix A.2) follows Gowal et al. 2021 /
Rebuffi et al. 2021 / Wang et al. 2023 ("DM-Improves-AT"): 1M DDPM-generated images mixed
into every batch (see :mod:`robustrain.data.mixed_loader`). This module is the file half:

:func:`load_extra_data` memory-maps the arrays of an **uncompressed** ``.npz`` (``np.savez``)
or of a folder holding ``image.npy`` + ``label.npy`` and validates them against the dataset.
A 1M-image CIFAR file (3 GB) is never copied into RAM: only the rows of the current batch are
read (the OS page cache keeps hot pages, shared by every process reading the file).
:func:`save_extra_data` writes such a file atomically.

File format (the one of the DM-Improves-AT / Rebuffi et al. files): ``image`` uint8
``(N, H, W, C)`` (NHWC, as saved by most generators), ``label`` integer ``(N,)`` in
``0 .. num_classes - 1``. A compressed ``.npz`` (``np.savez_compressed``) cannot be
memory-mapped and is rejected with the one-line conversion command (loading it silently would
need the whole array in RAM, 3 GB for 1M CIFAR images, in every process).

Example:
    >>> import tempfile, numpy as np
    >>> from robustrain.data import make_synthetic
    >>> gen_x, gen_y = make_synthetic("test", n=100)
    >>> path = save_extra_data(tempfile.mkdtemp() + "/gen.npz", gen_x.transpose(0, 2, 3, 1), gen_y)
    >>> extra = load_extra_data(path, image_shape=(3, 16, 16), num_classes=10)
    >>> isinstance(extra.images, np.memmap), extra.images.shape
    (True, (100, 16, 16, 3))
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustrain.utils.fileio import atomic_open

from .errors import DatasetFileError

__all__ = ["ExtraData", "load_extra_data", "save_extra_data", "open_npz_member"]

#: ZIP local file header: signature, version, flags, method, time, date, crc, sizes, name and
#: extra-field lengths (APPNOTE 4.3.7). Its own name/extra lengths (not the central directory's,
#: which may differ, e.g. for zip64) give where the member's data starts.
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_MAGIC = b"PK\x03\x04"

#: The one-liner printed when a compressed .npz is given.
_CONVERT = (
    "python -c \"import numpy as np; d = np.load('{src}'); "
    "np.savez('{dst}', image=d['image'], label=d['label'])\""
)


def _fail(path: str | os.PathLike, problem: str, fix: str) -> DatasetFileError:
    return DatasetFileError(f"extra data {str(path)!r}: {problem}; fix: {fix}")

def open_npz_member(path: str | os.PathLike, key: str) -> np.memmap:
    """Memory-maps array ``key`` of an uncompressed ``.npz`` without reading its data.

    ``np.load`` cannot memory-map ``.npz`` members (``mmap_mode`` is ignored for archives),
    but ``np.savez`` stores each ``KEY.npy`` uncompressed (ZIP_STORED): the member's bytes are
    a plain ``.npy`` file inside the archive. Its position is the local header offset (from
    the central directory) + the 30-byte local header + the file name + the extra field; the
    ``.npy`` header there gives dtype, shape and order, and the data follows it.

    Args:
        path: the ``.npz`` file.
        key: array name (``"image"`` for the member ``image.npy``).

    Returns:
        A read-only ``np.memmap`` of the member.

    Raises:
        DatasetFileError: missing file or key, compressed or encrypted member, corrupt archive.

    Example:
        >>> import tempfile, numpy as np
        >>> p = tempfile.mkdtemp() + "/a.npz"
        >>> np.savez(p, a=np.arange(6).reshape(2, 3))
        >>> m = open_npz_member(p, "a")
        >>> type(m).__name__, m.tolist()
        ('memmap', [[0, 1, 2], [3, 4, 5]])
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
            try:
                info = archive.getinfo(f"{key}.npy")
            except KeyError:
                raise _fail(path, f"no array {key!r} (arrays: {', '.join(names) or 'none'})",
                            "save the arrays as np.savez(FILE, image=IMAGES, label=LABELS)") from None
    except (zipfile.BadZipFile, OSError) as e:
        if isinstance(e, DatasetFileError):
            raise
        raise _fail(path, f"not a readable .npz archive ({e})",
                    "write it with np.savez(FILE, image=IMAGES, label=LABELS)") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise _fail(path, f"array {key!r} is compressed (np.savez_compressed), which cannot be memory-mapped",
                    "re-save it uncompressed once: " + _CONVERT.format(src=path, dst=path.with_suffix(".raw.npz")))
    if info.flag_bits & 0x1:
        raise _fail(path, f"array {key!r} is encrypted", "re-save it with np.savez")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_MAGIC:
            raise _fail(path, f"corrupt archive (no local header for {key!r})", "write the file again")
        name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        f.seek(start)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as e:
            raise _fail(path, f"array {key!r} is not a readable .npy ({e})",
                        "write it with np.savez(FILE, image=IMAGES, label=LABELS)") from None
        offset = f.tell()
    if dtype.hasobject:
        raise _fail(path, f"array {key!r} holds Python objects ({dtype})", f"store {key} as a numeric array")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset - start + nbytes != info.file_size:
        raise _fail(path, f"array {key!r} is truncated or corrupt ({nbytes} data bytes expected)",
                    "write the file again")
    if nbytes == 0:
        raise _fail(path, f"array {key!r} is empty {tuple(shape)}", "save at least one image")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape),
                     order="F" if fortran else "C")


@dataclass(frozen=True)
class ExtraData:
    """Generated images and labels, memory-mapped where the file allows it; ``len`` = images.

    Attributes:
        images: uint8 ``(N, H, W, C)`` (``np.memmap`` for a ``.npz`` / ``.npy`` file).
        labels: integer ``(N,)`` (``np.memmap`` too).
        path: the file or folder they come from.
    """

    images: np.ndarray
    labels: np.ndarray
    path: Path

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _open_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.is_dir():
        arrays = []
        for key in ("image", "label"):
            member = path / f"{key}.npy"
            if not member.is_file():
                raise _fail(path, f"folder has no {member.name}",
                            "put image.npy (uint8 N,H,W,C) and label.npy (int N) there, or pass an .npz")
            try:
                arrays.append(np.load(member, mmap_mode="r", allow_pickle=False))
            except ValueError as e:
                raise _fail(member, f"not a readable .npy ({e})", f"save it with np.save({member.name!r}, ...)") from None
        return arrays[0], arrays[1]
    return open_npz_member(path, "image"), open_npz_member(path, "label")


def load_extra_data(
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
) -> ExtraData:
    """Opens and validates a file of generated images (memory-mapped, nothing copied to RAM).

    Accepts an uncompressed ``.npz`` with arrays ``image`` and ``label`` (``np.savez``; the
    format of the DM-Improves-AT / Rebuffi et al. 1M-image files) or a folder holding
    ``image.npy`` and ``label.npy``.

    Args:
        path: the ``.npz`` file or the folder.
        image_shape: the dataset's ``(C, H, W)``; images must be ``(N, H, W, C)``. ``None``:
            any 4-d shape.
        num_classes: labels must lie in ``0 .. num_classes - 1`` (``None``: only ``>= 0``).

    Raises:
        DatasetFileError: one line naming the file, the array and the fix, for a missing file,
            a missing key, a compressed archive, a wrong dtype or shape, or labels out of range.

    Example:
        >>> import tempfile, numpy as np
        >>> p = save_extra_data(tempfile.mkdtemp() + "/g.npz", np.zeros((4, 8, 8, 3), np.uint8), [0, 1, 2, 3])
        >>> extra = load_extra_data(p, image_shape=(3, 8, 8), num_classes=10)
        >>> len(extra), extra.labels.tolist()
        (4, [0, 1, 2, 3])
        >>> load_extra_data(p, num_classes=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        robustrain.utils.errors.DatasetFileError: extra data '...g.npz': labels must lie in 0..2, got 0..3; fix: ...
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise _fail(path, "file not found",
                    "give data.extra.path an existing .npz (np.savez(FILE, image=uint8 N,H,W,C, label=int N)) "
                    "or folder with image.npy + label.npy")
    images, labels = _open_arrays(path)
    if images.dtype != np.uint8:
        fix = "convert with np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) for floats in [0, 1]"
        raise _fail(path, f"image must be uint8, got {images.dtype}", fix)
    if images.ndim != 4:
        raise _fail(path, f"image must be (N, H, W, C), got shape {images.shape}", "save one image per row, NHWC")
    if image_shape is not None:
        c, h, w = image_shape
        if images.shape[1:] != (h, w, c):
            fix = ("transpose NCHW to NHWC: np.transpose(image, (0, 2, 3, 1))"
                   if images.shape[1:] == (c, h, w) else f"generate images of the dataset's size {h}x{w}x{c}")
            raise _fail(path, f"image must be (N, {h}, {w}, {c}) for this dataset, got {images.shape}", fix)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise _fail(path, f"label must be a 1-d integer array, got {labels.dtype} {labels.shape}",
                    "save label=np.asarray(labels, dtype=np.int64)")
    if labels.shape[0] != images.shape[0]:
        raise _fail(path, f"{labels.shape[0]} labels for {images.shape[0]} images", "save one label per image")
    low, high = int(labels.min()), int(labels.max())
    top = None if num_classes is None else num_classes - 1
    if low < 0 or (top is not None and high > top):
        raise _fail(path, f"labels must lie in 0..{top if top is not None else 'C-1'}, got {low}..{high}",
                    "use the dataset's class numbering (pseudo-labels of generated images included)")
    return ExtraData(images, labels, path)


def save_extra_data(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> Path:
    """Writes ``images`` (uint8 NHWC) and ``labels`` as an uncompressed, memory-mappable ``.npz``.

    Atomic (a temporary file renamed into place): an interrupted write never leaves a
    half-written file under ``path``. Also the way to convert a compressed file once
    (``save_extra_data("out.npz", *np.load("in.npz").values())`` when the keys are in order).

    Example:
        >>> import tempfile, numpy as np
        >>> p = save_extra_data(tempfile.mkdtemp() + "/g.npz", np.zeros((2, 4, 4, 3), np.uint8), [1, 2])
        >>> sorted(np.load(p).files)
        ['image', 'label']
    """
    path = Path(path)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be {images.shape[0]} integers, got {labels.dtype} {labels.shape}")
    with atomic_open(path, "wb") as f:  # a file object: np.savez adds no ".npz" suffix
        np.savez(f, image=images, label=labels.astype(np.int64, copy=False))
    return path
