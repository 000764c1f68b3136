"""Atomic checkpoint files, read back with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing that
needs pickle's arbitrary code path):

``format``, ``config`` (the resolved config as a dict), ``model_card`` (a
:class:`~robustrain.artifacts.model_card.ModelSpec` as a dict: the model can be rebuilt from it
alone), the loop state ``epoch`` (epochs completed) and ``step`` (owned by
:class:`robustrain.train.TrainState`), ``model``, ``ema`` (or None), ``optimizer``, ``method``,
``rng``, ``callbacks`` (each end-of-epoch callback's own state by name: best-checkpoint selection,
overfitting guard) and ``metrics`` (the epoch's record). Checkpoints written before the layering
redesign have no ``model_card`` (the model is rebuilt from ``config``) and keep the callbacks'
state at the top level (``best``, ``best_epoch``, ``guard_best``); both still load and resume.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustrain.utils.errors import CheckpointError
from robustrain.utils.fileio import atomic_open

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "FORMAT"]

FORMAT = "robustrain-checkpoint-v1"
_REQUIRED = ("format", "config", "epoch", "model")


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` to ``path`` atomically: a temporary file in the same folder, fsync,
    then ``os.replace``, so an interrupted save never leaves a half-written checkpoint and
    never destroys the previous one."""
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
