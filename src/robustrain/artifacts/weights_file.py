"""The file formats an exported state_dict can take: PyTorch's pickle-free ``.pt`` and ``.safetensors``.

Both hold the same flat ``name -> tensor`` dict (the whole [0,1]-input model, ``Normalize`` front end
included) and sit beside the same JSON model card (:mod:`robustrain.artifacts.model_card`).
``.safetensors`` is the format timm and Hugging Face models ship in: a JSON header plus raw
tensor bytes, read without any code execution and without PyTorch's unpickler; it needs the
``safetensors`` package (``pip install -e .[safetensors]``). The formats are a table
(:data:`WEIGHT_FORMATS`), and a file's suffix says which one it is.

Example:
    >>> import torch
    >>> state = {"w": torch.arange(4.0)}
    >>> decode_weights(encode_weights(state, "pt"), "pt")["w"].tolist()
    [0.0, 1.0, 2.0, 3.0]
    >>> weights_format("model.safetensors"), weights_format("model.pt")
    ('safetensors', 'pt')
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from robustrain.utils.errors import MissingExtraError

__all__ = ["WEIGHT_FORMATS", "WeightFormat", "decode_weights", "encode_weights", "require_safetensors",
           "weights_format"]

SAFETENSORS_INSTALL = "pip install -e .[safetensors]"


def require_safetensors() -> Any:
    """The ``safetensors.torch`` module, or one line naming the install command.

    Raises:
        MissingExtraError: ``safetensors`` is not installed.
    """
    try:
        import safetensors.torch  # optional extra: imported only where .safetensors files are used
    except ImportError:
        raise MissingExtraError(f".safetensors files need the safetensors package; install it with "
                                f"`{SAFETENSORS_INSTALL}`") from None
    return safetensors.torch


def _pt_encode(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _pt_decode(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _st_encode(state: dict[str, torch.Tensor]) -> bytes:
    # "format": "pt" is the header entry Hugging Face's loaders look for in PyTorch weights
    return require_safetensors().save(state, metadata={"format": "pt"})


def _st_decode(data: bytes) -> Any:
    return require_safetensors().load(data)


@dataclass(frozen=True)
class WeightFormat:
    """One export format: its file suffix and its (de)serialisers of a state_dict."""

    suffix: str
    encode: Callable[[dict[str, torch.Tensor]], bytes]
    decode: Callable[[bytes], Any]
    reader: str  # how to read it without robustrain, for messages and the CLI


#: export formats by name (``robustrain export --format NAME``)
WEIGHT_FORMATS: dict[str, WeightFormat] = {
    "pt": WeightFormat(".pt", _pt_encode, _pt_decode, "torch.load(..., weights_only=True)"),
    "safetensors": WeightFormat(".safetensors", _st_encode, _st_decode, "safetensors.torch.load_file(...)"),
}


def weights_format(path: str | Path) -> str:
    """The format a weights file's suffix names: ``safetensors`` for ``.safetensors``, else ``pt``."""
    suffix = Path(path).suffix
    return next((name for name, f in WEIGHT_FORMATS.items() if f.suffix == suffix), "pt")


def encode_weights(state: dict[str, torch.Tensor], fmt: str) -> bytes:
    """``state`` (contiguous tensors that share no memory) as the bytes of a ``fmt`` file."""
    return WEIGHT_FORMATS[fmt].encode(state)


def decode_weights(data: bytes, fmt: str) -> Any:
    """The object in the bytes of a ``fmt`` file, on the CPU (whatever the bytes hold: the caller
    checks it is a state_dict). Raises what the format's reader raises for a damaged file."""
    return WEIGHT_FORMATS[fmt].decode(data)
