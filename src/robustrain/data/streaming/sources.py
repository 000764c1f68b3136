"""Where a streaming dataset's encoded images come from: :class:`ImageSource` (random access to
the bytes of sample ``i``, its label and a name for messages) and the image-folder source.

Global ids are positions in a fixed order, the same for every reader of the same images: classes
sorted by folder name (class id = rank in that order), then files sorted by their path inside
the class folder. The shards :func:`~robustrain.data.streaming.shards.write_shards` writes carry
these ids, so a folder and its shards give the same ``Batch.idx`` for the same image.

Layouts of :func:`open_imagefolder` (``root`` is ``data.root``):

* ImageNet: ``root/train/<class>/**/*.JPEG|jpg|png`` and ``root/val/<class>/*``; val classes
  must be training classes.
* TinyImageNet: ``root/train/<wnid>/images/*.JPEG`` (found by the same recursive walk) and
  ``root/val/images/*.JPEG`` with ``root/val/val_annotations.txt`` (``file<TAB>wnid<TAB>...``).

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for c in ("cat", "ant"):
    ...     for i in range(2):
    ...         p = root / "train" / c / f"{i}.png"; p.parent.mkdir(parents=True, exist_ok=True)
    ...         _ = p.write_bytes(b"not decoded here")
    >>> src = open_imagefolder(str(root), "train")
    >>> src.classes, src.labels.tolist(), src.describe(2).endswith("cat/0.png")
    (('ant', 'cat'), [0, 0, 1, 1], True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from robustrain.utils.errors import DatasetFileError

__all__ = ["IMAGE_EXTENSIONS", "ImageSource", "ImageFolderSource", "open_imagefolder", "train_classes", "val_dir"]

#: file suffixes read as images (case-insensitive: ImageNet's ``.JPEG`` included)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

#: TinyImageNet's validation labels, beside ``val/images/``
TINY_ANNOTATIONS = "val_annotations.txt"

_LAYOUT = "expected ROOT/train/<class>/*.JPEG|jpg|png and ROOT/val/<class>/* (ImageNet layout)"


class ImageSource:
    """Random access to the encoded images of one split.

    Attributes:
        classes: class names; label ``k`` is ``classes[k]``.
        labels: int64 ``(N,)``, the label of global id ``i`` at ``labels[i]``.
        where: the folder or shard pattern, for messages.

    Subclasses implement :meth:`read` (bytes of id ``i``) and :meth:`describe` (a file name for
    error messages); both run in DataLoader worker processes, so a subclass must be picklable
    and open its files lazily in the process that reads them.
    """

    classes: tuple[str, ...]
    labels: torch.Tensor
    where: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def read(self, i: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, i: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def suffix(self, i: int) -> str:
        """The image format of id ``i`` as a lowercase suffix without the dot (``jpg``, ``png``)."""
        ext = Path(self.describe(i)).suffix.lower().lstrip(".")
        return "jpg" if ext == "jpeg" else ext


class ImageFolderSource(ImageSource):
    """The images of one split folder, read file by file.

    Args:
        root: the split folder (``ROOT/train`` or ``ROOT/val``).
        files: paths relative to ``root``, in global-id order.
        labels: one label per file.
        classes: class names (from the training folder).
    """

    def __init__(self, root: Path, files: Sequence[str], labels: Sequence[int], classes: Sequence[str]) -> None:
        self.root = Path(root)
        self.where = str(self.root)
        self.files = list(files)
        self.labels = torch.as_tensor(list(labels), dtype=torch.int64)
        self.classes = tuple(classes)

    def read(self, i: int) -> bytes:
        return (self.root / self.files[i]).read_bytes()

    def describe(self, i: int) -> str:
        return str(self.root / self.files[i])


def _error(problem: str, fix: str) -> DatasetFileError:
    return DatasetFileError(f"{problem}; {fix}")


def _images_under(folder: Path) -> list[str]:
    """Image files anywhere under ``folder``, as sorted relative POSIX paths (a walk, not
    ``rglob``: one ``scandir`` per folder is what makes 1.28M files quick to list)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = Path(dirpath).relative_to(folder)
        found.extend((rel / f).as_posix() for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(found)


def train_classes(root: Path) -> tuple[str, ...]:
    """Sorted class folder names of ``root/train``.

    Raises:
        DatasetFileError: no root, no ``train/`` or no class folder in it.
    """
    if not root.is_dir():
        raise _error(f"data.root {root} does not exist or is not a folder",
                     f"point data.root at the dataset; {_LAYOUT}")
    train = root / "train"
    if not train.is_dir():
        raise _error(f"data.root {root} has no train/ folder", _LAYOUT)
    classes = tuple(sorted(p.name for p in train.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise _error(f"{train} has {len(classes)} class folder(s); a classifier needs at least 2", _LAYOUT)
    return classes


def _class_folders(split_dir: Path, classes: Sequence[str], *, known: bool) -> tuple[list[str], list[int]]:
    """Files and labels of ``split_dir/<class>/**``; ``known``: class folders must be among ``classes``."""
    index = {c: k for k, c in enumerate(classes)}
    present = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if known:
        unknown = [c for c in present if c not in index]
        if unknown:
            raise _error(f"{split_dir} has class folder(s) {unknown[:3]} that are not training classes",
                         "use the same class folder names in train/ and val/")
    files: list[str] = []
    labels: list[int] = []
    for c in present:
        found = _images_under(split_dir / c)
        if not found:
            raise _error(f"class folder {split_dir / c} has no images ({'/'.join(IMAGE_EXTENSIONS)})",
                         "add its images or remove the folder")
        files.extend(f"{c}/{f}" for f in found)
        labels.extend([index[c]] * len(found))
    if not files:
        raise _error(f"{split_dir} has no class folders with images", _LAYOUT)
    return files, labels


def _tiny_val(split_dir: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    """TinyImageNet's ``val/images/*`` labelled by ``val/val_annotations.txt``, sorted by file name."""
    index = {c: k for k, c in enumerate(classes)}
    labels_of: dict[str, int] = {}
    ann = split_dir / TINY_ANNOTATIONS
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        parts = line.split("\t")
        if not line.strip():
            continue
        if len(parts) < 2 or parts[1] not in index:
            raise _error(f"{ann} line {n}: expected 'FILE<TAB>CLASS' with a training class, got {line[:60]!r}",
                         "use TinyImageNet's val_annotations.txt")
        labels_of[parts[0]] = index[parts[1]]
    images = split_dir / "images"
    files = _images_under(images) if images.is_dir() else []
    if not files:
        raise _error(f"{images} has no images", "TinyImageNet's layout is val/images/*.JPEG + val/val_annotations.txt")
    missing = [f for f in files if f not in labels_of]
    if missing:
        raise _error(f"{images / missing[0]} has no line in {ann} ({len(missing)} image(s) unlabelled)",
                     "add them to the annotations or remove them")
    return [f"images/{f}" for f in files], [labels_of[f] for f in files]


def val_dir(root: str, test_root: str | None = None) -> Path:
    """The test split's folder: ``test_root`` if given, else ``root/val``."""
    return Path(test_root) if test_root else Path(root) / "val"


def open_imagefolder(root: str, split: str, *, test_root: str | None = None) -> ImageFolderSource:
    """The ``split`` (``"train"`` or ``"test"``) of the image folder ``root``: ``train/`` or
    ``val/`` (``test_root`` replaces ``root/val``); class ids from the sorted training folders.

    Raises:
        DatasetFileError: missing folders, an empty class folder, val classes that are not
            training classes, a TinyImageNet annotation problem (one line each).
    """
    base = Path(root)
    classes = train_classes(base)
    if split == "train":
        folder = base / "train"
        files, labels = _class_folders(folder, classes, known=False)
    elif split == "test":
        folder = val_dir(root, test_root)
        if not folder.is_dir():
            raise _error(f"the test split {folder} does not exist",
                         "add ROOT/val/<class>/* (or TinyImageNet's val/images + val_annotations.txt), "
                         "or set data.test_root")
        if (folder / TINY_ANNOTATIONS).is_file():
            files, labels = _tiny_val(folder, classes)
        else:
            files, labels = _class_folders(folder, classes, known=True)
    else:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    return ImageFolderSource(folder, files, labels, classes)
