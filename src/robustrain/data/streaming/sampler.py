"""The epoch plan of a streaming loader: one shuffled order for all ranks, each rank its shard of
every global batch, a per-sample augmentation seed, and a start step for resuming in an epoch.

The contract is :class:`~robustrain.data.DeviceLoader`'s: epoch ``e``'s order is
``randperm(n)`` from a private generator seeded with :func:`~robustrain.data.loader.epoch_seed`
``(seed, e)``; rank ``r`` of ``W`` takes global positions ``r, r + W, r + 2W, ...`` (padded by
wrapping around without ``drop_last``, the tail dropped with it), so batch ``b`` of the ``W``
ranks with batch ``B`` holds exactly batch ``b`` of one process with batch ``W * B``, position
``i`` of rank ``r`` being position ``i * W + r`` of the global batch. The augmentation seed of a
sample is drawn per global position from the same generator, so a sample gets the same crop and
flip whatever the batch size, the world size or the worker that decodes it.

Example:
    >>> one = BatchPlanSampler(10, 4, seed=0)
    >>> r0 = BatchPlanSampler(10, 2, seed=0, rank=0, world_size=2)
    >>> r1 = BatchPlanSampler(10, 2, seed=0, rank=1, world_size=2)
    >>> b, b0, b1 = next(iter(one)), next(iter(r0)), next(iter(r1))
    >>> [s for pair in zip(b0, b1) for s in pair] == b
    True
"""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import torch

from ..loader import epoch_seed

__all__ = ["BatchPlanSampler", "EpochPlan", "epoch_plan"]

#: augmentation seeds are drawn in [0, 2**62): any numpy generator seed
_SEED_HIGH = 2**62


class EpochPlan(NamedTuple):
    """One rank's samples of one epoch, in yield order.

    Attributes:
        positions: int64 positions into the iterated subset (``0 .. n-1``).
        seeds: int64 augmentation seed of each, aligned with ``positions``.
    """

    positions: torch.Tensor
    seeds: torch.Tensor


def rank_num_samples(n: int, world_size: int, drop_last: bool) -> int:
    """Samples each rank yields per epoch (``DistributedSampler``'s rule, as DeviceLoader)."""
    if world_size == 1:
        return n
    return n // world_size if drop_last else math.ceil(n / world_size)


def epoch_plan(n: int, *, seed: int, epoch: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
               drop_last: bool = False) -> EpochPlan:
    """Positions and augmentation seeds of rank ``rank`` for ``epoch`` (a pure function of its
    arguments; the global RNG is not touched).

    Example:
        >>> p = epoch_plan(5, seed=0, epoch=0, shuffle=False)
        >>> p.positions.tolist(), p.seeds.shape
        ([0, 1, 2, 3, 4], torch.Size([5]))
    """
    generator = torch.Generator(device="cpu")
    generator.manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    seeds = torch.randint(0, _SEED_HIGH, (n,), generator=generator, dtype=torch.int64)
    if world_size > 1:
        # global positions r, r+W, ... ; modulo n wraps the padding to the start
        pos = torch.arange(rank, rank_num_samples(n, world_size, drop_last) * world_size, world_size) % n
        order, seeds = order[pos], seeds[pos]
    return EpochPlan(order, seeds)


class BatchPlanSampler:
    """A DataLoader ``batch_sampler``: yields, per batch, a list of ``(position, seed)`` pairs
    for this rank, from batch ``start_step`` of the epoch set by :meth:`set_epoch`.

    Skipping is free: the skipped batches are never yielded, so nothing of them is read or
    decoded (resuming at step ``k`` of an ImageNet epoch does not re-read ``k`` batches).

    Args:
        n: size of the iterated subset.
        batch_size: samples per batch (per rank).
        seed, shuffle, rank, world_size, drop_last: as :func:`epoch_plan` (``drop_last`` also
            drops this rank's last incomplete batch).
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False) -> None:
        if n < 1:
            raise ValueError("nothing to iterate: the split or the indices subset is empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self.start_step = 0

    @property
    def num_samples(self) -> int:
        """Samples this rank yields per epoch."""
        return rank_num_samples(self.n, self.world_size, self.drop_last)

    def __len__(self) -> int:
        """Batches per epoch on this rank (all of them, whatever :attr:`start_step`)."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Selects the epoch, and the batch the next iteration starts at (``start_step``: the
        batches of that epoch already trained on, when a run resumes inside an epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if not 0 <= start_step < max(len(self), 1):
            raise ValueError(f"start_step must be in [0, {len(self)}) (batches per epoch), got {start_step}")
        self.epoch, self.start_step = int(epoch), int(start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        plan = epoch_plan(self.n, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle, rank=self.rank,
                          world_size=self.world_size, drop_last=self.drop_last)
        positions, seeds = plan.positions.tolist(), plan.seeds.tolist()
        for b in range(self.start_step, len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, len(positions))
            yield list(zip(positions[lo:hi], seeds[lo:hi]))
