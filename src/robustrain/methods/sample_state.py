"""Where per-sample method state lives, and in which precision (``train.sample_state``).

Some methods keep one row per training sample, indexed by ``Batch.idx``: UIAT's momentum targets
and the one-off targets are N x C floats (:class:`~robustrain.methods.inverse.InverseTargets`).
CIFAR-10's 50,000 x 10 take 2 MB in fp32; ImageNet's 1,281,167 x 1000 take 5.1 GB. A run chooses
their storage with ``train.sample_state``; :func:`choose_storage` turns that request and the
memory at hand into a :class:`SampleStorage` (a dtype and a place), or refuses, in one line
naming the size and the option to change, what cannot fit.

==========  ====================================================================================
value       storage of each N x C table
==========  ====================================================================================
``auto``    fp32 on the training device up to :data:`AUTO_FP32_MAX_BYTES` (256 MiB: every CIFAR /
            SVHN preset, also with 1M generated images); above it bf16 on the device while that
            takes at most :data:`DEVICE_SHARE` of its free memory (the rest is for training), else
            ``host`` (CUDA) while that takes at most :data:`HOST_SHARE` of this process's share of
            the host's available memory; else refused
``fp32``    fp32 on the device (exact; refused when larger than its free memory)
``bf16``    bfloat16 on the device (half the memory; 8 significant bits, see below)
``fp16``    float16 on the device (11 significant bits, but values below 6.1e-5 lose precision)
``host``    bf16 in host memory (pinned when training on CUDA): each step gathers its batch's rows
            there and moves them (B x C) to the device and back, one host synchronisation a step
==========  ====================================================================================

Reads always return fp32 on the device; writes round to the storage dtype. bf16 rounds to the
nearest of 8 significant bits: a stored value ``v`` is within ``2**-8 * |v|`` of the fp32 value
(1/3 is stored as 171/512). Training with a compact table is not bit-identical to fp32 training,
but resumes bit-identically with itself. The checkpoint keys are the same in every storage (the
tensor's dtype differs), so a run can resume with another storage.

Example:
    >>> s = choose_storage("auto", 1_281_167, 1000, device="cuda:0", device_free=70 * 2**30, host_free=None)
    >>> s.name, s.dtype, f"{s.nbytes / 1e9:.2f} GB"
    ('bf16', torch.bfloat16, '2.56 GB')
    >>> choose_storage("auto", 50_000, 10, device="cpu", device_free=None, host_free=None).dtype
    torch.float32
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import Tensor, nn

from robustrain.utils.errors import ConfigError

__all__ = [
    "AUTO_FP32_MAX_BYTES", "DEVICE_SHARE", "HOST_SHARE", "SAMPLE_STATE_CHOICES", "SampleStatePolicy",
    "SampleStorage", "choose_storage", "describe_sample_state", "format_bytes",
]

#: the values of ``train.sample_state``
SAMPLE_STATE_CHOICES = ("auto", "fp32", "bf16", "fp16", "host")
#: ``auto`` keeps a table in fp32 up to this size (exactly as before issue 20)
AUTO_FP32_MAX_BYTES = 256 * 2**20
#: ``auto`` puts a bf16 table on the device while it takes at most this share of its free memory
DEVICE_SHARE = 0.25
#: ... and in host memory while it takes at most this share of the host memory available to the process
HOST_SHARE = 0.5

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "host": torch.bfloat16}


def format_bytes(n: int | float) -> str:
    """A size in kB below 1 MB, MB below 1 GB, else GB (decimal units).

    Example:
        >>> format_bytes(20_480), format_bytes(2_000_000), format_bytes(5_124_668_000)
        ('20 kB', '2.0 MB', '5.12 GB')
    """
    if n < 1e6:
        return f"{n / 1e3:.0f} kB"
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


@dataclass(frozen=True)
class SampleStorage:
    """How one N x C table is stored.

    Attributes:
        name: the storage, one of :data:`SAMPLE_STATE_CHOICES` but ``auto``.
        dtype: the element type.
        host: in host memory (pinned when the training device is CUDA), not on the device.
        rows, cols: N and C.
        request: the ``train.sample_state`` value it was chosen for.
        place: where it lives, for the run's log (``cuda:0``, ``host memory``).
        what: the table's name in the run's log and in errors.
    """

    name: str
    dtype: torch.dtype
    host: bool
    rows: int
    cols: int
    request: str
    place: str
    what: str = "per-sample state"

    @property
    def nbytes(self) -> int:
        return self.rows * self.cols * self.dtype.itemsize

    def allocate(self, device: torch.device | str | None) -> Tensor:
        """A zero table: on ``device`` (None: the CPU, moved with its module), or in host memory."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        if self.host:
            # pinned: the per-step row transfers to and from CUDA run as DMA
            return torch.zeros(self.rows, self.cols, dtype=self.dtype, pin_memory=device.type == "cuda")
        return torch.zeros(self.rows, self.cols, dtype=self.dtype, device=device)

    def describe(self) -> str:
        """One line for the run's log, e.g. ``momentum targets 50,000 x 10 in fp32 on cpu (2.0 MB,
        train.sample_state=auto)``."""
        dtype = str(self.dtype).replace("torch.", "").replace("float32", "fp32").replace("bfloat16", "bf16") \
            .replace("float16", "fp16")
        return (f"{self.what} {self.rows:,} x {self.cols:,} in {dtype} on {self.place} ({format_bytes(self.nbytes)}, "
                f"train.sample_state={self.request})")


