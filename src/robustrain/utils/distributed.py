"""Multi-GPU / multi-node training with ``torch.distributed``: process group, DDP, collectives.

One process per device, launched by ``torchrun``; every process runs the same ``fit(cfg)``.
Each helper here is the identity (or a no-op) when there is no process group with more than
one rank, so a single-process run executes exactly the same tensor operations as before and
no extra host synchronisation.

Launch
------
One machine, N GPUs (``data.batch_size`` is per process: the global batch is N x batch_size;
scale ``optim.lr`` yourself if you keep the per-process batch)::

    torchrun --nproc_per_node=N -m robustrain train --config configs/cifar10/uiat_resnet18.yaml

Several machines (run the same command on every node; ``HOST`` is any node's address, the
``out_dir`` folder must be on a filesystem every node sees: rank 0 writes the checkpoints
and every rank reads ``last.pt`` on resume and ``best.pt`` for the final table)::

    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        --rdzv_id=uiat-r18 -m robustrain train --config configs/cifar10/uiat_resnet18.yaml

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them (backend ``nccl`` on CUDA, ``gloo`` on CPU; process ``r``
of a node uses ``cuda:LOCAL_RANK``). ``torchrun --nproc_per_node=1`` is a plain run.

What is distributed, and how (``fit`` does all of this; methods only call the collectives)
-----------------------------------------------------------------------------------------
* Data: every rank draws the same global permutation and augmentation of the epoch from
  (seed, epoch); rank r takes positions r, r + W, ... (``DeviceLoader(rank=, world_size=)``),
  so one step of W ranks sees exactly the global batch one process with W x batch_size sees.
* Model: ``DistributedDataParallel`` (gradients averaged over ranks in ``backward``), with
  ``train.sync_bn=true`` BatchNorm statistics computed over the global batch
  (``SyncBatchNorm``, CUDA only). The method receives the DDP-wrapped model; checkpoints,
  EMA and evaluation use the unwrapped module, so a checkpoint reads in one process.
* Randomness: model and method state are initialised from ``seed`` on every rank (identical);
  from each epoch on, rank r's generators are reseeded from (seed, epoch, rank)
  (:func:`seed_for_rank`) so attack random starts differ across ranks, and a resumed run
  draws the same numbers as an uninterrupted one.
* Method state: :func:`all_reduce_sum` for summed quantities (UIAT's z-gradient and class
  counts, GAIRAT's weight sum and count, so its weights have mean 1 over the global batch),
  :func:`all_gather_indexed` for per-sample buffers (every rank writes every rank's
  rows, so all ranks hold the full, identical buffer).
* Metrics: per-epoch sums and counts are all-reduced before dividing; evaluation and the
  overfitting guard are sharded over ranks and their correct-counts all-reduced, so every
  rank reaches the same ``best.pt`` and early-stopping decisions without a broadcast.
  BatchNorm buffers (live and EMA) are broadcast from rank 0 before each evaluation.
* Files: rank 0 writes ``config.yaml``, ``metrics.jsonl``, ``last.pt``, ``best.pt`` and
  ``summary.json``; the progress bar and the per-epoch lines are printed by rank 0 only.

Example (single process: everything is the identity):
    >>> import torch
    >>> t = torch.ones(2)
    >>> all_reduce_sum(t) is t, all_gather_cat(t) is t, get_rank(), get_world_size()
    (True, True, 0, 1)
"""

from __future__ import annotations

import atexit
import inspect
import os
import random
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from robustrain.utils.errors import ConfigError

__all__ = [
    "all_gather_cat",
    "all_gather_object",
    "all_gather_indexed",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "destroy_distributed",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "local_device",
    "resolve_duplicates",
    "seed_for_rank",
    "shard",
    "unwrap_model",
    "wrap_model",
]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------- process group
def init_distributed(device: str = "auto") -> bool:
    """Join the process group described by torchrun's environment variables, if any.

    Does nothing when ``WORLD_SIZE`` is unset or 1, or when a process group already exists
    (e.g. created by the caller). On CUDA it also selects ``cuda:LOCAL_RANK`` as the current
    device. The group is destroyed at interpreter exit.

    Args:
        device: the run's ``train.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``); CUDA
            means backend ``nccl``, anything else ``gloo``.

    Returns:
        True when this call created the process group.

    Raises:
        ValueError: ``WORLD_SIZE`` > 1 but a torchrun variable is missing, or CUDA was asked
            for and is not available.

    Example:
        >>> init_distributed("cpu")  # no torchrun environment: a single process
        False
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    missing = [k for k in _ENV if k not in os.environ]
    if missing or not dist.is_available():
        raise ValueError(
            f"WORLD_SIZE={world} but {', '.join(missing) or 'torch.distributed'} is missing; "
            "launch with torchrun (e.g. torchrun --nproc_per_node=2 -m robustrain train ...)"
        )
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    kwargs = {}
    if use_cuda:
        if not torch.cuda.is_available():
            raise ValueError(f"train.device={device} but CUDA is not available here; use train.device=cpu")
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        if "device_id" in inspect.signature(dist.init_process_group).parameters:  # torch >= 2.3
            # binds the group to this rank's GPU (barriers and object collectives use it)
            kwargs["device_id"] = torch.device("cuda", local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://", **kwargs)
    atexit.register(destroy_distributed)
    return True


def destroy_distributed() -> None:
    """Tear down the default process group if one exists (idempotent)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0: the process that writes files and prints."""
    return get_rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device of this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun.

    Raises:
        ValueError: an explicit ``cuda:N`` that is not this process's GPU.

    Example:
        >>> local_device(torch.device("cpu"))
        device(type='cpu')
    """
    if device.type != "cuda" or not is_distributed():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))
    if device.index is not None and device.index != local_rank:
        raise ValueError(
            f"train.device={device} but this process (LOCAL_RANK={local_rank}) owns cuda:{local_rank}; "
            "use train.device=cuda or auto under torchrun"
        )
    return torch.device("cuda", local_rank)


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        dist.barrier()


