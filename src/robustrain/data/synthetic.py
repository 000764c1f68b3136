"""A small, seeded, learnable image dataset for tests: class prototype + pixel noise.

Each class has one fixed smooth colour pattern (its prototype); an image is its class's
prototype plus Gaussian pixel noise, quantised to uint8. A tiny CNN separates the classes in
one or two epochs (so tests can train a model and attack it), while the prototypes differ by
only ~0.15 per pixel, so an eps = 8/255 attack still flips a good share of predictions and
iterative attacks (PGD) beat single-step ones (FGSM).
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_synthetic", "SYNTHETIC_SHAPE", "SYNTHETIC_CLASSES", "SYNTHETIC_SIZES"]

SYNTHETIC_SHAPE: tuple[int, int, int] = (3, 16, 16)
SYNTHETIC_CLASSES = 10
SYNTHETIC_SIZES = {"train": 512, "test": 256}

# Fixed seeds: the dataset is a constant, not a function of any user seed.
_PROTOTYPE_SEED = 1234
_SPLIT_SEEDS = {"train": 0, "test": 1}


def _linear_upsample_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) matrix of bilinear interpolation with half-pixel centres."""
    centres = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    centres = np.clip(centres, 0, size_in - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = centres - low
    mat = np.zeros((size_out, size_in))
    mat[np.arange(size_out), low] += 1 - frac
    mat[np.arange(size_out), high] += frac
    return mat


def _prototypes(num_classes: int, shape: tuple[int, int, int], contrast: float) -> np.ndarray:
    channels, height, width = shape
    rng = np.random.default_rng(_PROTOTYPE_SEED)
    # Smooth part: a 4x4 random pattern upsampled, so a small conv net picks it up quickly.
    coarse = rng.standard_normal((num_classes, channels, 4, 4))
    smooth = _linear_upsample_matrix(4, height) @ coarse @ _linear_upsample_matrix(4, width).T
    smooth /= smooth.std(axis=(1, 2, 3), keepdims=True)
    fine = rng.standard_normal((num_classes, channels, height, width))
    return 0.5 + contrast * (0.7 * smooth + 0.3 * fine)


def make_synthetic(
    split: str = "train",
    *,
    n: int | None = None,
    num_classes: int = SYNTHETIC_CLASSES,
    shape: tuple[int, int, int] = SYNTHETIC_SHAPE,
    contrast: float = 0.15,
    noise: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Generates one split of the synthetic dataset; the same arguments always give the same arrays.

    Train and test share the class prototypes and draw independent noise. Classes are balanced
    (``n`` images, label ``i % num_classes`` before shuffling).

    Args:
        split: ``"train"`` or ``"test"``.
        n: number of images (default 512 for train, 256 for test).
        num_classes: number of classes.
        shape: ``(C, H, W)``.
        contrast: scale of the prototype patterns around grey 0.5 (larger: easier, more robust).
        noise: standard deviation of the per-pixel noise in [0, 1] units.

    Returns:
        ``(images uint8 (n, C, H, W), labels int64 (n,))`` as numpy arrays.

    Example:
        >>> x, y = make_synthetic("test")
        >>> x.shape, x.dtype, y.shape, sorted(set(y.tolist())) == list(range(10))
        ((256, 3, 16, 16), dtype('uint8'), (256,), True)
    """
    if split not in _SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(_SPLIT_SEEDS)}")
    n = SYNTHETIC_SIZES[split] if n is None else n
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    prototypes = _prototypes(num_classes, shape, contrast)
    rng = np.random.default_rng(_SPLIT_SEEDS[split])
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    pixels = prototypes[labels] + noise * rng.standard_normal((n, *shape))
    images = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    return images, labels
