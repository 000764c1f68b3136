"""The resume state of a chunked AutoAttack evaluation: :class:`ChunkState`.

:func:`~robustrain.attacks.autoattack.run_autoattack` attacks the images in chunks. After each
chunk the per-image outcome (clean-correct and robust flags, as ``"0"``/``"1"`` strings) and the
chunk's sanity flags are written atomically to one small JSON file, keyed by a fingerprint of
the settings, the weights and the data (:func:`fingerprint`). Rerunning the same evaluation
reads the finished chunks back; a state of another model, data set or setting never matches
and is ignored. Shaped like AutoAttack's ``EvaluationState`` (``to_disk`` / ``from_disk``),
without its attack-set string (pyautoattack 0.2.0 writes it in a form that never matches on
reload).

File (``aa-<first 16 hex digits of the key>.json``)::

    {"format": "robustrain-autoattack-state-v1", "key": "<sha256>", "settings": {...},
     "chunks": {"<start>": {"clean": "0110...", "robust": "0100...", "flags": [...]}}}

Example:
    >>> import tempfile, torch
    >>> state = ChunkState("k" * 64, {"eps": 0.03}, Path(tempfile.mkdtemp()) / "aa-k.json")
    >>> state.record(0, torch.tensor([True, False]), torch.tensor([False, False]), ["a flag"])
    >>> again = ChunkState.from_disk(state.path, "k" * 64, {"eps": 0.03})
    >>> again.is_done(0), again.is_done(2), again.result(0)[0].tolist(), again.result(0)[2]
    (True, False, [True, False], ['a flag'])
    >>> ChunkState.from_disk(state.path, "another key", {}).is_done(0)  # another evaluation's state
    False
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from robustrain.utils.fileio import write_json

__all__ = ["STATE_FORMAT", "ChunkState", "fingerprint"]

STATE_FORMAT = "robustrain-autoattack-state-v1"


def _hash_tensor(h: "hashlib._Hash", t: Tensor) -> None:
    # hashing needs the bytes on the host: once per evaluation (the resume key), outside any step
    t = t.detach().cpu().contiguous().reshape(-1)
    h.update(str((t.dtype, t.numel())).encode())
    h.update(t.view(torch.uint8).numpy().tobytes())


def fingerprint(model: nn.Module, images: Tensor, labels: Tensor, settings: dict[str, Any]) -> str:
    """sha256 (hex) of the settings (as sorted JSON), every weight and buffer of ``model``,
    the images and the labels: two evaluations share a state only when all of these agree."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _hash_tensor(h, t)
    _hash_tensor(h, images)
    _hash_tensor(h, labels)
    return h.hexdigest()


def _bits(t: Tensor) -> str:
    return "".join("1" if v else "0" for v in t.tolist())


def _unbits(s: str) -> Tensor:
    return torch.tensor([c == "1" for c in s], dtype=torch.bool)


class ChunkState:
    """The finished chunks of one AutoAttack evaluation, keyed by the chunk's first image.

    Args:
        key: the evaluation's :func:`fingerprint` (None for a state kept in memory only).
        settings: the evaluation settings, written alongside (for people reading the file).
        path: the JSON file; None keeps the state in memory (nothing to resume from).
        chunks: already finished chunks, ``{str(start): {"clean", "robust", "flags"}}``.
    """

    def __init__(self, key: str | None, settings: dict[str, Any], path: Path | None = None,
                 chunks: dict[str, Any] | None = None) -> None:
        self.key = key
        self.settings = settings
        self.path = path
        self.chunks: dict[str, Any] = dict(chunks or {})

    # ------------------------------------------------------------------ files
    @classmethod
    def open(cls, state_dir: str | Path | None, model: nn.Module, images: Tensor, labels: Tensor,
             settings: dict[str, Any]) -> "ChunkState":
        """The state of this evaluation in ``state_dir`` (``aa-<key[:16]>.json``), with the chunks
        an earlier run finished; ``state_dir=None``: an in-memory state (no fingerprint is
        computed)."""
        if state_dir is None:
            return cls(None, settings)
        key = fingerprint(model, images, labels, settings)
        return cls.from_disk(Path(state_dir) / f"aa-{key[:16]}.json", key, settings)

    @classmethod
    def from_disk(cls, path: str | Path, key: str, settings: dict[str, Any]) -> "ChunkState":
        """The state at ``path`` when it belongs to evaluation ``key``; else (no file, another
        key or format, an unreadable file) an empty state that will be written there."""
        path = Path(path)
        return cls(key, settings, path, cls._read_chunks(path, key))

    @staticmethod
    def _read_chunks(path: Path, key: str) -> dict[str, Any]:
        if not path.is_file():
            return {}
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}  # written atomically, so only a foreign file lands here: start over
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("key") != key:
            return {}
        return state.get("chunks", {})

    def to_disk(self) -> None:
        """Write the state atomically to :attr:`path` (a no-op for an in-memory state)."""
        if self.path is not None:
            write_json({"format": STATE_FORMAT, "key": self.key, "settings": self.settings,
                        "chunks": self.chunks}, self.path)

    @property
    def log_path(self) -> Path | None:
        """Default log file of the evaluation: the state file with ``.log`` (None in memory)."""
        return None if self.path is None else self.path.with_suffix(".log")

    # ------------------------------------------------------------------ chunks
    def is_done(self, start: int) -> bool:
        return str(start) in self.chunks

    def count_done(self, starts: Iterable[int]) -> int:
        """How many of the chunks starting at ``starts`` are finished."""
        return sum(self.is_done(s) for s in starts)

    def record(self, start: int, clean: Tensor, robust: Tensor, flags: list[str]) -> None:
        """Store the outcome of the chunk at ``start`` and save the state (when it has a file)."""
        self.chunks[str(start)] = {"clean": _bits(clean), "robust": _bits(robust), "flags": list(flags)}
        self.to_disk()

    def result(self, start: int) -> tuple[Tensor, Tensor, list[str]]:
        """(clean-correct flags, robust flags, sanity flags) of the finished chunk at ``start``."""
        rec = self.chunks[str(start)]
        return _unbits(rec["clean"]), _unbits(rec["robust"]), list(rec["flags"])
