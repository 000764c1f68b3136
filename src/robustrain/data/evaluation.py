"""The test split a saved model is evaluated on, from the data section of its saved config: one
mechanism for every dataset kind, used by ``robustrain eval``, ``audit``, ``analyze`` and
``report`` and by the artifacts' dataset check.

An in-memory dataset (:data:`robustrain.data.DATASETS`) is described by its registry entry and
read with :func:`~robustrain.data.load_split`. A streaming dataset (``imagefolder``,
``webdataset``) is only known from its folder: :func:`eval_data_info` opens the test split (a
listing: no image decoded, the training images not even listed) and :func:`load_eval_split`
decodes the first ``n`` test images with the evaluation view the run was trained with
(``data.image_size``, ``data.resize``), through the same :func:`decode_test_images` that
:func:`robustrain.build.build_run` uses for the run's final table, so a saved model is evaluated
on exactly the pixels its training run evaluated it on.

Example:
    >>> data = EvalData.from_section({"name": "synthetic", "root": None})
    >>> split = load_eval_split(data, n=8)
    >>> split.x.shape, split.x.dtype, split.info.num_classes, data.streaming
    (torch.Size([8, 3, 16, 16]), torch.uint8, 10, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import torch

from robustrain.utils.errors import DatasetFileError

from .info import DatasetInfo
from .registry import get_dataset_info, load_split
from .streaming import IMAGENET_MEAN, IMAGENET_STD, STREAMING_DATASETS, decode_images, expand_pattern, open_streaming
from .streaming.sources import ImageSource

__all__ = ["EvalData", "EvalSplit", "decode_test_images", "eval_data_info", "eval_labels", "load_eval_split"]

#: ImageNet's evaluation crop ratio (224 of 256): the resize assumed for a streaming model whose
#: saved data section does not give one (an export card without its config)
CROP_RATIO = 0.875

#: the one-line fix for a data folder that moved since training
MOVED_HINT = "give its new place with --data-root DIR"


@dataclass(frozen=True)
class EvalData:
    """Where a saved model's test split comes from: the fields of its config's data section that
    evaluation reads (defaults are :class:`robustrain.config.DataConfig`'s).

    Attributes:
        name: the dataset (a :data:`~robustrain.data.DATASETS` name, ``imagefolder`` or ``webdataset``).
        root: ``data.root`` (a streaming dataset's folder or shard pattern; None: the default data folder).
        test_root: ``data.test_root`` (a streaming test split not in its default place).
        image_size, resize: a streaming dataset's evaluation view (centre ``image_size`` crop after
            resizing the shorter side to ``resize``).
        workers: decoding processes (capped by the number of batches decoded).
        on_corrupt: ``error`` or ``skip`` for an image that does not decode.
        batch_size: images decoded per batch (``data.eval_batch_size``).
        download: fetch a missing in-memory dataset's test files.
    """

    name: str
    root: str | None = None
    test_root: str | None = None
    image_size: int = 224
    resize: int = 256
    workers: int = 4
    on_corrupt: str = "error"
    batch_size: int = 256
    download: bool = False

    @property
    def streaming(self) -> bool:
        """A dataset decoded from its files (not held in memory)."""
        return self.name in STREAMING_DATASETS

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None, *, name: str | None = None, root: str | None = None,
                     image_shape: Sequence[int] | None = None, download: bool = False) -> "EvalData":
        """The test data of a saved config's data section (a plain dict, as a checkpoint keeps it).

        Args:
            section: the saved ``config["data"]`` (None or ``{}``: nothing saved, e.g. an export).
            name: evaluate on this dataset instead (``--dataset``); the saved folders are then
                dropped, the saved evaluation view kept only for the same dataset.
            root: the folder now (``--data-root``): replaces the saved ``root`` and drops the saved
                ``test_root`` (which moved with it; the test split is then the default one under ``root``).
            image_shape: the model's ``(C, H, W)``: the image size when the section gives none.
            download: fetch missing in-memory test files.

        Example:
            >>> d = EvalData.from_section({"name": "imagefolder", "root": "/old", "image_size": 64, "resize": 72},
            ...                           root="/new")
            >>> d.root, d.image_size, d.resize, d.streaming
            ('/new', 64, 72, True)
            >>> EvalData.from_section(None, name="imagefolder", image_shape=(3, 32, 32)).resize
            37
        """
        saved = dict(section or {})
        same = name is None or name == saved.get("name")
        keep = saved if same else {}
        size = keep.get("image_size") or (int(image_shape[-1]) if image_shape else None)
        resize = keep.get("resize") or (round(size / CROP_RATIO) if size else None)
        fields: dict[str, Any] = {
            "name": str(name or saved.get("name")),
            "root": root if root is not None else keep.get("root"),
            "test_root": None if root is not None else keep.get("test_root"),
            "download": download,
        }
        for key, value in (("image_size", size), ("resize", resize), ("workers", saved.get("workers")),
                           ("on_corrupt", saved.get("on_corrupt")), ("batch_size", saved.get("eval_batch_size"))):
            if value is not None:
                fields[key] = value
        return cls(**fields)


class EvalSplit(NamedTuple):
    """Test images (uint8 ``(N, C, H, W)``, CPU), their labels and the dataset's description."""

    x: torch.Tensor
    y: torch.Tensor
    info: DatasetInfo


def _exists(root: str) -> bool:
    """Whether ``root`` (a folder or a shard pattern) names anything on disk."""
    return Path(root).exists() or any(Path(p).exists() for p in expand_pattern(root))


def _open_test(data: EvalData) -> ImageSource:
    """The streaming test split, with a one-line error naming ``--data-root`` when the folder is gone."""
    if not data.root:
        raise DatasetFileError(f"evaluating on {data.name} needs the dataset's folder, which is not recorded with "
                               f"the model; pass --data-root DIR (the folder or shard pattern trained on)")
    for where in (data.root, data.test_root):
        if where and not _exists(where):
            raise DatasetFileError(f"the {data.name} data {where} does not exist (moved since training?); "
                                   f"{MOVED_HINT}")
    return open_streaming(data.name, data.root, "test", test_root=data.test_root)


def _streaming_info(data: EvalData, test: ImageSource) -> DatasetInfo:
    """``test``'s classes (the training classes: folder names or the shards' manifest), ``(3, S, S)``."""
    if len(test) == 0:
        raise DatasetFileError(f"the test split {test.where} holds no images; {MOVED_HINT}")
    return DatasetInfo(name=data.name, num_classes=len(test.classes), image_shape=(3, data.image_size,
                       data.image_size), mean=IMAGENET_MEAN, std=IMAGENET_STD, train_size=0, test_size=len(test),
                       class_names=tuple(test.classes), source=test.where)


def eval_data_info(data: EvalData) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``data``: the registry entry, or for a streaming dataset its
    test split's classes and the ``(3, image_size, image_size)`` view (``train_size`` 0: the
    training images are not listed). Nothing is decoded.

    Raises:
        KeyError: an unknown dataset name.
        DatasetFileError: a streaming folder that is missing (one line naming ``--data-root``) or malformed.
    """
    if not data.streaming:
        return get_dataset_info(data.name)
    return _streaming_info(data, _open_test(data))


def decode_test_images(source: ImageSource, n: int | None, data: EvalData) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation views of the first ``n`` images of ``source`` (all when None) as uint8,
    with labels. Only those ``n`` are read and decoded (``--n 1000`` on ImageNet decodes 1000
    images, not the 50,000 of its validation set). :func:`robustrain.build.build_run` decodes a
    run's final test images with it, so an evaluation of its checkpoint sees the same pixels.
    """
    count = len(source) if n is None else min(int(n), len(source))
    batches = -(-count // data.batch_size)
    # one worker per batch at most, none for one batch: `--n 8` need not start data.workers processes
    workers = min(data.workers, batches) if batches > 1 else 0
    x, y, _ = decode_images(source, torch.arange(count), image_size=data.image_size, resize=data.resize,
                            workers=workers, batch_size=data.batch_size, on_corrupt=data.on_corrupt)
    return x, y


def load_eval_split(data: EvalData, n: int | None = None, *, ids: Sequence[int] | None = None) -> EvalSplit:
    """The first ``n`` test images of ``data`` (all when None), their labels and :class:`DatasetInfo`.

    For a streaming dataset only those ``n`` images are decoded (the default, None, decodes the
    whole test split: 50,000 JPEGs on ImageNet; give ``n`` for a quick evaluation), with the
    run's evaluation view, exactly as the run's final table decoded them.

    Args:
        data: :meth:`EvalData.from_section` of the saved config.
        n: the first ``n`` test images.
        ids: these test images instead, in this order (e.g. one per class from :func:`eval_labels`).

    Raises:
        KeyError: an unknown dataset name.
        DatasetFileError: missing or corrupt files; a streaming folder that moved (one line naming ``--data-root``).
    """
    if not data.streaming:
        x, y = load_split(data.name, "test", root=data.root, download=data.download)
        if ids is not None:
            sel = torch.as_tensor(list(ids), dtype=torch.int64)
            return EvalSplit(x[sel], y[sel], get_dataset_info(data.name))
        return EvalSplit(x[:n] if n is not None else x, y[:n] if n is not None else y, get_dataset_info(data.name))
    test = _open_test(data)
    info = _streaming_info(data, test)
    if ids is not None:
        x, y, _ = decode_images(test, torch.as_tensor(list(ids), dtype=torch.int64), image_size=data.image_size,
                                resize=data.resize, workers=0, batch_size=data.batch_size, on_corrupt=data.on_corrupt)
        return EvalSplit(x, y, info)
    x, y = decode_test_images(test, n, data)
    return EvalSplit(x, y, info)


def eval_labels(data: EvalData) -> torch.Tensor:
    """The labels of ``data``'s whole test split (a streaming split's without decoding an image)."""
    if not data.streaming:
        return load_split(data.name, "test", root=data.root, download=data.download)[1]
    return _open_test(data).labels

