""":class:`StreamingLoader`: ``Batch(x, y, idx)`` from encoded images, decoded and augmented in
DataLoader worker processes, moved to the device as uint8 (pinned on CUDA) and converted to
float32 in [0, 1] there.

Example:
    >>> import tempfile, pathlib, io, numpy as np
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for k in range(6):
    ...     p = root / "train" / f"c{k % 2}" / f"{k}.png"; p.parent.mkdir(parents=True, exist_ok=True)
    ...     Image.fromarray(np.full((20, 24, 3), 40 * k, np.uint8)).save(p)
    >>> from robustrain.data.streaming import open_imagefolder
    >>> loader = StreamingLoader(open_imagefolder(str(root), "train"), 4, image_size=16, resize=16, workers=0)
    >>> loader.set_epoch(0)
    >>> x, y, idx = next(iter(loader))
    >>> x.shape, x.dtype, bool(0 <= x.min() and x.max() <= 1), len(loader), loader.num_ids
    (torch.Size([4, 3, 16, 16]), torch.float32, True, 2, 6)
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robustrain.utils.errors import DatasetFileError

from ..batch import Batch, to_unit_float
from .decode import DecodeError, decode_rgb, eval_view, require_pillow, train_view
from .sampler import BatchPlanSampler
from .sources import ImageSource

__all__ = ["CORRUPT_POLICIES", "StreamingLoader", "decode_images"]

log = logging.getLogger(__name__)

#: what a corrupt image does: ``error`` stops with one line naming the file, ``skip`` leaves it out
#: of its batch and reports the count once per epoch
CORRUPT_POLICIES = ("error", "skip")


class _Decode(Dataset):
    """``(global id, augmentation seed) -> (uint8 (3, S, S) or None, label, id, problem or None)``;
    runs in the workers. A corrupt image is reported, not raised: the main process decides (a
    worker's exception would reach the user as a traceback)."""

    def __init__(self, source: ImageSource, *, train: bool, image_size: int, resize: int, flip: bool) -> None:
        self.source, self.train, self.size, self.resize, self.flip = source, train, image_size, resize, flip

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor | None, int, int, str | None]:
        gid, seed = item
        label = int(self.source.labels[gid])
        try:
            img = decode_rgb(self.source.read(gid))
        except (DecodeError, OSError) as e:
            return None, label, gid, f"{self.source.describe(gid)} ({e})"
        if self.train:
            x = train_view(img, self.size, np.random.default_rng(seed), flip=self.flip)
        else:
            x = eval_view(img, self.size, self.resize)
        return x, label, gid, None


class _Collate:
    """Stacks the decoded samples; the corrupt ones go to a list ``(id, problem)``."""

    def __init__(self, image_size: int) -> None:
        self.size = image_size

    def __call__(self, items: list[tuple[Any, int, int, str | None]]) -> tuple[Any, ...]:
        good = [it for it in items if it[0] is not None]
        bad = [(it[2], it[3]) for it in items if it[0] is None]
        x = torch.stack([it[0] for it in good]) if good else torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
        y = torch.tensor([it[1] for it in good], dtype=torch.int64)
        idx = torch.tensor([it[2] for it in good], dtype=torch.int64)
        return x, y, idx, bad


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a decoding worker needs no intra-op threads (W workers x N threads oversubscribe)


