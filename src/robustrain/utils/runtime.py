"""Runtime helpers: the device, seeding, and the two numeric contexts of a run.

* :func:`fast_math` — TF32 and cuDNN autotuning around a TRAINING step on CUDA;
* :func:`fp32_eval` — strict fp32 (no autocast, no TF32) and eval mode for EVALUATION
  (DESIGN.md contract 7). Every evaluation path uses this one context: ``robustrain eval``,
  the trainer's held-out checks, AutoAttack and the figure analyses.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).train()
    >>> with fp32_eval(net):
    ...     net.training
    False
    >>> net.training, resolve_device("cpu")
    (True, device(type='cpu'))
    >>> check_device_name("cuda:x")
    Traceback (most recent call last):
    ...
    robustrain.utils.errors.ConfigError: train.device must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'; auto picks CUDA when available, else the CPU
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from typing import ContextManager, Iterator

import numpy as np
import torch
from torch import nn

from robustrain.utils import distributed as ddp
from robustrain.utils.checks import short_repr
from robustrain.utils.errors import ConfigError

__all__ = [
    "autocast_for",
    "check_device_available",
    "check_device_name",
    "fast_math",
    "fp32_eval",
    "free_memory",
    "host_available_memory",
    "no_tf32",
    "preserved_rng",
    "resolve_device",
    "seed_everything",
]


#: the device strings a config may give (``train.device``)
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,4})?)$")


def check_device_name(name: str, key: str = "train.device") -> str:
    """``name`` if it is a device string robustrain takes: ``auto``, ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps`` (whether the machine has it is :func:`check_device_available`'s part).

    Raises:
        ConfigError: anything else (``tpu``, ``cuda:x`` ...), naming ``key`` and the valid forms.
    """
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ConfigError(f"{key} must be auto, cpu, cuda, cuda:N or mps, got {short_repr(name)}; "
                          f"auto picks CUDA when available, else the CPU")
    return name


def check_device_available(name: str, key: str = "train.device") -> str:
    """``name`` if it is valid (:func:`check_device_name`) and this machine has that device.

    Raises:
        ConfigError: CUDA (or that CUDA index, or MPS) asked for where there is none; the
            message says what the machine has and to use ``auto`` or ``cpu``.
    """
    check_device_name(name, key)
    fix = f"use {key}=auto (CUDA when available, else CPU) or {key}=cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={name} but CUDA is not available on this machine; {fix}")
        index, count = (int(name.split(":")[1]) if ":" in name else 0), torch.cuda.device_count()
        if index >= count:
            raise ConfigError(f"{key}={name} but this machine has {count} CUDA device(s) "
                              f"(cuda:0..cuda:{count - 1}); {fix}")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"{key}=mps but MPS is not available on this machine; {fix}")
    return name


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; under torchrun
    ``cuda`` becomes this process's ``cuda:LOCAL_RANK``.

    Raises:
        ConfigError: not a device string, or a device this machine lacks (the message names
            ``key``).
    """
    if name == "auto":
        return ddp.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    dev = torch.device(check_device_available(name, key))
    return ddp.local_device(dev)  # cuda -> cuda:LOCAL_RANK under torchrun


def host_available_memory() -> int | None:
    """Bytes of host memory available to this process: ``MemAvailable`` of ``/proc/meminfo``
    (else free pages), divided among the processes torchrun starts on this host
    (``LOCAL_WORLD_SIZE``); None when unknown."""
    total = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    total = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if total is None:
        try:
            total = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None
    return total // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))


def free_memory(device: torch.device) -> int | None:
    """Bytes free on ``device``: CUDA's free memory, the host's available memory for the CPU,
    None when unknown (other devices)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        return host_available_memory()
    return None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_for(device: torch.device, bf16: bool) -> ContextManager:
    """bf16 autocast on ``device`` when ``bf16``, else a no-op context."""
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def fast_math(device: torch.device) -> Iterator[None]:
    """TF32 matmuls/convolutions and cuDNN autotuning for a training step on CUDA.

    Set around each step and restored after it, so evaluation (outside) runs with the
    process's own settings; a no-op on other devices. Uses the ``fp32_precision`` API only
    (mixing it with the legacy ``allow_tf32`` flags is an error in recent PyTorch).
    """
    if device.type != "cuda":
        yield
        return
    matmul, conv, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn
    saved = (matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark)
    matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark = "tf32", "tf32", True
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark = saved


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Full-precision fp32 on CUDA: PyTorch lets cuDNN convolutions use TF32 by default, which
    would make evaluation not strictly fp32. Only the ``fp32_precision`` API is touched (mixing
    it with the legacy ``allow_tf32`` flags is an error in recent PyTorch)."""
    backends = [torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)]
    backends = [b for b in backends if b is not None and hasattr(b, "fp32_precision")]
    if not torch.cuda.is_available() or not backends:
        yield
        return
    before = [b.fp32_precision for b in backends]
    for b in backends:
        b.fp32_precision = "ieee"
    try:
        yield
    finally:
        for b, value in zip(backends, before):
            b.fp32_precision = value


@contextlib.contextmanager
def fp32_eval(model: nn.Module) -> Iterator[None]:
    """Evaluate ``model`` in eval mode, strict fp32: autocast off on CUDA and CPU, no TF32;
    the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False), no_tf32():
            yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run the block and put torch's CPU (and every CUDA device's) random state back as it
    was, also when the block raises: an evaluation seeds its attacks without moving the
    training run's random stream (issue 22: one home for what was written four times).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> with preserved_rng():
        ...     _ = torch.rand(3)
        >>> after = torch.rand(1)  # the first draw after the seed, as if the block never ran
        >>> _ = torch.manual_seed(0)
        >>> torch.equal(after, torch.rand(1))
        True
    """
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
