"""Streaming datasets: image folders and WebDataset tar shards, decoded in DataLoader workers.

For datasets that do not fit on the device (ImageNet: 1.28M JPEGs, ~140 GB). The in-memory
path (:class:`~robustrain.data.DeviceLoader`) stays the default for the datasets that fit. Both
yield the same ``Batch(x, y, idx)`` (float32 pixels in [0, 1] on the device, global ids) and keep
the same order contract (one shuffled order from ``(seed, epoch)``, rank ``r`` of ``W`` takes
positions ``r, r + W, ...``), so methods, trainer and DDP work unchanged.

* :mod:`.sources` — :class:`ImageSource` and the image folder (ImageNet / TinyImageNet layouts);
* :mod:`.shards` — tar shards read with ``tarfile`` (random access), and :func:`write_shards`;
* :mod:`.decode` — Pillow decoding, RandomResizedCrop + flip / resize + centre crop;
* :mod:`.sampler` — the epoch plan: order, rank shard, per-sample augmentation seeds, start step;
* :mod:`.loader` — :class:`StreamingLoader` (workers, pinned memory, float conversion on the device);
* :mod:`.registry` — ``imagefolder`` / ``webdataset`` by name.

Example:
    >>> from robustrain.data.streaming import STREAMING_DATASETS, StreamingLoader
    >>> "imagefolder" in STREAMING_DATASETS and "webdataset" in STREAMING_DATASETS
    True
"""

from .decode import PillowMissingError
from .loader import StreamingLoader, decode_images
from .registry import IMAGENET_MEAN, IMAGENET_STD, STREAMING_DATASETS, open_streaming, streaming_info
from .sampler import BatchPlanSampler, epoch_plan
from .shards import ShardSource, expand_pattern, open_shards, write_shards
from .sources import ImageFolderSource, ImageSource, open_imagefolder

__all__ = [
    "BatchPlanSampler",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderSource",
    "ImageSource",
    "PillowMissingError",
    "STREAMING_DATASETS",
    "ShardSource",
    "StreamingLoader",
    "decode_images",
    "epoch_plan",
    "expand_pattern",
    "open_imagefolder",
    "open_shards",
    "open_streaming",
    "streaming_info",
    "write_shards",
]
