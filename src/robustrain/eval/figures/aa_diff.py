"""Figure 5 of UIAT: AutoAttack (or any evaluation attack) accuracy of checkpoint A minus B
across radii."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from robustrain.artifacts import load_model
from robustrain.eval.figures._common import (
    ANALYSES,
    EPS_HELP,
    EVAL_ARGS,
    arg,
    checkpoint_paths,
    common_dir,
    device_from,
    load_test_images,
    model_label,
    output_base,
    parse_eps,
    pct,
    show_progress,
    write_series,
)
from robustrain.eval.plots import Line, Panel, line_figure, require_matplotlib
from robustrain.eval.robust import evaluate_robustness

__all__ = ["aa_diff_figure"]


@ANALYSES.register("aa-diff", help="Figure 5: AutoAttack accuracy of checkpoint A minus B across eps", args=(
    arg("checkpoint_a", metavar="A", help="checkpoint (or run folder: its best.pt), e.g. the UIAT one-off run"),
    arg("checkpoint_b", metavar="B", help="checkpoint (or run folder) to compare against, e.g. TRADES"),
    arg("--attack", default="aa", help="attack name of `robustrain eval --attacks` (default: %(default)s; "
                                        "a cheaper AutoAttack variant or pgd20 for a quick look)"),
    arg("--eps", default="2/255,4/255,8/255,12/255,16/255",
         help=f"comma-separated radii (default: %(default)s); {EPS_HELP}"),
    arg("--reference", default="8/255", help="radius marked by the red line, the training eps (default: %(default)s)"),
    *EVAL_ARGS,
))
def aa_diff_figure(checkpoint_a: str | Path, checkpoint_b: str | Path, out: str | Path | None = None, *,
                   attack: str = "aa", eps: str | Sequence[float] = "2/255,4/255,8/255,12/255,16/255",
                   reference: float | str = 8 / 255, n: int = 1000, batch_size: int = 256, device: str = "auto",
                   seed: int = 0, data_root: str | None = None, progress: bool | None = None) -> list[Path]:
    """Robust accuracy of two checkpoints under one attack (AutoAttack by default) at several
    radii, and its difference A - B (UIAT Figure 5: one-off UIAT minus TRADES, better at
    small eps, worse beyond the training eps 8/255). Both are evaluated on the same first n
    test images with the same seed. Writes aa-diff.png (accuracies; difference with red
    reference lines at 0 and at the training eps) and aa-diff.json.

    Args:
        checkpoint_a, checkpoint_b: checkpoints (or run folders) of the same dataset.
        out: output folder or file (default: figures/ in the two runs' common parent folder).
        attack: an attack name of ``robustrain eval`` (default ``aa``).
        eps: radii, comma-separated string or a sequence of floats.
        reference: the radius of the red vertical line.
        n, batch_size, device, seed, data_root, progress: as in ``robustrain eval``.
    """
    require_matplotlib()
    radii = [parse_eps(e.strip(), "--eps") for e in eps.split(",") if e.strip()] if isinstance(eps, str) \
        else [parse_eps(e, "--eps") for e in eps]
    if not radii:
        raise ValueError("--eps needs at least one radius, e.g. 4/255,8/255")
    ref = parse_eps(reference, "--reference")
    dev = device_from(device)
    paths = checkpoint_paths([checkpoint_a, checkpoint_b])
    loaded = [load_model(p, dev) for p in paths]
    if loaded[0].dataset != loaded[1].dataset:
        raise ValueError(f"A was trained on {loaded[0].dataset} and B on {loaded[1].dataset}; compare "
                         "checkpoints of the same dataset")
    x, y = load_test_images(loaded[0], n, data_root)
    live = show_progress(progress)
    bar = tqdm(total=2 * len(radii), desc=f"aa-diff {attack}", leave=False, disable=not live)
    sides = []
    t0 = time.perf_counter()
    for tag, path, lm in zip("AB", paths, loaded):
        acc = []
        for e in radii:
            if not live:  # a log file or a pipe gets one line per stage instead of a bar (issue 23)
                print(f"aa-diff: {attack} on {tag} ({path}) at eps {e * 255:g}/255, {x.shape[0]} images "
                      f"({time.perf_counter() - t0:.0f} s so far)", file=sys.stderr, flush=True)
            try:
                acc.append(evaluate_robustness(lm.model, x, y, [attack], eps=e, batch_size=batch_size, device=dev,
                                               seed=seed, progress=False, warn_flags=True).accuracy[attack])
            except KeyError as err:
                raise ValueError(f"--attack: {err.args[0]}") from None
            bar.update()
        sides.append({"checkpoint": str(path), "label": model_label(path, lm.meta["method"]), "acc": acc})
    bar.close()
    diff = [a - b for a, b in zip(sides[0]["acc"], sides[1]["acc"])]
    series = {"analysis": "aa-diff", "attack": attack, "n": int(x.shape[0]), "dataset": loaded[0].dataset,
              "eps": radii, "eps_255": [e * 255 for e in radii], "a": sides[0], "b": sides[1], "diff": diff}
    x255 = series["eps_255"]
    panels = [Panel([Line(f"{tag}: {s['label']}", x255, pct(s["acc"])) for tag, s in zip("AB", sides)],
                    title=f"{attack} accuracy", xlabel="eps (x 1/255)", ylabel="accuracy (%)", vlines=(ref * 255,)),
              Panel([Line("A - B", x255, pct(diff))], title=f"{sides[0]['label']} - {sides[1]['label']}",
                    xlabel="eps (x 1/255)", ylabel="accuracy difference (points)", hlines=(0.0,),
                    vlines=(ref * 255,))]
    base = output_base(out, common_dir([p.parent for p in paths]), "aa-diff")
    png = line_figure(panels, base.with_suffix(".png"))
    return [png, write_series(base.with_suffix(".json"), series)]
