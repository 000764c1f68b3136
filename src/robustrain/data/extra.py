"""Extra (generated) training data, memory-mapped, mixed into every training batch.

The extra-data setting of the UIAT paper (Table 4; Appendix A.2) follows Gowal et al. 2021 /
Rebuffi et al. 2021 / Wang et al. 2023 ("DM-Improves-AT"): 1M DDPM-generated images are
mixed into every batch at a fixed *original-to-generated ratio* (0.3 for CIFAR-10: 3 original
images for every 7 generated ones), and training runs for "CIFAR-10-equivalent epochs".

Two pieces:

* a reader, :func:`load_extra_data`, that memory-maps the arrays of an **uncompressed**
  ``.npz`` (``np.savez``) or of a folder holding ``image.npy`` + ``label.npy`` and validates
  them against the dataset. A 1M-image CIFAR file (3 GB) is never copied into RAM: only the
  rows of the current batch are read (the OS page cache keeps hot pages, shared by every
  process reading the file).
* :class:`MixedLoader`, which wraps the dataset's :class:`~robustrain.data.DeviceLoader`
  (whose device-resident original split, augmentation settings, seed, batch size and shard it
  reuses) and yields ``Batch(x, y, idx)`` of ``round(ratio * B)`` original and
  ``B - round(ratio * B)`` generated images.

File format (the one of the DM-Improves-AT / Rebuffi et al. files): ``image`` uint8
``(N, H, W, C)`` (NHWC, as saved by most generators), ``label`` integer ``(N,)`` in
``0 .. num_classes - 1``. A compressed ``.npz`` (``np.savez_compressed``) cannot be
memory-mapped and is rejected with the one-line conversion command (loading it silently would
need the whole array in RAM, 3 GB for 1M CIFAR images, in every process).

Example:
    >>> import tempfile, numpy as np
    >>> from robustrain.data import DeviceLoader, load_split, make_synthetic
    >>> gen_x, gen_y = make_synthetic("test", n=100)
    >>> path = save_extra_data(tempfile.mkdtemp() + "/gen.npz", gen_x.transpose(0, 2, 3, 1), gen_y)
    >>> extra = load_extra_data(path, image_shape=(3, 16, 16), num_classes=10)
    >>> isinstance(extra.images, np.memmap), extra.images.shape
    (True, (100, 16, 16, 3))
    >>> train_x, train_y = load_split("synthetic", "train")
    >>> loader = MixedLoader(DeviceLoader(train_x, train_y, 100), extra.images, extra.labels, ratio=0.3)
    >>> loader.set_epoch(0)
    >>> batch = next(iter(loader))
    >>> int((batch.idx < 512).sum()), int((batch.idx >= 512).sum()), len(loader), loader.num_ids
    (30, 70, 6, 612)
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch

from robustrain.utils.fileio import atomic_open

from .augment import CropFlipParams, apply_crop_flip, sample_crop_flip
from .batch import Batch
from .errors import DatasetFileError
from .loader import DeviceLoader

__all__ = [
    "ExtraData",
    "MixedLoader",
    "MixedPlan",
    "load_extra_data",
    "save_extra_data",
    "open_npz_member",
    "mix_counts",
    "mixed_epoch_length",
]

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


# ----------------------------------------------------------------------------- reading
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
        robustrain.data.errors.DatasetFileError: extra data '...g.npz': labels must lie in 0..2, got 0..3; fix: ...
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


# ------------------------------------------------------------------------------ mixing
def mix_counts(batch_size: int, ratio: float) -> tuple[int, int]:
    """(original, generated) images per batch for an original-to-generated ``ratio``.

    ``round(ratio * batch_size)`` originals. The reference sampler (``SemiSupervisedSampler``
    of the HAT / DM-Improves-AT code) takes ``B - int(B * (1 - ratio))``; both give the paper's
    154 + 358 (B = 512, 0.3) and 205 + 307 (0.4), and never differ by more than one image.

    Example:
        >>> mix_counts(512, 0.3), mix_counts(128, 0.3), mix_counts(10, 1.0)
        ((154, 358), (38, 90), (10, 0))
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1] (0.3 = 3 original : 7 generated), got {ratio}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_orig = round(ratio * batch_size)
    if n_orig == 0:
        raise ValueError(f"ratio={ratio} with batch_size={batch_size} leaves no original image per batch; "
                         "raise data.extra.ratio or data.batch_size")
    return n_orig, batch_size - n_orig