class StreamingLoader:
    """Iterates ``Batch(x, y, idx)`` over an :class:`~robustrain.data.streaming.ImageSource`.

    * ``x``: float32 in [0, 1], ``(B, 3, S, S)`` with ``S = image_size``, on ``device``; ``y``
      int64 labels; ``idx`` int64 global ids (positions in the source), on ``device``.
    * Training view (``train=True``): RandomResizedCrop to ``S`` + flip, per sample from its own
      seed; evaluation view (``train=False``): shorter side to ``resize``, centre ``S`` crop.
    * Order, sharding and seeds: :class:`~robustrain.data.streaming.sampler.BatchPlanSampler`
      (DeviceLoader's contract: all ranks one order from ``(seed, epoch)``, rank ``r`` takes
      global positions ``r, r + W, ...``). Call :meth:`set_epoch` before each epoch.
    * Resuming inside an epoch: ``set_epoch(e, start_step=k)`` makes the next iteration yield
      batches ``k, k + 1, ...`` of epoch ``e``, the very batches a whole epoch yields after its
      first ``k``, without reading or decoding those ``k`` (the sampler simply starts later).
      ``len(loader)`` stays the whole epoch's batch count.
    * Workers: ``workers`` processes decode with Pillow (``0``: in this process); they persist
      across epochs. Batches are pinned when ``device`` is CUDA, copied as uint8, converted on the device.
    * Corrupt images (``on_corrupt``): ``"error"`` stops with one :class:`DatasetFileError` line
      naming the file; ``"skip"`` leaves it out of its batch (the batch is smaller) and logs the
      epoch's count once, at the end of the epoch (:attr:`skipped` keeps the last epoch's ids).
      Under DDP (``world_size > 1``) a batch keeps its size instead: the skipped places are
      taken by repeats of the batch's readable samples, since the methods' collectives gather
      equal shapes from every rank.

    Args:
        source: the encoded images.
        batch_size: samples per batch (per rank).
        train: training view (else evaluation view).
        image_size, resize: output side and evaluation resize (``resize >= image_size``).
        shuffle, drop_last, seed, rank, world_size: the order (see above).
        indices: optional subset of global ids to iterate (``idx`` still reports global ids).
        flip: training flips.
        workers: decoding processes.
        device: where batches are delivered.
        on_corrupt: ``"error"`` or ``"skip"``.

    Raises:
        PillowMissingError: Pillow is not installed (before any work).
    """

    def __init__(self, source: ImageSource, batch_size: int, *, train: bool = True, image_size: int = 224,
                 resize: int = 256, shuffle: bool = True, drop_last: bool = False, seed: int = 0,
                 indices: torch.Tensor | Sequence[int] | np.ndarray | None = None, flip: bool = True,
                 rank: int = 0, world_size: int = 1, workers: int = 4, device: torch.device | str = "cpu",
                 on_corrupt: str = "error") -> None:
        require_pillow()
        if on_corrupt not in CORRUPT_POLICIES:
            raise ValueError(f"on_corrupt must be one of {CORRUPT_POLICIES}, got {on_corrupt!r}")
        if image_size < 1 or resize < image_size:
            raise ValueError(f"need 1 <= image_size <= resize, got image_size={image_size}, resize={resize}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        total = len(source)
        ids = torch.arange(total) if indices is None else torch.as_tensor(indices).reshape(-1).to("cpu", torch.int64)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= total):
            raise ValueError(f"indices must lie in [0, {total}), got [{int(ids.min())}, {int(ids.max())}]")
        self.source = source
        self.ids = ids
        #: size of the global id space (per-sample method buffers are sized with it)
        self.num_ids = total
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.train, self.image_size, self.resize, self.workers = train, image_size, resize, workers
        self.device = torch.device(device)
        self.on_corrupt = on_corrupt
        self.sampler = BatchPlanSampler(int(ids.numel()), batch_size, seed=seed, shuffle=shuffle, rank=rank,
                                        world_size=world_size, drop_last=drop_last)
        if len(self.sampler) == 0:
            raise ValueError(f"no batch to yield: {ids.numel()} samples over {world_size} rank(s) with "
                             f"batch_size={batch_size} and drop_last={drop_last}")
        self._dataset = _Decode(source, train=train, image_size=image_size, resize=resize, flip=flip)
        self._loader: DataLoader | None = None
        #: ``(global id, problem)`` of the images skipped in the last iterated epoch (``on_corrupt="skip"``)
        self.skipped: list[tuple[int, str]] = []

    # ------------------------------------------------------------------ sizes and position
    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    @property
    def start_step(self) -> int:
        """The batch the next iteration starts at (``set_epoch``'s ``start_step``)."""
        return self.sampler.start_step

    @property
    def num_subset(self) -> int:
        """Number of distinct samples iterated over all ranks."""
        return int(self.ids.numel())

    def __len__(self) -> int:
        """Batches per epoch on this rank (the whole epoch, whatever :attr:`start_step`)."""
        return len(self.sampler)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Selects the epoch whose order and augmentation the next iteration produces, and the
        batch it starts at (the earlier batches of the epoch are neither read nor decoded)."""
        self.sampler.set_epoch(epoch, start_step)

    # ------------------------------------------------------------------ iteration
    def _dataloader(self) -> DataLoader:
        if self._loader is None:
            subset = _Subset(self._dataset, self.ids)
            self._loader = DataLoader(
                subset, batch_sampler=self.sampler, num_workers=self.workers, collate_fn=_Collate(self.image_size),
                pin_memory=self.device.type == "cuda", persistent_workers=self.workers > 0,
                worker_init_fn=_one_thread if self.workers > 0 else None,
            )
        return self._loader

    def iter_uint8(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The batches as ``(uint8 x, y, idx)`` on the device (what :meth:`__iter__` converts)."""
        self.skipped = []
        for x, y, idx, bad in self._dataloader():
            if bad:
                self._corrupt(bad)
                if self.world_size > 1:
                    x, y, idx = self._refill(x, y, idx, len(bad))
            if x.shape[0] == 0:
                continue  # every image of the batch was corrupt (and skipped)
            yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True),
                   idx.to(self.device, non_blocking=True))
        if self.skipped:
            first = self.skipped[0][1]
            log.warning("data: skipped %d corrupt image(s) in epoch %d (data.on_corrupt=skip); first: %s",
                        len(self.skipped), self.epoch + 1, first)

    def _corrupt(self, bad: list[tuple[int, str]]) -> None:
        if self.on_corrupt == "error":
            raise DatasetFileError(f"corrupt image {bad[0][1]}; replace or remove it, or set data.on_corrupt=skip "
                                   "to leave such images out")
        self.skipped.extend(bad)

    def _refill(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, missing: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Under DDP every rank must keep its batch size (the collectives of the methods gather
        equal shapes): the skipped places are taken by repeats of the batch's decoded samples."""
        if x.shape[0] == 0:
            raise DatasetFileError(f"every image of a batch on rank {self.rank} is corrupt (first: "
                                   f"{self.skipped[-1][1]}); under torchrun a batch keeps its size by repeating "
                                   "its readable images, and this one has none: replace or remove the files")
        rep = torch.arange(missing) % x.shape[0]
        return torch.cat([x, x[rep]]), torch.cat([y, y[rep]]), torch.cat([idx, idx[rep]])

    def __iter__(self) -> Iterator[Batch]:
        for x, y, idx in self.iter_uint8():
            yield Batch(to_unit_float(x), y, idx)  # float conversion on the device, one batch at a time

    def __repr__(self) -> str:
        return (f"StreamingLoader(source={self.source.where!r}, n={self.num_subset}, batch_size={self.batch_size}, "
                f"batches={len(self)}, train={self.train}, image_size={self.image_size}, workers={self.workers}, "
                f"seed={self.seed}, device={self.device}, rank={self.rank}/{self.world_size})")


class _Subset(Dataset):
    """Maps the sampler's ``(position in the subset, seed)`` to ``(global id, seed)``."""

    def __init__(self, dataset: _Decode, ids: torch.Tensor) -> None:
        self.dataset, self.ids = dataset, ids.tolist()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        return self.dataset[(self.ids[item[0]], item[1])]


def decode_images(source: ImageSource, ids: torch.Tensor | Sequence[int], *, image_size: int, resize: int,
                  workers: int = 0, batch_size: int = 256, on_corrupt: str = "error"
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The evaluation views of ``ids`` (in that order) as one uint8 CPU tensor, with labels and
    the ids kept (a corrupt image skipped with ``on_corrupt="skip"`` is missing from all three).

    For the fixed image sets of a run (validation split, guard batch, test images).
    """
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    if ids.numel() == 0:
        return (torch.empty(0, 3, image_size, image_size, dtype=torch.uint8), torch.empty(0, dtype=torch.int64),
                torch.empty(0, dtype=torch.int64))
    loader = StreamingLoader(source, batch_size, train=False, image_size=image_size, resize=resize, shuffle=False,
                             indices=ids, workers=workers, on_corrupt=on_corrupt)
    parts = list(loader.iter_uint8())
    if not parts:
        raise DatasetFileError(f"every one of the {ids.numel()} images asked for in {source.where} is corrupt")
    xs, ys, idxs = zip(*parts)
    return torch.cat(xs), torch.cat(ys), torch.cat(idxs)
