"""The validation split that selects ``best.pt``: held out of the TRAINING data (issue 13).

Model selection never looks at the test set: a run holds ``val_n`` training images out as its
validation split, trains on the rest, chooses ``best.pt`` on (the first ``eval.n`` of) the
validation split, and reports both ``best.pt`` and ``last.pt`` on the test split. The split is
class-balanced (:func:`~robustrain.data.loader.subset_indices` ``mode="stratified"``) and drawn with the
fixed :data:`SPLIT_SEED`, never the run's seed: every method and every seed of a dataset holds
out the same images (for the same ``val_n``), and a smaller ``val_n`` holds out a subset of a
larger one's images.

As N-FGSM's official ``train.py`` (``--validation-early-stop``: ``valid_size = 1000`` training
images, ``get_indexed_loaders``), the default size is 1,000 images on the full datasets; on a
small split (``cifar10-mini``: 5,085 images) it is capped at 10% of the split
(:func:`default_val_n`).

Example:
    >>> import torch
    >>> labels = torch.arange(100) % 10
    >>> split = validation_split(labels, 10)
    >>> len(split.train_ids), len(split.val_ids), sorted(labels[split.val_ids].tolist()) == list(range(10))
    (90, 10, True)
    >>> bool(set(split.train_ids.tolist()).isdisjoint(split.val_ids.tolist()))
    True
    >>> default_val_n(50_000), default_val_n(5085), default_val_n(512)
    (1000, 508, 51)
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from .loader import subset_indices

__all__ = ["SPLIT_SEED", "VAL_N_MAX", "VAL_FRACTION_MAX", "ValidationSplit", "default_val_n", "validation_split"]

#: seed of the validation split: fixed, independent of the run's ``seed`` (the same held-out
#: images for every method and seed)
SPLIT_SEED = 13

#: the default validation size on a full dataset (N-FGSM's ``valid_size = 1000``)
VAL_N_MAX = 1000

#: the most of a (small) training split the default holds out
VAL_FRACTION_MAX = 0.1


def default_val_n(train_size: int) -> int:
    """``data.val_n``'s default: ``min(1000, 10% of the training split)``, at least 1."""
    return max(1, min(VAL_N_MAX, int(train_size * VAL_FRACTION_MAX)))


class ValidationSplit(NamedTuple):
    """Sorted int64 ids into the ORIGINAL training split (``Batch.idx`` keeps these ids, so
    per-sample method buffers of size N stay valid).

    Attributes:
        train_ids: the images trained on.
        val_ids: the held-out images that select ``best.pt``.
        seed: the split seed (:data:`SPLIT_SEED`).
    """

    train_ids: torch.Tensor
    val_ids: torch.Tensor
    seed: int


def validation_split(
    labels: torch.Tensor | Sequence[int] | np.ndarray, val_n: int, *, seed: int = SPLIT_SEED
) -> ValidationSplit:
    """Hold ``val_n`` class-balanced images of a training split out for model selection.

    Args:
        labels: the training split's labels, ``(N,)``.
        val_n: images held out, ``1 <= val_n < N``.
        seed: the split seed (default :data:`SPLIT_SEED`; not the run's seed).

    Raises:
        ValueError: ``val_n`` outside ``1 .. N - 1``.
    """
    labels = torch.as_tensor(labels).reshape(-1).to("cpu", torch.int64)
    n = int(labels.shape[0])
    if not 1 <= val_n < n:
        raise ValueError(f"data.val_n must be in 1..{n - 1} (the training split has {n} images), got {val_n}")
    val_ids = subset_indices(labels, val_n, mode="stratified", seed=seed)
    keep = torch.ones(n, dtype=torch.bool)
    keep[val_ids] = False
    return ValidationSplit(torch.nonzero(keep).reshape(-1), val_ids, seed)