def choose_storage(request: str, rows: int, cols: int, *, device: torch.device | str,
                   device_free: int | None, host_free: int | None, what: str = "per-sample state",
                   threshold: int = AUTO_FP32_MAX_BYTES) -> SampleStorage:
    """The storage of an N x C table (``rows`` x ``cols``) for ``train.sample_state=request``.

    Args:
        request: one of :data:`SAMPLE_STATE_CHOICES`.
        rows, cols: the table's size.
        device: the training device.
        device_free: its free memory in bytes (None: unknown, assumed enough).
        host_free: host memory available to this process in bytes (None: unknown, assumed enough).
        what: the table's name in messages.
        threshold: ``auto``'s fp32 limit (:data:`AUTO_FP32_MAX_BYTES`).

    Raises:
        ConfigError: the table cannot fit where it was asked to go (or, with ``auto``, anywhere);
            one line naming the size in GB and the option to change.

    Example:
        >>> choose_storage("auto", 1_281_167, 1000, device="cuda:0", device_free=8 * 2**30,
        ...                host_free=64 * 2**30).name
        'host'
    """
    if request not in SAMPLE_STATE_CHOICES:
        raise ConfigError(f"train.sample_state must be one of {', '.join(SAMPLE_STATE_CHOICES)}, got {request!r}")
    device = torch.device(device)
    on_cpu = device.type == "cpu"

    def storage(name: str) -> SampleStorage:
        host = name == "host"
        place = "host memory" + (" (pinned)" if device.type == "cuda" else "") if host else str(device)
        return SampleStorage(name, _DTYPES[name], host, rows, cols, request, place, what)

    def refuse(reason: str, fix: str) -> ConfigError:
        return ConfigError(f"train.sample_state={request}: the {what} ({rows:,} x {cols:,}) {reason}; {fix}")

    if request == "auto":
        fp32, half = storage("fp32"), storage("bf16")
        if fp32.nbytes <= threshold:
            return fp32
        share = HOST_SHARE if on_cpu else DEVICE_SHARE
        if device_free is None or half.nbytes <= share * device_free:
            return half
        if not on_cpu and (host_free is None or half.nbytes <= HOST_SHARE * host_free):
            return storage("host")
        room = f"{share:.0%} of the {format_bytes(device_free)} free on {device}" + (
            "" if on_cpu else f" or {HOST_SHARE:.0%} of the {format_bytes(host_free or 0)} of host memory")
        raise refuse(f"need {format_bytes(half.nbytes)} even in bf16, more than {room}",
                     "force a placement with train.sample_state=bf16 or host, free memory, or train on fewer "
                     "samples or without per-sample state")
    chosen = storage(request)
    free, where = (host_free, "host memory") if chosen.host else (device_free, str(device))
    if free is not None and chosen.nbytes > free:
        other = "host" if not chosen.host and not on_cpu else "auto"
        raise refuse(f"need {format_bytes(chosen.nbytes)} and {where} has {format_bytes(free)} free",
                     f"use train.sample_state={other}, free memory, or train on fewer samples")
    return chosen


@dataclass(frozen=True)
class SampleStatePolicy:
    """What a method needs to store its per-sample tables (``MethodContext.sample_state``).

    The default (``fp32``, no device) is the behaviour before ``train.sample_state``: fp32 tables
    made on the CPU and moved with the method. :func:`~robustrain.build.build_run` fills in the
    run's request, device and free memory.

    Attributes:
        request: ``train.sample_state``.
        device: the training device (None: the CPU, the method is moved later).
        device_free, host_free: free memory in bytes (None: unknown, assumed enough).
    """

    request: str = "fp32"
    device: torch.device | None = None
    device_free: int | None = None
    host_free: int | None = None

    def storage(self, rows: int, cols: int, what: str) -> SampleStorage:
        """:func:`choose_storage` for one table of this run."""
        return choose_storage(self.request, rows, cols, device=self.device or "cpu", device_free=self.device_free,
                              host_free=self.host_free, what=what)


def describe_sample_state(module: nn.Module) -> list[str]:
    """One line per per-sample table of ``module`` and its submodules (any module with a
    ``sample_storage`` dict of buffer name -> :class:`SampleStorage`), for the run's log."""
    lines: list[str] = []
    for sub in module.modules():
        tables: dict[str, SampleStorage] = getattr(sub, "sample_storage", None) or {}
        lines.extend(storage.describe() for storage in tables.values())
    return lines
