"""Image grids written as PNG with no plotting dependency (zlib + the PNG chunk format).

Example:
    >>> import numpy as np, tempfile, os
    >>> from robustrain.eval.images import image_grid, write_png
    >>> grid = image_grid(np.zeros((4, 3, 8, 8), dtype=np.float32), ncols=2)
    >>> grid.shape
    (3, 22, 22)
    >>> path = os.path.join(tempfile.mkdtemp(), "g.png")
    >>> write_png(grid, path)
    >>> open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from robustrain.utils.fileio import write_atomic

__all__ = ["image_grid", "write_png", "read_png", "rescale_symmetric"]


def rescale_symmetric(z: np.ndarray, eps: float | None = None) -> np.ndarray:
    """Map a perturbation in [-eps, eps] (default: its own max |z|) to [0, 1], 0 -> 0.5."""
    scale = float(eps) if eps else float(np.abs(z).max()) or 1.0
    return np.clip(0.5 + 0.5 * z / scale, 0.0, 1.0)


def image_grid(images: np.ndarray, ncols: int, pad: int = 2, fill: float = 1.0) -> np.ndarray:
    """Tile (N, C, H, W) images in [0, 1] into one (C, rows*(H+pad)+pad, ncols*(W+pad)+pad) image."""
    if images.ndim != 4:
        raise ValueError(f"image_grid expects (N, C, H, W), got shape {images.shape}")
    n, c, h, w = images.shape
    nrows = -(-n // ncols)
    grid = np.full((c, nrows * (h + pad) + pad, ncols * (w + pad) + pad), fill, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def write_png(image: np.ndarray, path: str | os.PathLike, scale: int = 1) -> None:
    """Write a (C, H, W) float image in [0, 1] (C = 1 or 3) as an 8-bit PNG, atomically.

    ``scale`` repeats pixels (nearest neighbour) so 32x32 tiles are visible.
    """
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"write_png expects (1|3, H, W), got shape {image.shape}")
    arr = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
    c, h, w = arr.shape
    color_type = 2 if c == 3 else 0
    rows = arr.transpose(1, 2, 0).reshape(h, w * c)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))  # filter 0 per scanline

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    write_atomic(path, png)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read back a PNG written by :func:`write_png` as (C, H, W) uint8 (for tests)."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    if header is None:
        raise ValueError(f"{path} has no IHDR chunk")
    w, h, _, color_type, *_ = header
    c = 3 if color_type == 2 else 1
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + w * c)
    if raw[:, 0].any():
        raise ValueError("only unfiltered scanlines are supported")
    return raw[:, 1:].reshape(h, w, c).transpose(2, 0, 1).copy()
