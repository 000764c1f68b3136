"""Readers: find a dataset's files under ``root``, verify their md5, parse them into an ArraySplit.

A reader is ``reader(ctx, split) -> ArraySplit``. ``ctx`` (:class:`ReadContext`) says which
folders to search and whether to verify, and builds the single :class:`DatasetFileError`
raised for anything missing, corrupt or unreadable.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .checksums import CHECKSUMS, CONTENT_CHECKSUMS, file_md5, md5_bytes
from .errors import DatasetFileError, format_file_error
from .formats import cifar_arrays, load_cifar_pickle, parse_idx, svhn_arrays
from .info import ArraySplit, DatasetInfo
from .synthetic import make_synthetic

__all__ = [
    "ReadContext",
    "Reader",
    "read_cifar10",
    "read_cifar100",
    "read_svhn",
    "read_mnist_like",
    "read_cifar10_mini",
    "read_synthetic",
    "PACKAGED_DIR",
]

#: Folder holding the data files shipped inside the package.
PACKAGED_DIR = Path(__file__).resolve().parent / "files"


@dataclass(frozen=True)
class ReadContext:
    """What a reader needs besides the split: where to look, whether to verify, how to fail."""

    info: DatasetInfo
    dirs: tuple[Path, ...]
    verify: bool = True
    download_available: bool = True

    @property
    def name(self) -> str:
        return self.info.name

    def checksums(self) -> dict[str, str]:
        # Read at call time so that tests can monkeypatch CHECKSUMS.
        return CHECKSUMS.get(self.name, {})

    def error(self, problem: str, *, hint: str | None = None) -> DatasetFileError:
        """The one error for this dataset, carrying ``problem`` plus the standard context."""
        return DatasetFileError(
            format_file_error(
                self.name,
                problem,
                dirs=self.dirs,
                files=tuple(self.checksums().items()),
                source=self.info.source,
                download_available=self.download_available,
                hint=hint,
            )
        )

    def find(self, relpath: str) -> Path | None:
        """First existing ``dir / relpath`` among the search folders."""
        for folder in self.dirs:
            candidate = folder / relpath
            if candidate.is_file():
                return candidate
        return None

    def check_file(self, path: Path, relpath: str) -> None:
        """Raises the dataset error unless ``path`` has the official md5 of ``relpath``."""
        if not self.verify:
            return
        expected = self.checksums().get(relpath)
        if expected is None:
            return
        try:
            got = file_md5(path)
        except OSError as exc:
            raise self.error(f"cannot read {path}: {exc.strerror or exc}") from None
        if got != expected:
            raise self.error(
                f"{path} is corrupt or not the official file (md5 {got}, expected {expected}); "
                "delete it and fetch it again"
            )


Reader = Callable[[ReadContext, str], ArraySplit]


def _to_split(images: np.ndarray, labels: np.ndarray) -> ArraySplit:
    return ArraySplit(
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
        torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
    )


def _check_split(ctx: ReadContext, split: ArraySplit, where: str) -> ArraySplit:
    """Guards against files that parse but hold the wrong kind of data."""
    images, labels = split
    shape = tuple(images.shape[1:])
    if shape != ctx.info.image_shape:
        raise ctx.error(f"{where} holds images of shape {shape}, expected {ctx.info.image_shape}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= ctx.info.num_classes):
        raise ctx.error(f"{where} holds labels outside 0..{ctx.info.num_classes - 1}")
    return split


# ---------------------------------------------------------------- CIFAR python batches


def _read_cifar(
    ctx: ReadContext,
    split: str,
    *,
    folder: str,
    archive: str,
    members: dict[str, Sequence[str]],
    label_key: str,
) -> ArraySplit:
    wanted = [f"{folder}/{m}" for m in members[split]]
    found = [ctx.find(rel) for rel in wanted]
    if all(p is not None for p in found):
        # Extracted folder: verify and read each member file.
        blobs = []
        for rel, path in zip(wanted, found):
            ctx.check_file(path, rel)
            blobs.append((str(path), path.read_bytes()))
    else:
        tar_path = ctx.find(archive)
        if tar_path is None:
            missing = [rel for rel, p in zip(wanted, found) if p is None]
            extracted = f"{folder}/" if len(missing) == len(wanted) else ", ".join(missing)
            raise ctx.error(f"missing {archive} (or the extracted {extracted})")
        ctx.check_file(tar_path, archive)
        blobs = _read_tar_members(ctx, tar_path, wanted)
    images, labels = [], []
    for where, blob in blobs:
        try:
            x, y = cifar_arrays(load_cifar_pickle(blob), label_key)
        except ValueError as exc:
            raise ctx.error(f"cannot parse {where}: {exc}") from None
        images.append(x)
        labels.append(y)
    return _check_split(ctx, _to_split(np.concatenate(images), np.concatenate(labels)), folder)


def _read_tar_members(
    ctx: ReadContext, tar_path: Path, wanted: Sequence[str]
) -> list[tuple[str, bytes]]:
    """Reads members straight out of the .tar.gz: no extraction to disk needed."""
    got: dict[str, bytes] = {}
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        got[name] = handle.read()
                    if len(got) == len(wanted):
                        break  # the rest of the gzip stream need not be decompressed
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ctx.error(f"cannot read {tar_path}: {exc}") from None
    missing = [rel for rel in wanted if rel not in got]
    if missing:
        raise ctx.error(f"{tar_path} lacks {', '.join(missing)}")
    return [(f"{tar_path}:{rel}", got[rel]) for rel in wanted]


def read_cifar10(ctx: ReadContext, split: str) -> ArraySplit:
    """CIFAR-10 from ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``."""
    return _read_cifar(
        ctx,
        split,
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        members={"train": [f"data_batch_{k}" for k in range(1, 6)], "test": ["test_batch"]},
        label_key="labels",
    )


def read_cifar100(ctx: ReadContext, split: str) -> ArraySplit:
    """CIFAR-100 (fine labels) from ``cifar-100-python/`` or ``cifar-100-python.tar.gz``."""
    return _read_cifar(
        ctx,
        split,
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        members={"train": ["train"], "test": ["test"]},
        label_key="fine_labels",
    )


# ---------------------------------------------------------------- SVHN


def read_svhn(ctx: ReadContext, split: str) -> ArraySplit:
    """SVHN cropped digits from ``{train,test}_32x32.mat`` (label 10 becomes 0)."""
    relpath = f"{split}_32x32.mat"
    path = ctx.find(relpath)
    if path is None:
        raise ctx.error(f"missing {relpath}")
    ctx.check_file(path, relpath)
    try:
        from scipy.io import loadmat  # lazy: scipy is only needed for SVHN
    except ImportError:
        raise ModuleNotFoundError(
            "reading SVHN needs scipy: pip install scipy (or pip install 'robustrain[svhn]')"
        ) from None
    try:
        x, y = svhn_arrays(loadmat(str(path), variable_names=("X", "y")))
    except (ValueError, OSError, NotImplementedError, TypeError) as exc:
        raise ctx.error(f"cannot parse {path}: {exc}") from None
    return _check_split(ctx, _to_split(x, y), str(path))


# ---------------------------------------------------------------- MNIST family (IDX)

_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx_file(ctx: ReadContext, stem: str) -> np.ndarray:
    path, compressed = ctx.find(f"{stem}.gz"), True
    if path is None:
        path, compressed = ctx.find(stem), False
    if path is None:
        raise ctx.error(f"missing {stem}.gz")
    # The official .gz md5 is the fast, cached check. A re-compressed copy (different .gz bytes)
    # or a decompressed one is accepted when its content matches the official content md5.
    gz_expected = ctx.checksums().get(f"{stem}.gz")
    try:
        gz_ok = compressed and gz_expected is not None and file_md5(path) == gz_expected
        raw = path.read_bytes()
        data = gzip.decompress(raw) if compressed else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise ctx.error(f"cannot read {path}: {exc}") from None
    if ctx.verify and not gz_ok:
        content_expected = CONTENT_CHECKSUMS.get(ctx.name, {}).get(stem)
        got = md5_bytes(data)
        if content_expected is None and gz_expected is not None and compressed:
            raise ctx.error(
                f"{path} is corrupt or not the official file (md5 {file_md5(path)}, "
                f"expected {gz_expected})"
            )
        if content_expected is not None and got != content_expected:
            found = f"md5 {file_md5(path)}, content md5 {got}" if compressed else f"md5 {got}"
            raise ctx.error(
                f"{path} is corrupt or not the official file ({found}; expected "
                f"{gz_expected} for the .gz or {content_expected} for the decompressed file)"
            )
    try:
        return parse_idx(data)
    except ValueError as exc:
        raise ctx.error(f"cannot parse {path}: {exc}") from None


def read_mnist_like(ctx: ReadContext, split: str) -> ArraySplit:
    """MNIST / Fashion-MNIST from the four IDX files (``.gz``, or already decompressed)."""
    image_stem, label_stem = _IDX_NAMES[split]
    images = _read_idx_file(ctx, image_stem)
    labels = _read_idx_file(ctx, label_stem)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ctx.error(f"IDX files disagree: images {images.shape}, labels {labels.shape}")
    return _check_split(ctx, _to_split(images[:, None], labels.astype(np.int64)), image_stem)


# ---------------------------------------------------------------- packaged / generated

_MINI_FILE = "cifar10_mini.npz"
_MINI_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}


def read_cifar10_mini(ctx: ReadContext, split: str) -> ArraySplit:
    """The packaged CIFAR-10 subset (NHWC uint8 in an .npz); ``root`` plays no part."""
    path = PACKAGED_DIR / _MINI_FILE
    if not path.is_file():
        raise ctx.error(f"packaged file {path} is missing (broken install? reinstall robustrain)")
    if ctx.verify:
        # Once per process (file_md5 caches); no stamp: the package folder may be read-only.
        expected = ctx.checksums().get(_MINI_FILE)
        got = file_md5(path, stamp=False)
        if expected is not None and got != expected:
            raise ctx.error(f"packaged file {path} has md5 {got}, expected {expected}")
    x_key, y_key = _MINI_KEYS[split]
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive[x_key], archive[y_key]
    except (OSError, ValueError, KeyError, zlib.error) as exc:
        raise ctx.error(f"cannot read {path}: {exc}") from None
    return _check_split(ctx, _to_split(images.transpose(0, 3, 1, 2), labels), str(path))


def read_synthetic(ctx: ReadContext, split: str) -> ArraySplit:
    """Generated on the fly (see :func:`robustrain.data.synthetic.make_synthetic`)."""
    images, labels = make_synthetic(split)
    return _to_split(images, labels)
