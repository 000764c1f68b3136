"""The dataset registry: metadata plus a reader per dataset, and :func:`load_split`.

Adding a dataset is one :func:`register_dataset` call; the CLI's ``list`` command and the
parametrised tests read :data:`DATASETS`, so the new entry is listed and tested automatically.

Where files are looked for (``root`` defaults to ``$ROBUSTRAIN_DATA``, else ``./data``):
``root`` itself, then ``root/<name>``, then any dataset-specific folder (torchvision's
``root/MNIST/raw`` ...). ``download=True`` fetches missing or corrupt files into
``root/<name>/`` (or over the corrupt copy where it was found).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from robustrain.utils.registry import Registry
from .checksums import CHECKSUMS, file_md5
from .download import DownloadError, download_file
from .errors import DatasetFileError
from .info import SPLITS, ArraySplit, DatasetInfo
from .readers import (
    PACKAGED_DIR,
    ReadContext,
    Reader,
    read_cifar10,
    read_cifar10_mini,
    read_cifar100,
    read_mnist_like,
    read_svhn,
    read_synthetic,
)
from .synthetic import SYNTHETIC_CLASSES, SYNTHETIC_SHAPE, SYNTHETIC_SIZES

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Download",
    "register_dataset",
    "get_dataset_info",
    "load_split",
    "download_dataset",
    "default_data_root",
    "search_dirs",
]

log = logging.getLogger(__name__)

#: Environment variable naming the default data folder.
DATA_ROOT_ENV = "ROBUSTRAIN_DATA"


@dataclass(frozen=True)
class Download:
    """One file ``download=True`` may fetch: saved as ``relpath``, md5 from ``CHECKSUMS``."""

    relpath: str
    url: str
    splits: tuple[str, ...] = SPLITS


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: the metadata, the reader and where the files come from.

    Attributes:
        info: static metadata.
        reader: ``reader(ctx, split) -> ArraySplit``.
        downloads: files ``download=True`` fetches (empty: no automatic download).
        subdirs: extra folders under ``root`` to search (other libraries' layouts).
        uses_root: ``False`` for packaged or generated data, which ignore ``root``.
    """

    info: DatasetInfo
    reader: Reader
    downloads: tuple[Download, ...] = ()
    subdirs: tuple[str, ...] = ()
    uses_root: bool = True


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec, *, help: str) -> DatasetSpec:
    """Adds ``spec`` to :data:`DATASETS` under ``spec.info.name``."""
    DATASETS.add(spec.info.name, spec, help=help)
    return spec


def default_data_root() -> Path:
    """``$ROBUSTRAIN_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_ROOT_ENV) or "data").expanduser()


def search_dirs(name: str, root: str | os.PathLike | None = None) -> tuple[Path, ...]:
    """The folders searched for ``name``'s files, in order.

    Example:
        >>> [str(p) for p in search_dirs("cifar10", "/d")]
        ['/d', '/d/cifar10']
    """
    spec = DATASETS.get(name)
    if not spec.uses_root:
        return (PACKAGED_DIR,) if spec.info.files else ()
    base = Path(root).expanduser() if root is not None else default_data_root()
    dirs = [base, base / name, *(base / sub for sub in spec.subdirs)]
    return tuple(dict.fromkeys(dirs))  # drop duplicates, keep order


def get_dataset_info(name: str) -> DatasetInfo:
    """Metadata of a registered dataset (no file is read).

    Example:
        >>> get_dataset_info("cifar10").mean
        (0.4914, 0.4822, 0.4465)
    """
    return DATASETS.get(name).info


def _context(name: str, root: str | os.PathLike | None, verify: bool) -> ReadContext:
    spec = DATASETS.get(name)
    return ReadContext(
        info=spec.info,
        dirs=search_dirs(name, root),
        verify=verify,
        download_available=bool(spec.downloads),
    )


def load_split(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    verify: bool = True,
) -> ArraySplit:
    """Reads one split of a registered dataset into memory, as stored (uint8, NCHW).

    Args:
        name: registry name (see ``DATASETS.names()``).
        split: ``"train"`` or ``"test"``.
        root: data folder (default ``$ROBUSTRAIN_DATA`` or ``./data``); ignored by
            ``cifar10-mini`` and ``synthetic``.
        download: fetch missing or corrupt files from the official source first.
        verify: check md5s against :data:`robustrain.data.checksums.CHECKSUMS` (cached).

    Returns:
        ``ArraySplit(images uint8 (N, C, H, W), labels int64 (N,))`` on the CPU.

    Raises:
        DatasetFileError: files missing, corrupt, unreadable, or the download failed.
        KeyError: unknown dataset name.
        ValueError: unknown split.

    Example:
        >>> images, labels = load_split("cifar10-mini", "test")
        >>> images.shape, images.dtype, labels.dtype
        (torch.Size([1017, 3, 32, 32]), torch.uint8, torch.int64)
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    spec = DATASETS.get(name)
    ctx = _context(name, root, verify)
    try:
        return spec.reader(ctx, split)
    except DatasetFileError:
        if not (download and spec.downloads):
            raise
    download_dataset(name, root, splits=(split,))
    return spec.reader(ctx, split)


