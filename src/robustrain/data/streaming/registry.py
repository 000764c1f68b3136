"""The streaming datasets, by name: ``data.name=imagefolder`` and ``data.name=webdataset``.

Unlike the in-memory datasets (:data:`robustrain.data.DATASETS`), what a streaming dataset is
(class count, sizes) is only known once its ``data.root`` is read: :func:`open_streaming` opens
a split and :func:`streaming_info` describes it as a :class:`~robustrain.data.DatasetInfo` with
the configured square image size and ImageNet's normalisation statistics.

Example:
    >>> sorted(STREAMING_DATASETS.names())
    ['imagefolder', 'webdataset']
"""

from __future__ import annotations

from typing import Callable

from robustrain.utils.errors import DatasetFileError
from robustrain.utils.registry import Registry

from ..info import DatasetInfo
from .shards import open_shards
from .sources import ImageSource, open_imagefolder

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "STREAMING_DATASETS", "open_streaming", "streaming_info"]

#: ImageNet's per-channel statistics in [0, 1] (the values every torchvision / timm ImageNet
#: model is normalised with); the streaming datasets' default normalisation
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: name -> ``opener(root, split, *, test_root) -> ImageSource``
STREAMING_DATASETS: Registry[Callable[..., ImageSource]] = Registry("streaming dataset")
STREAMING_DATASETS.add(
    "imagefolder", open_imagefolder,
    help="image folder, ImageNet layout (data.root=DIR: train/<class>/*.JPEG|png, val/<class>/* or TinyImageNet's "
         "val/images + val_annotations.txt); decoded in workers (Pillow)",
)
STREAMING_DATASETS.add(
    "webdataset", open_shards,
    help="WebDataset tar shards (data.root='DIR/train/shard-{000000..000127}.tar', written by `robustrain data "
         "shard`); decoded in workers (Pillow)",
)


def open_streaming(name: str, root: str | None, split: str, *, test_root: str | None = None) -> ImageSource:
    """Split ``split`` (``"train"`` / ``"test"``) of streaming dataset ``name`` at ``root``.

    Raises:
        KeyError: unknown name.
        DatasetFileError: no ``root``, or its files are missing or malformed (one line).
    """
    opener = STREAMING_DATASETS.get(name)
    if not root:
        raise DatasetFileError(f"data.name={name} needs data.root (the image folder or the shard pattern); "
                               f"see `robustrain list datasets`")
    return opener(root, split, test_root=test_root)


def streaming_info(name: str, train: ImageSource, test: ImageSource, image_size: int) -> DatasetInfo:
    """A :class:`DatasetInfo` for opened splits: classes of ``train``, ``(3, S, S)`` images,
    ImageNet mean/std.

    Raises:
        DatasetFileError: fewer than 2 classes, or test labels outside the training classes.
    """
    num_classes = len(train.classes)
    if num_classes < 2:
        raise DatasetFileError(f"{train.where} has {num_classes} class; a classifier needs at least 2")
    if len(test) and int(test.labels.max()) >= num_classes:
        raise DatasetFileError(f"the test split {test.where} has label {int(test.labels.max())} but the training "
                               f"split {train.where} has {num_classes} classes; use test images of the training "
                               "classes")
    return DatasetInfo(name=name, num_classes=num_classes, image_shape=(3, image_size, image_size),
                       mean=IMAGENET_MEAN, std=IMAGENET_STD, train_size=len(train), test_size=len(test),
                       class_names=tuple(train.classes), source=train.where)