def mixed_epoch_length(num_original: int, batch_size: int, world_size: int = 1) -> int:
    """Steps of one *original-dataset-equivalent* epoch: ``ceil(N / (world_size * B))``.

    As in the HAT code the UIAT paper follows (imrahulr/hat) and DM-Improves-AT, both
    ``core/data/semisup.py``: ``num_batches = ceil(dataset_size / batch_size)`` with
    ``dataset_size`` the size of the original training split (set before the generated images
    are appended), and the UIAT paper's "CIFAR-10-equivalent epochs (the same amount of
    training examples as standard CIFAR-10 in an epoch)": every batch is full, so an epoch
    shows ``N`` images rounded up to whole batches, original and generated together (50,176
    for CIFAR-10 at B = 512).

    Example:
        >>> mixed_epoch_length(50_000, 512), mixed_epoch_length(50_000, 128, world_size=4)
        (98, 98)
    """
    return max(1, math.ceil(num_original / (batch_size * world_size)))


def _stream_seed(seed: int, epoch: int, stream: int) -> int:
    """A 64-bit seed for one random stream of one epoch (unrelated across all three inputs)."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0])


def _draw(n: int, k: int, generator: torch.Generator, shuffle: bool) -> torch.Tensor:
    """``k`` positions in ``0..n-1``: successive random permutations (each pass without
    replacement; a new one when a pass runs out, as the reference sampler does)."""
    passes = -(-k // n)
    parts = [torch.randperm(n, generator=generator) if shuffle else torch.arange(n) for _ in range(passes)]
    return torch.cat(parts)[:k] if parts else torch.empty(0, dtype=torch.int64)


class MixedPlan(NamedTuple):
    """One epoch of a :class:`MixedLoader`, laid out as ``(steps * world_size, ...)`` rows;
    row ``b * world_size + rank`` is batch ``b`` of rank ``rank``.

    Attributes:
        original: int64 positions into the original (sub)split, ``(rows, n_original)``, device.
        generated: int64 rows of the extra arrays, ``(rows, n_generated)``, CPU, sorted within
            each row (so the memory-mapped reads go forward through the file).
        params: crop/flip per sample in batch order (originals then generated), flattened
            ``rows * B``, device; ``None`` without augmentation.
        shuffle: within-batch permutation ``(rows, B)``, device (the mixed batch is shuffled,
            as the reference sampler does, so any slice of it holds both kinds).
    """

    original: torch.Tensor
    generated: torch.Tensor
    params: CropFlipParams | None
    shuffle: torch.Tensor


class MixedLoader:
    """Yields batches of original and generated images at a fixed ratio (UIAT Table 4 setting).

    Wraps the dataset's :class:`~robustrain.data.DeviceLoader` ``original`` and reuses its
    device-resident split (and ``indices`` subset), batch size, seed, device, augmentation
    (``augment``/``pad``/``flip``), ``shuffle`` and shard (``rank``/``world_size``).

    * Each batch holds ``n_original = round(ratio * B)`` original images (from the device) and
      ``n_generated = B - n_original`` generated ones (read from the memory-mapped arrays,
      sorted by row for locality, moved to the device), both with the same augmentation,
      shuffled together.
    * **Epoch = one original-dataset equivalent** (:func:`mixed_epoch_length`): ``ceil(N /
      (world_size * B))`` full batches, ``N`` = original (sub)split size, i.e. as many images
      as one pass over the original split, counting original and generated alike, as in
      ``SemiSupervisedSampler`` of the HAT / DM-Improves-AT code (``core/data/semisup.py``)
      and the UIAT paper's "CIFAR-10-equivalent epochs". ``drop_last`` has no effect (every
      batch is full).
    * Sampling, as in that sampler: every epoch takes the first ``steps * n_original`` entries
      of a fresh permutation of the originals (with ratio 0.3 an epoch shows ~30% of them; a new
      permutation starts if one runs out). Generated images are drawn the same way, without
      replacement within an epoch (the reference draws them with replacement; same expected
      use, fewer repeats).
    * Deterministic: epoch ``e``'s plan is a pure function of ``(seed, e)`` (two private CPU
      generators, one for the originals + augmentation + within-batch order, one for the
      generated rows); the global RNG is never touched. Call :meth:`set_epoch` per epoch.
    * ``idx``: originals keep their global ids ``< original.num_ids``; generated row ``j`` has
      id ``original.num_ids + j``. :attr:`num_ids` (= ``original.num_ids + len(extra)``) is
      what methods with per-sample buffers must be sized with (the trainer passes it as
      ``MethodContext.num_train``).
    * Sharding: rank ``r`` of ``W`` takes batch rows ``b * W + r`` of one global plan, so the
      ranks of a step see disjoint samples, each with ``n_original`` originals.

    Args:
        original: the training loader of the original split.
        extra_images: uint8 ``(M, H, W, C)`` (an ``np.memmap`` from :func:`load_extra_data`,
            or any array / tensor).
        extra_labels: integer ``(M,)``.
        ratio: original-to-generated ratio, the fraction of originals per batch, in (0, 1].

    Example:
        >>> from robustrain.data import DeviceLoader, load_split
        >>> x, y = load_split("synthetic", "train")
        >>> gen_x, gen_y = x[:200].permute(0, 2, 3, 1).numpy(), y[:200].numpy()
        >>> loader = MixedLoader(DeviceLoader(x, y, 64, augment=True, pad=2), gen_x, gen_y, ratio=0.5)
        >>> loader.set_epoch(3)
        >>> b = next(iter(loader))
        >>> b.x.shape, loader.n_original, loader.n_generated, len(loader)
        (torch.Size([64, 3, 16, 16]), 32, 32, 8)
    """

    def __init__(
        self,
        original: DeviceLoader,
        extra_images: np.ndarray | torch.Tensor,
        extra_labels: np.ndarray | torch.Tensor,
        *,
        ratio: float = 0.3,
    ) -> None:
        if not isinstance(original, DeviceLoader):
            raise TypeError(f"original must be a DeviceLoader, got {type(original).__name__}")
        shape = tuple(extra_images.shape)
        c, h, w = original.images.shape[1:]
        if len(shape) != 4 or shape[1:] != (h, w, c) or str(extra_images.dtype) not in ("uint8", "torch.uint8"):
            raise ValueError(f"extra images must be uint8 (M, {h}, {w}, {c}) to match the original split, "
                             f"got {extra_images.dtype} {shape}")
        # a copy (labels are small): a read-only, possibly unaligned memmap cannot back a tensor
        labels = (extra_labels.detach().cpu() if isinstance(extra_labels, torch.Tensor)
                  else torch.from_numpy(np.array(extra_labels))).reshape(-1)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.shape[0] != shape[0]:
            raise ValueError(f"extra labels must be {shape[0]} integers, got {labels.dtype} {tuple(labels.shape)}")
        self.original = original
        #: NHWC rows, read per batch (never copied whole: a memmap stays a memmap)
        self.extra_images = extra_images
        self.device = original.device
        # labels are small (8 MB for 1M): resident on the device, gathered there
        self.extra_labels = labels.to(self.device, torch.int64)
        self.num_extra = int(shape[0])
        self.ratio = float(ratio)
        self.n_original, self.n_generated = mix_counts(original.batch_size, self.ratio)
        self.epoch = 0

    # ---------------------------------------------------------------------- sizes
    @property
    def batch_size(self) -> int:
        return self.original.batch_size

    @property
    def seed(self) -> int:
        return self.original.seed

    @property
    def rank(self) -> int:
        return self.original.rank

    @property
    def world_size(self) -> int:
        return self.original.world_size

    @property
    def num_ids(self) -> int:
        """Size of the global id space: originals ``[0, original.num_ids)``, generated after."""
        return self.original.num_ids + self.num_extra

    @property
    def id_offset(self) -> int:
        """``idx`` of generated row 0 (= ``original.num_ids``)."""
        return self.original.num_ids

    def __len__(self) -> int:
        """Batches per epoch on this rank (:func:`mixed_epoch_length`)."""
        return mixed_epoch_length(self.original.num_subset, self.batch_size, self.world_size)

    # --------------------------------------------------------------------- epochs
    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose plan the next iteration produces."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def epoch_plan(self, epoch: int | None = None) -> MixedPlan:
        """The whole epoch's sampling and augmentation, for all ranks (a pure function of
        ``(seed, epoch)``)."""
        epoch = self.epoch if epoch is None else epoch
        rows, bs = len(self) * self.world_size, self.batch_size
        shuffle = self.original.shuffle
        g_orig = torch.Generator().manual_seed(_stream_seed(self.seed, epoch, 0))
        g_gen = torch.Generator().manual_seed(_stream_seed(self.seed, epoch, 1))
        original = _draw(self.original.num_subset, rows * self.n_original, g_orig, shuffle).view(rows, self.n_original)
        params = None
        if self.original.augment:
            params = sample_crop_flip(rows * bs, g_orig, pad=self.original.pad, flip=self.original.flip)
            params = params.to(self.device)
        order = (torch.rand(rows, bs, generator=g_orig).argsort(dim=1) if shuffle
                 else torch.arange(bs).expand(rows, bs))
        generated = _draw(self.num_extra, rows * self.n_generated, g_gen, shuffle).view(rows, self.n_generated)
        generated = generated.sort(dim=1).values
        return MixedPlan(original.to(self.device), generated, params, order.to(self.device))

    def _read_generated(self, rows: torch.Tensor) -> torch.Tensor:
        """uint8 ``(n, C, H, W)`` on the device for the given (sorted) rows."""
        if isinstance(self.extra_images, torch.Tensor):
            nhwc = self.extra_images.index_select(0, rows.to(self.extra_images.device))
        else:
            # fancy indexing a memmap reads just these rows into a fresh (small) array
            nhwc = torch.from_numpy(np.ascontiguousarray(self.extra_images[rows.numpy()]))
        # NHWC -> NCHW after the transfer: the permute copy runs on the device
        return nhwc.to(self.device, non_blocking=True).permute(0, 3, 1, 2).contiguous()

    def __iter__(self) -> Iterator[Batch]:
        plan = self.epoch_plan()
        orig, bs, offset = self.original, self.batch_size, self.id_offset
        for b in range(len(self)):
            row = b * self.world_size + self.rank
            pos = plan.original[row]
            x = orig.images.index_select(0, pos)
            y = orig.labels.index_select(0, pos)
            idx = orig.ids.index_select(0, pos)
            if self.n_generated:
                gen = plan.generated[row]
                gen_dev = gen.to(self.device, non_blocking=True)
                x = torch.cat([x, self._read_generated(gen)])
                y = torch.cat([y, self.extra_labels.index_select(0, gen_dev)])
                idx = torch.cat([idx, gen_dev + offset])
            if plan.params is not None:
                x = apply_crop_flip(x, plan.params.select(slice(row * bs, (row + 1) * bs)), pad=orig.pad)
            perm = plan.shuffle[row]
            # float conversion per batch only (the resident data stays uint8)
            yield Batch(x.index_select(0, perm).float().div_(255.0), y.index_select(0, perm),
                        idx.index_select(0, perm))

    def __repr__(self) -> str:
        return (f"MixedLoader(original={self.original.num_subset}, extra={self.num_extra}, ratio={self.ratio}, "
                f"per_batch={self.n_original}+{self.n_generated}, batches={len(self)}, seed={self.seed}, "
                f"device={self.device}, rank={self.rank}/{self.world_size})")
