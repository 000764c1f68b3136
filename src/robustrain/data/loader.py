"""A device-resident loader: the whole split lives on the device as uint8, batches are gathered
and augmented there with tensor ops, and converted to float32 in [0, 1] one batch at a time.

No worker processes, no per-batch host work: each epoch draws its permutation and all its
augmentation parameters at once on the CPU from a private generator seeded with
(seed, epoch), moves them to the device, and the batches are slices of that plan.
"""

from __future__ import annotations

import math
import os
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch

from robustrain.utils.checks import check_int

from .augment import CropFlipParams, apply_crop_flip, sample_crop_flip
from .batch import Batch, to_unit_float
from .info import DatasetInfo
from .registry import get_dataset_info, load_split

__all__ = ["DeviceLoader", "Loaders", "check_position", "make_loaders", "subset_indices", "epoch_seed"]


def check_position(epoch: int, start_step: int, steps: int) -> tuple[int, int]:
    """``(epoch, start_step)`` as ints, checked: ``epoch >= 0`` and ``0 <= start_step < steps``
    (``steps`` = batches per epoch), for every training loader's ``set_epoch``.

    Example:
        >>> check_position(2, 5, 8)
        (2, 5)
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if not 0 <= start_step < max(steps, 1):
        raise ValueError(f"start_step must be in [0, {steps}) (batches per epoch), got {start_step}")
    return int(epoch), int(start_step)


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 64-bit seed for (seed, epoch): nearby pairs give unrelated streams.

    Example:
        >>> epoch_seed(0, 1) != epoch_seed(1, 0)
        True
    """
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])


