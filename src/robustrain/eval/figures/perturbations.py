"""Figure 6 of UIAT: the class-wise universal inverse perturbations z_c of a UIAT run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from robustrain.artifacts import RunDir, load_checkpoint
from robustrain.config import config_from_dict, upgrade_saved_config
from robustrain.data import EvalData, eval_data_info, eval_labels, load_eval_split
from robustrain.eval.figures._common import ANALYSES, arg, output_base, write_series
from robustrain.eval.images import rescale_symmetric
from robustrain.eval.plots import image_figure, require_matplotlib

__all__ = ["universal_perturbations", "perturbation_figure"]


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


@ANALYSES.register("perturbations", help="Figure 6: the class-wise universal inverse perturbations z_c and x + z_c",
                   args=(arg("run", help="a run folder (or a checkpoint file) of uiat, uiat_oneoff or <base>+uiat"),
                         arg("--checkpoint", default=RunDir.LAST,
                              help="checkpoint of the run folder to read (default: %(default)s)"),
                         arg("--scale", type=int, default=4,
                             help="resolution, 30 x SCALE dots per inch (default: %(default)s)")))
def perturbation_figure(run: str | Path, out: str | Path | None = None, *, checkpoint: str = RunDir.LAST,
                        scale: int = 4) -> list[Path]:
    """The class-wise universal inverse perturbations of a UIAT run (UIAT Figure 6), one
    column per class (at most 20), titled with the dataset's class name: row 1 z_c rescaled
    from [-max|z|, max|z|] to [0, 1] (grey = 0), row 2 the first test image of class c, row 3
    that image plus z_c (clipped to [0, 1]); each row labelled, the title gives the run, epoch
    and max |z|. Writes perturbations.png (needs matplotlib) and perturbations.json (the
    classes, their names, the row labels, max |z| and z itself, to 1e-6).

    Args:
        run: run folder (or a checkpoint file).
        out: output folder or file; default ``RUN/perturbations.png``.
        checkpoint: which checkpoint of the run folder to read.
        scale: resolution of the PNG (30 x scale dots per inch) so 32x32 tiles are visible.
    """
    require_matplotlib()  # before reading anything
    run = Path(run)
    path = run if run.is_file() else run / checkpoint
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(upgrade_saved_config(ckpt["config"]))
    # the run's test data, streaming datasets too (only the images shown are decoded)
    data = EvalData.from_section(asdict(cfg.data))
    info = eval_data_info(data)
    z = universal_perturbations(ckpt["method"], info.num_classes, tuple(info.image_shape)).numpy()
    classes = list(range(min(info.num_classes, 20)))
    labels = eval_labels(data)
    first = {c: int((labels == c).nonzero()[0]) for c in classes if bool((labels == c).any())}
    shown = load_eval_split(data, ids=list(first.values())).x if first else None
    row = {c: k for k, c in enumerate(first)}
    x = np.stack([shown[row[c]].float().numpy() / 255 if c in row else np.zeros(info.image_shape, np.float32)
                  for c in classes])
    zc = z[classes]
    max_abs = float(np.abs(zc).max())
    names = [info.class_names[c] if info.class_names else f"class {c}" for c in classes]
    row_labels = ["z_c (grey = 0)", "test image x", "x + z_c"]
    shown = "" if len(classes) == info.num_classes else f", the first {len(classes)} of {info.num_classes} classes"
    title = (f"Universal inverse perturbations z_c of {path.parent.name} ({path.name}, epoch {ckpt.get('epoch')}"
             f"{shown}); row 1 scaled from -max|z| to +max|z| = {max_abs * 255:.2f}/255")
    base = output_base(out, path.parent, "perturbations")
    png = base.with_suffix(".png")
    image_figure([rescale_symmetric(zc), x, np.clip(x + zc, 0, 1)], png, col_titles=names, row_labels=row_labels,
                 title=title, dpi=max(60, 30 * scale))
    series = {"analysis": "perturbations", "checkpoint": str(path), "epoch": ckpt.get("epoch"),
              "classes": classes, "class_names": names, "rows": row_labels, "title": title, "max_abs_z": max_abs,
              "z": np.round(zc.astype(np.float64), 6).tolist()}  # 1e-6: far below one 8-bit pixel step
    return [png, write_series(base.with_suffix(".json"), series)]