def download_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    splits: tuple[str, ...] = SPLITS,
    timeout: float = 60.0,
) -> list[Path]:
    """Fetches the files of ``name`` that are missing or fail their md5 check.

    Each file is written atomically (temporary file, md5 check, rename): a failed or
    interrupted download leaves nothing behind.

    Returns:
        The paths that were downloaded (empty when everything was already in place).

    Raises:
        DatasetFileError: the dataset has no download, or a download failed (no network ...).
    """
    spec = DATASETS.get(name)
    ctx = _context(name, root, verify=True)
    if not spec.downloads:
        raise ctx.error("this dataset has no automatic download", hint="place the files there")
    target_dir = ctx.dirs[1] if len(ctx.dirs) > 1 else ctx.dirs[0]
    fetched: list[Path] = []
    for item in spec.downloads:
        if not set(item.splits) & set(splits):
            continue
        md5 = CHECKSUMS.get(name, {}).get(item.relpath)
        existing = ctx.find(item.relpath)
        if existing is not None and (md5 is None or file_md5(existing) == md5):
            continue
        dest = existing if existing is not None else target_dir / item.relpath
        log.info("downloading %s -> %s", item.url, dest)
        try:
            fetched.append(download_file(item.url, dest, md5, timeout=timeout))
        except DownloadError as exc:
            raise ctx.error(
                f"download failed: {exc}",
                hint=f"without network, fetch {item.url} elsewhere and copy it into {target_dir}",
            ) from None
    return fetched


# ---------------------------------------------------------------- the datasets

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

DIGITS = tuple(str(d) for d in range(10))

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)

_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
# yann.lecun.com no longer serves the files reliably; this is torchvision's mirror.
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _files(name: str) -> tuple[tuple[str, str], ...]:
    return tuple(CHECKSUMS.get(name, {}).items())


def _idx_downloads(base_url: str) -> tuple[Download, ...]:
    return tuple(
        Download(filename, base_url + filename, (split,))
        for split, names in _IDX_FILES.items()
        for filename in names
    )


register_dataset(
    DatasetSpec(
        DatasetInfo(
            name="cifar10",
            num_classes=10,
            image_shape=(3, 32, 32),
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            train_size=50_000,
            test_size=10_000,
            class_names=CIFAR10_CLASSES,
            source=_CIFAR10_URL,
            files=_files("cifar10"),
            aug_pad=4,
            aug_flip=True,
        ),
        read_cifar10,
        downloads=(Download("cifar-10-python.tar.gz", _CIFAR10_URL),),
    ),
    help="CIFAR-10 (official python batches folder or .tar.gz)",
)

register_dataset(
    DatasetSpec(
        DatasetInfo(
            name="cifar100",
            num_classes=100,
            image_shape=(3, 32, 32),
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
            train_size=50_000,
            test_size=10_000,
            class_names=CIFAR100_CLASSES,
            source=_CIFAR100_URL,
            files=_files("cifar100"),
            aug_pad=4,
            aug_flip=True,
        ),
        read_cifar100,
        downloads=(Download("cifar-100-python.tar.gz", _CIFAR100_URL),),
    ),
    help="CIFAR-100, fine labels (official python folder or .tar.gz)",
)