def seed_for_rank(seed: int, epoch: int) -> None:
    """Reseed torch / numpy / random from (seed, epoch, rank) under DDP; no-op in one process.

    Model and method state are initialised from ``seed`` alone (identical on every rank);
    the training-time draws (attack random starts) then differ across ranks, and because
    the stream is a function of the epoch a resumed run repeats an uninterrupted one.
    """
    if not is_distributed():
        return
    s = int(np.random.SeedSequence([seed, epoch, get_rank(), 0xDD9]).generate_state(1, dtype=np.uint64)[0])
    s %= 2**63
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


# --------------------------------------------------------------------------- model
def wrap_model(model: nn.Module, *, sync_bn: bool = False) -> nn.Module:
    """``DistributedDataParallel(model)`` under DDP (optionally SyncBatchNorm); else ``model``.

    The SyncBatchNorm conversion happens in place inside ``model`` (same parameters and
    buffers, same ``state_dict`` keys), so checkpoints of the unwrapped module load into a
    plain model. DDP broadcasts rank 0's parameters and buffers once here, averages
    gradients in ``backward`` and re-broadcasts rank 0's buffers before training forwards.

    Args:
        model: the module, already on this rank's device.
        sync_bn: BatchNorm statistics over the global batch (``train.sync_bn``); ignored in
            one process (its batch is the whole batch).

    Raises:
        ConfigError: ``sync_bn`` on a non-CUDA device (torch's SyncBatchNorm is GPU-only).

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> wrap_model(net, sync_bn=True) is net  # one process
        True
    """
    if not is_distributed():
        return model
    device = next(model.parameters()).device
    if sync_bn:
        if device.type != "cuda":
            raise ConfigError(
                f"train.sync_bn=true needs CUDA devices (torch's SyncBatchNorm is GPU-only), this run is on "
                f"{device.type}; set train.sync_bn=false"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (else ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def broadcast_buffers(modules: Iterable[nn.Module | None], src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank, in place.

    Without SyncBatchNorm each rank's running statistics follow its own batches; the trainer
    calls this before evaluation so all ranks evaluate (and rank 0 saves) the same model.
    ``None`` entries are skipped.
    """
    if not is_distributed():
        return
    for module in modules:
        if module is not None:
            for buf in module.buffers():
                dist.broadcast(buf, src)


# --------------------------------------------------------------------------- collectives
def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over ranks IN PLACE and return it; the identity (same object) in one process.

    Example:
        >>> all_reduce_sum(torch.tensor([1.0, 2.0])).tolist()
        [1.0, 2.0]
    """
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order; ``[obj]`` in one process.

    Example:
        >>> all_gather_object({"a": 1})
        [{'a': 1}]
    """
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_cat(t: Tensor) -> Tensor:
    """Concatenate every rank's ``t`` along dim 0, in rank order; ``t`` itself in one process.

    All ranks must pass the same shape (the trainer's loader gives every rank the same
    number of samples per step).

    Example:
        >>> all_gather_cat(torch.arange(3)).tolist()
        [0, 1, 2]
    """
    if not is_distributed():
        return t
    t = t.contiguous()
    world = dist.get_world_size()
    if dist.get_backend() == "nccl":
        out = torch.empty((world * t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
        dist.all_gather_into_tensor(out, t)
        return out
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t)  # gloo has no all_gather_into_tensor
    return torch.cat(parts)


def resolve_duplicates(idx: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Sort ``(idx, values)`` by id and give every row of an id the values of its LAST row.

    A scatter ``buf[idx] = values`` with repeated ids keeps an unspecified one on CUDA;
    after this every candidate is the same, so the result is deterministic and identical on
    every rank. Without repeats only the row order changes.

    Example:
        >>> i, v = resolve_duplicates(torch.tensor([3, 1, 3]), torch.tensor([10.0, 20.0, 30.0]))
        >>> i.tolist(), v.tolist()
        ([1, 3, 3], [20.0, 30.0, 30.0])
    """
    sorted_idx, order = torch.sort(idx, stable=True)
    last = torch.searchsorted(sorted_idx, sorted_idx, right=True) - 1
    return sorted_idx, values[order][last]


def all_gather_indexed(idx: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Every rank's per-sample updates ``(idx, values)``, ready for ``buf[idx] = values``.

    Per-sample buffers (UIAT momentum, one-off targets) are replicated: each step every rank
    writes the rows of all ranks' samples, so all ranks hold the same full buffer and a
    checkpoint of rank 0 is complete. Ids repeated across ranks (the loader pads the last
    steps by wrapping around) are resolved with :func:`resolve_duplicates`. In one process
    the inputs come back unchanged.

    Example:
        >>> i, v = all_gather_indexed(torch.tensor([2, 0]), torch.ones(2, 3))
        >>> i.tolist(), tuple(v.shape)
        ([2, 0], (2, 3))
    """
    if not is_distributed():
        return idx, values
    return resolve_duplicates(all_gather_cat(idx), all_gather_cat(values))


def shard(t: Tensor) -> Tensor:
    """This rank's rows ``t[rank::world]`` (all of ``t`` in one process).

    Example:
        >>> shard(torch.arange(5)).tolist()
        [0, 1, 2, 3, 4]
    """
    if not is_distributed():
        return t
    return t[get_rank() :: get_world_size()]
