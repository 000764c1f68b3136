"""Atomic checkpoint files, read back with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing that
needs pickle's arbitrary code path):

``format``, ``config`` (the resolved config as a dict), ``model_card`` (a
:class:`~robustrain.artifacts.model_card.ModelSpec` as a dict: the model can be rebuilt from it
alone), the loop state ``epoch`` (epochs completed) and ``step`` (owned by
:class:`robustrain.train.TrainState`), ``model``, ``ema`` (or None), ``optimizer``, ``method``,
``rng``, ``callbacks`` (each end-of-epoch callback's own state by name: best-checkpoint selection,
overfitting guard; ``history`` holds every epoch's metrics record). Checkpoints written before the layering
redesign have no ``model_card`` (the model is rebuilt from ``config``) and keep the callbacks'
state at the top level (``best``, ``best_epoch``, ``guard_best``); both still load and resume.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustrain.utils.errors import CheckpointError
from robustrain.utils.fileio import atomic_open

__all__ = ["CheckpointError", "FORMAT", "content_digest", "load_checkpoint", "rng_state", "save_checkpoint",
           "set_rng_state"]

FORMAT = "robustrain-checkpoint-v1"
_REQUIRED = ("format", "config", "epoch", "model")


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    """Hash ``obj``'s content in a canonical order: the same checkpoint gives the same digest
    whatever device its tensors are on."""
    if torch.is_tensor(obj):
        t = obj.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k, v in sorted(obj.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0]))):
            h.update(repr(k).encode() + b":")
            _feed(h, v)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[" if isinstance(obj, list) else b"(")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_digest(obj: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's content (tensors' bytes, every other value's repr), its
    ``checksum`` entry left out.

    Example:
        >>> a = {"format": FORMAT, "w": torch.ones(2)}
        >>> content_digest(a) == content_digest({**a, "checksum": "x"}), content_digest(a) == content_digest(
        ...     {"format": FORMAT, "w": torch.tensor([1.0, 1.0 + 2 ** -20])})
        (True, False)
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in obj.items() if k != "checksum"})
    return h.hexdigest()


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` to ``path`` atomically: a temporary file in the same folder, fsync,
    then ``os.replace``, so an interrupted save never leaves a half-written checkpoint and
    never destroys the previous one. A robustrain checkpoint (``format`` set) also carries the
    :func:`content_digest` of its content (``checksum``), which :func:`load_checkpoint` verifies;
    any other dict (an exported state_dict) is written as it is."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        obj = {**obj, "checksum": content_digest(obj)}
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a robustrain checkpoint safely (``weights_only=True``) and check its shape.

    Raises:
        CheckpointError: missing file, unreadable/corrupt file, or not a robustrain checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (run folders hold best.pt and last.pt)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated / foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a safe torch file ({first[:200]}); "
            "use another checkpoint of the run (best.pt / last.pt) or retrain"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or any(k not in obj for k in _REQUIRED):
        raise CheckpointError(
            f"{path} is not a robustrain checkpoint (expected format {FORMAT!r}); "
            "`robustrain eval` also reads files written by `robustrain export`"
        )
    # checkpoints written before checksums existed have none and load as they are
    if "checksum" in obj and obj["checksum"] != content_digest(obj):
        raise CheckpointError(
            f"checkpoint {path} is damaged: its content does not match its checksum (flipped bytes on disk "
            "or in transfer); use the run's other checkpoint (best.pt / last.pt), a backup, or retrain"
        )
    return obj


def rng_state() -> dict[str, Any]:
    """Every RNG the training step draws from, as weights_only-loadable objects."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
