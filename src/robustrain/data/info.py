"""Dataset metadata (:class:`DatasetInfo`) and the arrays a reader returns (:class:`ArraySplit`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = ["DatasetInfo", "ArraySplit", "SPLITS"]

#: The splits every dataset provides.
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset; everything here is known without reading its files.

    Attributes:
        name: registry name (``"cifar10"``).
        num_classes: number of labels; labels are ``0 .. num_classes - 1``.
        image_shape: ``(C, H, W)`` of one image.
        mean, std: per-channel statistics of the training pixels in [0, 1]. Only the model's
            ``Normalize`` front end reads them (contract 1: the data stays in [0, 1]).
        train_size, test_size: number of images in each split (``train_size`` 0: not counted,
            for a streaming dataset opened to evaluate a saved model, whose training images are
            not listed: :func:`robustrain.data.evaluation.eval_data_info`).
        class_names: one name per label, or ``None`` when the classes have no names.
        source: where the files come from (official URL, or "packaged"/"generated").
        files: the expected files as ``(relative path, md5)`` pairs (empty for generated data).
        aug_pad: zero padding of the standard random-crop augmentation (0: no crop).
        aug_flip: whether the standard augmentation flips horizontally (off for digits).

    Example:
        >>> from robustrain.data import get_dataset_info
        >>> info = get_dataset_info("cifar10-mini")
        >>> info.image_shape, info.num_classes, info.train_size
        ((3, 32, 32), 10, 5085)
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int
    class_names: tuple[str, ...] | None
    source: str
    files: tuple[tuple[str, str], ...] = ()
    aug_pad: int = 0
    aug_flip: bool = False

    def __post_init__(self) -> None:
        channels = self.image_shape[0] if len(self.image_shape) == 3 else -1
        if len(self.image_shape) != 3 or min(self.image_shape) <= 0:
            raise ValueError(f"{self.name}: image_shape must be (C, H, W), got {self.image_shape}")
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"{self.name}: mean/std need one value per channel ({channels})")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"{self.name}: std must be positive, got {self.std}")
        if self.num_classes < 2:
            raise ValueError(f"{self.name}: num_classes must be >= 2, got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        if self.train_size < 0 or self.test_size <= 0:
            raise ValueError(f"{self.name}: split sizes must be positive (train_size 0: not counted)")
        if self.aug_pad < 0:
            raise ValueError(f"{self.name}: aug_pad must be >= 0, got {self.aug_pad}")

    def split_size(self, split: str) -> int:
        """Number of images in ``split`` (``"train"`` or ``"test"``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.train_size if split == "train" else self.test_size


class ArraySplit(NamedTuple):
    """One split held in memory, exactly as stored: no normalisation, no float conversion.

    Attributes:
        images: uint8 tensor ``(N, C, H, W)``, contiguous, on the CPU.
        labels: int64 tensor ``(N,)``.
    """

    images: torch.Tensor
    labels: torch.Tensor
