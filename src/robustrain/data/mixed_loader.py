"""Mixing extra (generated) images into every training batch at a fixed ratio.

The extra-data setting of the UIAT paper (Table 4; Appendix A.2) follows Gowal et al. 2021 /
Rebuffi et al. 2021 / Wang et al. 2023 ("DM-Improves-AT"): 1M DDPM-generated images are
mixed into every batch at a fixed *original-to-generated ratio* (0.3 for CIFAR-10: 3 original
images for every 7 generated ones), and training runs for "CIFAR-10-equivalent epochs".

:class:`MixedLoader` wraps the dataset's :class:`~robustrain.data.DeviceLoader` (whose
device-resident original split, augmentation settings, seed, batch size and shard it reuses)
and yields ``Batch(x, y, idx)`` of ``round(ratio * B)`` original and ``B - round(ratio * B)``
generated images; the generated images come from any array, typically the memory-mapped one
of :func:`robustrain.data.npz.load_extra_data`.

Example:
    >>> import tempfile
    >>> from robustrain.data import DeviceLoader, load_extra_data, load_split, make_synthetic, save_extra_data
    >>> gen_x, gen_y = make_synthetic("test", n=100)
    >>> path = save_extra_data(tempfile.mkdtemp() + "/gen.npz", gen_x.transpose(0, 2, 3, 1), gen_y)
    >>> extra = load_extra_data(path, image_shape=(3, 16, 16), num_classes=10)
    >>> train_x, train_y = load_split("synthetic", "train")
    >>> loader = MixedLoader(DeviceLoader(train_x, train_y, 100), extra.images, extra.labels, ratio=0.3)
    >>> loader.set_epoch(0)
    >>> batch = next(iter(loader))
    >>> int((batch.idx < 512).sum()), int((batch.idx >= 512).sum()), len(loader), loader.num_ids
    (30, 70, 6, 612)
"""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import numpy as np
import torch

from .augment import CropFlipParams, apply_crop_flip, sample_crop_flip
from .batch import Batch, to_unit_float
from .loader import DeviceLoader, check_position

__all__ = ["MixedLoader", "MixedPlan", "mix_counts", "mixed_epoch_length"]


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
      generated rows); the global RNG is never touched. Call :meth:`set_epoch` per epoch;
      ``set_epoch(e, start_step=k)`` resumes inside it (batches ``k, k + 1, ...`` of the same
      plan: the training-loader interface of :class:`~robustrain.data.DeviceLoader`).
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
        self.start_step = 0

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
    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Selects the epoch whose plan the next iteration produces, from batch ``start_step``
        on (the batches already trained on when a run resumes inside an epoch)."""
        self.epoch, self.start_step = check_position(epoch, start_step, len(self))

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
        for b in range(self.start_step, len(self)):
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
            yield Batch(to_unit_float(x.index_select(0, perm)), y.index_select(0, perm),
                        idx.index_select(0, perm))

    def __repr__(self) -> str:
        return (f"MixedLoader(original={self.original.num_subset}, extra={self.num_extra}, ratio={self.ratio}, "
                f"per_batch={self.n_original}+{self.n_generated}, batches={len(self)}, seed={self.seed}, "
                f"device={self.device}, rank={self.rank}/{self.world_size})")
