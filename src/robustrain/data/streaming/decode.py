"""Decoding one encoded image (JPEG / PNG bytes) into a uint8 ``(3, S, S)`` tensor with Pillow,
with the two standard ImageNet views:

* :func:`train_view`: RandomResizedCrop (scale ``(0.08, 1)``, aspect ratio ``(3/4, 4/3)``,
  bilinear, torchvision's sampling rule with its 10 tries and centre-crop fallback) to ``S``, then
  a horizontal flip with p = 0.5. Every random number comes from the sample's own
  ``numpy.random.Generator``, so a sample's view depends only on its seed, never on the worker
  that decodes it or on the batch it is in.
* :func:`eval_view`: resize the shorter side to ``resize`` (bilinear), then the centre
  ``S x S`` crop.

Pillow is an optional extra (``pip install -e .[imagenet]``): :func:`require_pillow` fails with
one line naming that command, and the loaders call it before any work. torchvision is not used
(it does not install with this project's CPU torch pin).

Example:
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(buf, format="PNG")
    >>> img = decode_rgb(buf.getvalue())
    >>> eval_view(img, 32, 36).shape, train_view(img, 32, np.random.default_rng(0)).dtype
    (torch.Size([3, 32, 32]), torch.uint8)
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch

from robustrain.utils.errors import RobustrainError

__all__ = [
    "CROP_RATIO",
    "CROP_SCALE",
    "DecodeError",
    "PillowMissingError",
    "decode_rgb",
    "eval_view",
    "random_resized_crop_box",
    "require_pillow",
    "train_view",
]

#: RandomResizedCrop's area fraction and aspect-ratio ranges (the ImageNet training recipe of
#: Salman et al. 2020 / MadryLab robustness, and torchvision's defaults)
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)

INSTALL_HINT = "pip install -e .[imagenet]"


class PillowMissingError(RobustrainError, ImportError):
    """Pillow (the ``imagenet`` extra) is not installed (exit code 2: raised before any work)."""

    exit_code = 2


class DecodeError(ValueError):
    """One image's bytes could not be decoded (corrupt, truncated or not an image)."""


def require_pillow() -> Any:
    """The ``PIL.Image`` module, or one line naming the install command.

    Raises:
        PillowMissingError: Pillow is not installed.
    """
    try:
        from PIL import Image  # optional extra: imported only where images are decoded
    except ImportError:
        raise PillowMissingError(
            f"decoding image files (data.name=imagefolder / webdataset) needs Pillow; install it with `{INSTALL_HINT}`"
        ) from None
    return Image


def decode_rgb(data: bytes) -> Any:
    """A fully decoded RGB ``PIL.Image`` from encoded bytes (grey, palette, CMYK and RGBA are
    converted to RGB).

    Raises:
        DecodeError: the bytes are not a readable image (the reason in one line).
    """
    Image = require_pillow()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decode now: a truncated file fails here, not later in a transform
            return img.convert("RGB")
    # what Pillow raises on bad bytes: unidentified or truncated (OSError), malformed headers
    # (ValueError, SyntaxError, EOFError), oversized (DecompressionBombError)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise DecodeError(f"{type(e).__name__}: {str(e)[:120]}") from None


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator, *,
                            scale: tuple[float, float] = CROP_SCALE,
                            ratio: tuple[float, float] = CROP_RATIO) -> tuple[int, int, int, int]:
    """``(left, top, w, h)`` of a RandomResizedCrop window: up to 10 tries of an area fraction
    uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``; if none fits, the centre
    crop with the aspect ratio clamped into ``ratio`` (torchvision's rule).

    Example:
        >>> left, top, w, h = random_resized_crop_box(64, 48, np.random.default_rng(0))
        >>> 0 <= left and left + w <= 64 and 0 <= top and top + h <= 48
        True
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _to_tensor(img: Any) -> torch.Tensor:
    """HWC uint8 image -> CHW uint8 tensor (a copy: the worker's array is not shared)."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def train_view(img: Any, size: int, rng: np.random.Generator, *, flip: bool = True) -> torch.Tensor:
    """RandomResizedCrop to ``size x size`` (bilinear) then a horizontal flip with p = 0.5.

    Args:
        img: an RGB ``PIL.Image`` (:func:`decode_rgb`).
        size: output side.
        rng: the sample's own generator (its seed fixes the view).
        flip: draw the flip.
    """
    Image = require_pillow()
    left, top, w, h = random_resized_crop_box(img.width, img.height, rng)
    out = img.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
    if flip and rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return _to_tensor(out)


def eval_view(img: Any, size: int, resize: int) -> torch.Tensor:
    """The shorter side resized to ``resize`` (bilinear), then the centre ``size x size`` crop.

    Raises:
        ValueError: ``resize < size`` (nothing to crop).
    """
    if resize < size:
        raise ValueError(f"data.resize={resize} must be >= data.image_size={size}")
    Image = require_pillow()
    w, h = img.width, img.height
    if (w, h) != (resize, resize) and min(w, h) != resize:
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(resize * long / short)
        w, h = (resize, new_long) if img.width <= img.height else (new_long, resize)
        img = img.resize((w, h), Image.BILINEAR)
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    return _to_tensor(img.crop((left, top, left + size, top + size)))