register_dataset(
    DatasetSpec(
        DatasetInfo(
            name="svhn",
            num_classes=10,
            image_shape=(3, 32, 32),
            mean=(0.4377, 0.4438, 0.4728),
            std=(0.198, 0.201, 0.197),
            train_size=73_257,
            test_size=26_032,
            class_names=DIGITS,
            source=_SVHN_URL,
            files=_files("svhn"),
            # No crop/flip: the usual setting of the adversarial-training papers on SVHN,
            # and flipping digits changes their meaning.
            aug_pad=0,
            aug_flip=False,
        ),
        read_svhn,
        downloads=tuple(
            Download(f"{split}_32x32.mat", f"{_SVHN_URL}{split}_32x32.mat", (split,))
            for split in SPLITS
        ),
    ),
    help="SVHN cropped digits (train/test .mat; needs scipy)",
)

register_dataset(
    DatasetSpec(
        DatasetInfo(
            name="mnist",
            num_classes=10,
            image_shape=(1, 28, 28),
            mean=(0.1307,),
            std=(0.3081,),
            train_size=60_000,
            test_size=10_000,
            class_names=DIGITS,
            source="http://yann.lecun.com/exdb/mnist/ (downloads use " + _MNIST_URL + ")",
            files=_files("mnist"),
        ),
        read_mnist_like,
        downloads=_idx_downloads(_MNIST_URL),
        subdirs=("MNIST/raw",),
    ),
    help="MNIST (IDX .gz files)",
)

register_dataset(
    DatasetSpec(
        DatasetInfo(
            name="fashion-mnist",
            num_classes=10,
            image_shape=(1, 28, 28),
            mean=(0.2860,),
            std=(0.3530,),
            train_size=60_000,
            test_size=10_000,
            class_names=FASHION_MNIST_CLASSES,
            source=_FASHION_URL,
            files=_files("fashion-mnist"),
        ),
        read_mnist_like,
        downloads=_idx_downloads(_FASHION_URL),
        # torchvision's layout. Debian's dataset-fashion-mnist package installs the files in
        # /usr/share/datasets/fashion-mnist, i.e. root=/usr/share/datasets works.
        subdirs=("FashionMNIST/raw",),
    ),
    help="Fashion-MNIST (IDX .gz files)",
)

register_dataset(
    DatasetSpec(
        DatasetInfo(
            name="cifar10-mini",
            num_classes=10,
            image_shape=(3, 32, 32),
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            train_size=5085,
            test_size=1017,
            class_names=CIFAR10_CLASSES,
            source=(
                "packaged with robustrain: real CIFAR-10 pixels, the first 1017 images of each "
                "official data_batch_k (train) and official test images 0..1016 (test)"
            ),
            files=_files("cifar10-mini"),
            aug_pad=4,
            aug_flip=True,
        ),
        read_cifar10_mini,
        uses_root=False,
    ),
    help="real CIFAR-10 subset shipped in the package (5085 train / 1017 test); no download",
)

register_dataset(
    DatasetSpec(
        DatasetInfo(
            name="synthetic",
            num_classes=SYNTHETIC_CLASSES,
            image_shape=SYNTHETIC_SHAPE,
            # Measured on the generated training split (see tests/test_data.py).
            mean=(0.520, 0.500, 0.507),
            std=(0.152, 0.154, 0.151),
            train_size=SYNTHETIC_SIZES["train"],
            test_size=SYNTHETIC_SIZES["test"],
            class_names=None,
            source="generated (robustrain.data.synthetic.make_synthetic, fixed seeds)",
            # No augmentation: tests want it fast and the class patterns are position-bound.
        ),
        read_synthetic,
        uses_root=False,
    ),
    help="seeded learnable toy data, 10 classes 3x16x16 (512 train / 256 test), for tests",
)
