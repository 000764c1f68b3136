"""Analyses behind the papers' figures, as functions that write files.

Registry ``ANALYSES`` (``robustrain analyze KIND RUN``); each entry takes a run folder (or a
checkpoint) and an output path and returns the paths it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from robustrain.registry import Registry

__all__ = ["ANALYSES", "universal_perturbations", "perturbation_figure"]

Analysis = Callable[..., list[Path]]
ANALYSES: Registry[Analysis] = Registry("analysis")


def _checkpoint_path(run: str | Path, checkpoint: str) -> Path:
    run = Path(run)
    return run if run.is_file() else run / checkpoint


def universal_perturbations(method_state: dict[str, torch.Tensor], num_classes: int,
                            image_shape: tuple[int, ...]) -> torch.Tensor:
    """The per-class universal inverse perturbations z (C, *image_shape) in a method's state.

    Raises:
        ValueError: the method keeps no such buffer (it is not a universal UIAT variant).
    """
    want = (num_classes, *image_shape)
    for key, value in method_state.items():
        if key.split(".")[-1] == "z" and tuple(value.shape) == want:
            return value.float()
    raise ValueError(
        "this run's method has no universal inverse perturbations (buffer z of shape "
        f"{want}); train uiat, uiat_oneoff or a <base>+uiat method"
    )


@ANALYSES.register("perturbations", help="Figure 6: the class-wise universal inverse perturbations z_c and x + z_c")
def perturbation_figure(run: str | Path, out: str | Path | None = None, *, checkpoint: str = "last.pt",
                        scale: int = 4) -> list[Path]:
    """Write one PNG grid: row 1 z_c rescaled from [-max|z|, max|z|] to [0, 1] (grey = 0), row 2
    the first test image of class c, row 3 that image plus z_c (clipped to [0, 1]); one column
    per class (at most 20).

    Args:
        run: run folder (or a checkpoint file).
        out: PNG path; default ``RUN/perturbations.png``.
        checkpoint: which checkpoint of the run folder to read.
        scale: pixel repetition so 32x32 tiles are visible.
    """
    from robustrain.config import config_from_dict
    from robustrain.data import get_dataset_info, load_split
    from robustrain.eval.images import image_grid, rescale_symmetric, write_png
    from robustrain.train.checkpoint import load_checkpoint

    path = _checkpoint_path(run, checkpoint)
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(ckpt["config"])
    info = get_dataset_info(cfg.data.name)
    z = universal_perturbations(ckpt["method"], info.num_classes, tuple(info.image_shape)).numpy()
    classes = list(range(min(info.num_classes, 20)))
    images, labels = load_split(cfg.data.name, "test", root=cfg.data.root)
    x = []
    for c in classes:
        hits = (labels == c).nonzero()
        x.append(images[int(hits[0])].float().numpy() / 255 if len(hits) else np.zeros(info.image_shape, np.float32))
    x = np.stack(x)
    zc = z[classes]
    tiles = np.concatenate([rescale_symmetric(zc), x, np.clip(x + zc, 0, 1)]).astype(np.float32)
    out = Path(out) if out else (path.parent / "perturbations.png")
    write_png(image_grid(tiles, ncols=len(classes)), out, scale=scale)
    return [out]
