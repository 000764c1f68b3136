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

from .augment import CropFlipParams, apply_crop_flip, random_crop_flip, sample_crop_flip
from .batch import Batch, to_unit_float
from .checksums import CHECKSUMS, CONTENT_CHECKSUMS
from .download import DownloadError
from .errors import DatasetFileError
from .info import SPLITS, ArraySplit, DatasetInfo
from .loader import DeviceLoader, Loaders, epoch_seed, make_loaders, subset_indices
from .registry import (
    DATASETS,
    DatasetSpec,
    Download,
    default_data_root,
    download_dataset,
    get_dataset_info,
    load_split,
    register_dataset,
    search_dirs,
)
from .synthetic import make_synthetic
from .split import SPLIT_SEED, ValidationSplit, default_val_n, validation_split
from .mixed_loader import MixedLoader, MixedPlan, mix_counts, mixed_epoch_length
from .npz import ExtraData, load_extra_data, open_npz_member, save_extra_data

__all__ = [
    "Batch",
    "to_unit_float",
    "DatasetInfo",
    "ArraySplit",
    "SPLITS",
    "DATASETS",
    "DatasetSpec",
    "Download",
    "register_dataset",
    "get_dataset_info",
    "load_split",
    "download_dataset",
    "default_data_root",
    "search_dirs",
    "DatasetFileError",
    "DownloadError",
    "CHECKSUMS",
    "CONTENT_CHECKSUMS",
    "DeviceLoader",
    "Loaders",
    "make_loaders",
    "subset_indices",
    "epoch_seed",
    "CropFlipParams",
    "sample_crop_flip",
    "apply_crop_flip",
    "random_crop_flip",
    "make_synthetic",
    "SPLIT_SEED",
    "ValidationSplit",
    "default_val_n",
    "validation_split",
    "ExtraData",
    "MixedLoader",
    "MixedPlan",
    "load_extra_data",
    "save_extra_data",
    "open_npz_member",
    "mix_counts",
    "mixed_epoch_length",
]