class DeviceLoader:
    """Iterates ``Batch(x, y, idx)`` over a split held on ``device``.

    * ``x``: float32 in [0, 1], ``(B, C, H, W)``; ``y``: int64 labels; ``idx``: int64 global
      sample ids (row numbers in the full ``images`` given here), all on ``device``.
    * Epoch ``e``'s order and augmentation are a pure function of ``(seed, e)``: call
      :meth:`set_epoch` before each epoch (the loader never advances the epoch itself, so
      iterating twice without it repeats the same batches). The global RNG is never touched.
    * Resuming inside an epoch: ``set_epoch(e, start_step=k)`` makes the next iteration yield
      batches ``k, k + 1, ...`` of epoch ``e``, the very batches an iteration from
      ``set_epoch(e)`` yields after its first ``k`` (the plan is drawn whole, as always, and
      the first ``k`` batches are skipped, not drawn differently). ``len(loader)`` stays the
      whole epoch's batch count; the trainer owns the position (it counts the steps it took)
      and saves it in mid-epoch checkpoints (``train.checkpoint_every``).

    The training-loader interface the trainer relies on (every training loader implements
    it: this one, :class:`~robustrain.data.MixedLoader`, the streaming loaders): iterating
    yields ``Batch(x, y, idx)`` on the training device; ``len(loader)`` is the number of
    batches of one epoch on this rank; ``set_epoch(epoch, start_step=0)`` selects what the
    next iteration yields, a pure function of ``(seed, epoch, rank, world_size)`` from batch
    ``start_step`` on; ``num_ids`` bounds the ids in ``idx``.
    * Augmentation (``augment=True``): per-sample random crop from the image zero-padded by
      ``pad`` and per-sample horizontal flip with p = 0.5 (``flip=True``). Sample ``j`` of the
      epoch's global permutation gets the same crop/flip whatever the batch size or world size.
    * Sharding (``rank``/``world_size``, for DDP): all ranks draw the same global permutation;
      rank ``r`` takes positions ``r, r + W, r + 2W, ...``, so one step of W ranks with batch
      ``B`` covers exactly what one process with batch ``W * B`` would. As in PyTorch's
      ``DistributedSampler``, every rank gets the same number of samples: with ``drop_last``
      the tail of the permutation (fewer than W samples) is dropped, without it the
      permutation is padded by wrapping around (a few samples seen twice).

    Args:
        images: uint8 ``(N, C, H, W)`` (CPU or device).
        labels: integer ``(N,)``.
        batch_size: samples per batch (per rank).
        shuffle: draw a new permutation per epoch (else dataset order).
        augment: apply crop/flip.
        pad: crop padding (0: no crop). flip: random horizontal flips.
        drop_last: drop the last incomplete batch.
        seed: non-negative base seed.
        device: where the data lives and batches are produced.
        indices: optional subset of global ids to iterate (``idx`` still reports global ids).
        rank, world_size: this process's shard.

    Example:
        >>> from robustrain.data import load_split
        >>> images, labels = load_split("synthetic", "train")
        >>> loader = DeviceLoader(images, labels, 128, augment=True, pad=2, seed=0)
        >>> loader.set_epoch(0)
        >>> x, y, idx = next(iter(loader))
        >>> x.shape, x.dtype, bool(x.min() >= 0 and x.max() <= 1), len(loader)
        (torch.Size([128, 3, 16, 16]), torch.float32, True, 4)
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: bool = False,
        pad: int = 4,
        flip: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        indices: torch.Tensor | Sequence[int] | np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels)
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        check_int("batch_size", batch_size)  # bool too: batch_size=True is refused
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")

        total = images.shape[0]
        if indices is None:
            ids = torch.arange(total, dtype=torch.int64)
        else:
            ids = torch.as_tensor(indices).reshape(-1)
            if ids.dtype.is_floating_point or ids.dtype == torch.bool:
                raise ValueError(f"indices must be integers, got {ids.dtype}")
            ids = ids.to(device="cpu", dtype=torch.int64)
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= total):
                raise ValueError(
                    f"indices must lie in [0, {total}), got range "
                    f"[{int(ids.min())}, {int(ids.max())}]"
                )
        if ids.numel() == 0:
            raise ValueError("nothing to iterate: the split or the indices subset is empty")

        self.device = torch.device(device)
        if indices is not None:
            # Only the selected rows go to the device: an eval subset of 1000 images should
            # not pin the whole split in GPU memory.
            images = images.index_select(0, ids.to(images.device))
            labels = labels.index_select(0, ids.to(labels.device))
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device, torch.int64)
        self.ids = ids.to(self.device)
        #: Size of the global id space: every ``idx`` is < ``num_ids`` (methods with
        #: per-sample state size their buffers with it).
        self.num_ids = total
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.pad = pad
        self.flip = flip
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_step = 0
        if self.num_samples == 0 or len(self) == 0:
            raise ValueError(
                f"no batch to yield: {ids.numel()} samples over {world_size} rank(s) with "
                f"batch_size={batch_size} and drop_last={drop_last}"
            )

    # ------------------------------------------------------------------ sizes

    @property
    def num_subset(self) -> int:
        """Number of distinct samples iterated over all ranks (``len(indices)`` or N)."""
        return int(self.ids.shape[0])

    @property
    def num_samples(self) -> int:
        """Samples this rank yields per epoch (padding/dropping included)."""
        n, ws = self.num_subset, self.world_size
        if ws == 1:
            return n
        return n // ws if self.drop_last else math.ceil(n / ws)

    def __len__(self) -> int:
        """Number of batches per epoch on this rank."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    # ------------------------------------------------------------------ epochs

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Selects the epoch whose order and augmentation the next iteration produces, and
        the batch it starts at (``start_step``: the batches of that epoch already trained on,
        skipped when a run resumes inside an epoch)."""
        self.epoch, self.start_step = check_position(epoch, start_step, len(self))

    def epoch_plan(self, epoch: int | None = None) -> tuple[torch.Tensor, CropFlipParams | None]:
        """This rank's sample order (positions into the subset) and augmentation for an epoch.

        Returns:
            ``(order, params)``: int64 positions on the device, in yield order, and the crop/flip
            parameters aligned with them (``None`` without augmentation).
        """
        epoch = self.epoch if epoch is None else epoch
        generator = torch.Generator(device="cpu")
        generator.manual_seed(epoch_seed(self.seed, epoch))
        n = self.num_subset
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        params = (
            sample_crop_flip(n, generator, pad=self.pad, flip=self.flip) if self.augment else None
        )
        if self.world_size > 1:
            # Global positions r, r+W, ... ; modulo n wraps the padding to the start.
            positions = (
                torch.arange(self.rank, self.num_samples * self.world_size, self.world_size) % n
            )
            order = order[positions]
            params = params.select(positions) if params is not None else None
        order = order.to(self.device)
        return order, (params.to(self.device) if params is not None else None)

    def __iter__(self) -> Iterator[Batch]:
        order, params = self.epoch_plan()
        total = order.shape[0]
        for b in range(self.start_step, len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, total)
            pos = order[lo:hi]
            x = self.images.index_select(0, pos)
            if params is not None:
                x = apply_crop_flip(x, params.select(slice(lo, hi)), pad=self.pad)
            # float conversion per batch only: the resident copy stays uint8 (4x smaller).
            yield Batch(
                to_unit_float(x),
                self.labels.index_select(0, pos),
                self.ids.index_select(0, pos),
            )

    def __repr__(self) -> str:
        return (
            f"DeviceLoader(n={self.num_subset}, batch_size={self.batch_size}, batches={len(self)}, "
            f"shuffle={self.shuffle}, augment={self.augment}, pad={self.pad}, flip={self.flip}, "
            f"drop_last={self.drop_last}, seed={self.seed}, device={self.device}, "
            f"rank={self.rank}/{self.world_size})"
        )


def subset_indices(
    labels: torch.Tensor | Sequence[int] | np.ndarray,
    n: int | None,
    *,
    mode: str = "first",
    seed: int = 0,
) -> torch.Tensor:
    """Deterministic subset of a split: sorted int64 indices of ``n`` samples.

    Modes:
        ``"first"`` (default): samples ``0 .. n-1``. This is RobustBench's convention for
        evaluating on a subset, and since ``cifar10-mini``'s test split is official test
        images 0..1016, ``first`` n <= 1017 of ``cifar10-mini`` and of ``cifar10`` are the same
        images.
        ``"stratified"``: as class-balanced as possible (each class contributes ``n // K`` or
        one more, fewer only if it runs out), chosen at random with ``seed``.

    Args:
        labels: labels of the split, ``(N,)``.
        n: subset size; ``None`` means the whole split.
        mode: ``"first"`` or ``"stratified"``.
        seed: used by ``"stratified"`` only.

    Example:
        >>> labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
        >>> subset_indices(labels, 2).tolist()
        [0, 1]
        >>> sorted(labels[subset_indices(labels, 3, mode="stratified")].tolist())
        [0, 1, 2]
    """
    labels = torch.as_tensor(labels).reshape(-1).to("cpu", torch.int64)
    total = labels.shape[0]
    if n is None:
        return torch.arange(total)
    if not 0 < n <= total:
        raise ValueError(f"subset size must be in 1..{total}, got {n}")
    if mode == "first":
        return torch.arange(n)
    if mode != "stratified":
        raise ValueError(f"unknown subset mode {mode!r}; expected 'first' or 'stratified'")
    generator = torch.Generator().manual_seed(seed)
    # Rank samples within their class in random order, then take the lowest ranks across
    # classes (round robin): balanced, and classes that run out simply stop contributing.
    shuffled = torch.randperm(total, generator=generator)
    within_rank = torch.empty(total, dtype=torch.int64)
    classes = labels[shuffled]
    for c in torch.unique(classes).tolist():
        members = shuffled[classes == c]
        within_rank[members] = torch.arange(members.shape[0])
    # Tie-break equal ranks by the shuffled position so the choice of classes for the
    # remainder is random too.
    position = torch.empty(total, dtype=torch.int64)
    position[shuffled] = torch.arange(total)
    key = within_rank * total + position
    chosen = torch.argsort(key)[:n]
    return torch.sort(chosen).values


class Loaders(NamedTuple):
    """What :func:`make_loaders` returns."""

    train: DeviceLoader
    test: DeviceLoader
    info: DatasetInfo


def make_loaders(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    batch_size: int = 128,
    eval_batch_size: int | None = None,
    augment: bool = True,
    device: torch.device | str = "cpu",
    seed: int = 0,
    download: bool = False,
    verify: bool = True,
    train_n: int | None = None,
    eval_n: int | None = None,
    subset_mode: str = "first",
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Loaders:
    """Train and evaluation loaders for a registered dataset, both resident on ``device``.

    * train: shuffled, sharded over ``rank``/``world_size``, augmented with the dataset's
      standard augmentation (``info.aug_pad``, ``info.aug_flip``) when ``augment``.
    * test: dataset order, no augmentation, not sharded (evaluate on one rank), optionally
      restricted to ``eval_n`` samples chosen by :func:`subset_indices` (``subset_mode``).

    ``idx`` in the training batches are positions in the full training split even when
    ``train_n`` restricts it (``loaders.train.num_ids`` is the full size).

    Example:
        >>> loaders = make_loaders("synthetic", batch_size=64, eval_n=100)
        >>> len(loaders.train), len(loaders.test), loaders.info.num_classes
        (8, 2, 10)
    """
    info = get_dataset_info(name)
    train = load_split(name, "train", root, download=download, verify=verify)
    test = load_split(name, "test", root, download=download, verify=verify)
    # Subsets use a fixed seed: the evaluation set must not change with the training seed.
    train_ids = None if train_n is None else subset_indices(train.labels, train_n, mode=subset_mode)
    eval_ids = None if eval_n is None else subset_indices(test.labels, eval_n, mode=subset_mode)
    train_loader = DeviceLoader(
        train.images,
        train.labels,
        batch_size,
        shuffle=True,
        augment=augment and (info.aug_pad > 0 or info.aug_flip),
        pad=info.aug_pad,
        flip=info.aug_flip,
        drop_last=drop_last,
        seed=seed,
        device=device,
        indices=train_ids,
        rank=rank,
        world_size=world_size,
    )
    test_loader = DeviceLoader(
        test.images,
        test.labels,
        eval_batch_size or batch_size,
        shuffle=False,
        augment=False,
        device=device,
        indices=eval_ids,
    )
    return Loaders(train_loader, test_loader, info)
