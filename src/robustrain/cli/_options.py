"""Options shared by the commands that evaluate a model (``eval``, ``audit``): ``--device`` and
output paths, each checked before any work with a one-line error that names the fix."""

from __future__ import annotations

from pathlib import Path

from robustrain.utils.errors import UsageError

__all__ = ["device_option", "require_writable"]


def device_option(name: str):
    """``--device``: auto, cpu, cuda, cuda:N (or mps where available); UsageError otherwise."""
    import torch

    from robustrain.utils.runtime import resolve_device

    fix = "use --device cpu (or auto: CUDA when available)"
    try:
        dev = torch.device(name) if name != "auto" else None
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name}: not a device; {fix}") from None
    if dev is not None:
        if dev.type not in ("cpu", "cuda", "mps"):
            raise UsageError(f"--device {name}: robustrain evaluates on cpu, cuda or cuda:N; {fix}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine; {fix}")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1}); {fix}")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise UsageError(f"--device {name}: MPS is not available on this machine; {fix}")
    try:
        return resolve_device(name)
    except (RuntimeError, ValueError) as e:  # ConfigError included: say it in terms of --device
        raise UsageError(f"--device {name}: {e}; {fix}") from None


def require_writable(path: Path, flag: str) -> None:
    from robustrain.utils.fileio import unwritable_reason

    reason = unwritable_reason(path)
    if reason is not None:
        raise UsageError(f"{flag} {path}: cannot write there ({reason}); give {flag} a path in a writable folder "
                         "(nothing was evaluated)")
