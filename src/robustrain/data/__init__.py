"""Datasets, their files and a device-resident loader.

Images stay uint8 until a batch is produced; batches carry float32 pixels in [0, 1]
(normalisation belongs to the model's ``Normalize`` front end) and global sample ids.

Example:
    >>> from robustrain.data import make_loaders
    >>> loaders = make_loaders("cifar10-mini", batch_size=256, eval_n=512)
    >>> loaders.train.set_epoch(0)
    >>> batch = next(iter(loaders.train))
    >>> batch.x.shape, batch.x.dtype, loaders.info.mean
    (torch.Size([256, 3, 32, 32]), torch.float32, (0.4914, 0.4822, 0.4465))
"""

from .batch import Batch, to_unit_float
from .info import DatasetInfo
from .loader import DeviceLoader, make_loaders
from .registry import (
    DATASETS,
    DatasetSpec,
    Download,
    download_dataset,
    get_dataset_info,
    load_split,
    register_dataset,
)
from .synthetic import make_synthetic
from .split import validation_split
from .mixed_loader import MixedLoader
from .npz import load_extra_data, save_extra_data
from .evaluation import EvalData, EvalSplit, eval_data_info, eval_labels, load_eval_split

__all__ = [
    "Batch",
    "to_unit_float",
    "DatasetInfo",
    "DATASETS",
    "DatasetSpec",
    "Download",
    "register_dataset",
    "get_dataset_info",
    "load_split",
    "download_dataset",
    "DeviceLoader",
    "make_loaders",
    "make_synthetic",
    "validation_split",
    "MixedLoader",
    "load_extra_data",
    "save_extra_data",
    "EvalData",
    "EvalSplit",
    "eval_data_info",
    "eval_labels",
    "load_eval_split",
]
