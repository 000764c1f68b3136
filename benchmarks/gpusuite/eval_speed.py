"""Part 4, evaluation speed: natural, PGD-20 and CW30 seconds per 1,000 images on part 3's
``pgd_at`` model (fp32, eval mode), standard AutoAttack on as many images as fit, and
torchattacks' PGD-20 for comparison when it is importable (it is not a dependency)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from _common import sync
from robustrain.artifacts import load_model
from robustrain.attacks import AutoAttackSpec
from robustrain.eval import evaluate_robustness
from robustrain.utils.runtime import fp32_eval

from .builders import new_model, pretrain, test_images
from .suite import Suite

__all__ = ["run_eval_speed"]


def run_eval_speed(suite: Suite) -> None:
    """Time each evaluation attack that fits on the part-3 model (or a briefly trained one)."""
    try:
        model, source = _model(suite)
    except Exception as e:
        suite.error("evaluation model", e)
        return
    x, y = test_images(suite.scale.eval_n)
    n = int(x.shape[0])
    suite.eval_speed = {"model": source, "n": n, "rows": {}}
    evaluate_robustness(model, x[:8], y[:8], ["pgd20"], device=suite.device, progress=False)  # warm-up
    for name in ("natural", "pgd20", "cw30"):
        if not suite.fits(f"eval {name}", 2 if suite.smoke else 15):
            continue
        sync(suite.device)
        t0 = time.perf_counter()
        acc = evaluate_robustness(model, x, y, [name], device=suite.device, progress=False).accuracy[name]
        sync(suite.device)
        sec = time.perf_counter() - t0
        suite.eval_speed["rows"][name] = {"n": n, "seconds": sec, "s_per_1000": 1000 * sec / n, "accuracy": acc}
        suite.record(f"eval {name}", "ran", sec, f"{1000 * sec / n:.2f} s per 1,000 images, accuracy {100 * acc:.2f}%")
    _autoattack(suite, model, x, y)
    _torchattacks(suite, model, x, y)


def _model(suite: Suite) -> tuple[nn.Module, str]:
    """Part 3's seed-0 ``pgd_at`` model, or a fresh one after a few PGD-AT steps; and what it is."""
    run = suite.result.get("runs", {}).get("pgd_at s0")
    if run is not None:
        model = load_model(Path(run["run_dir"]) / "best.pt", suite.device).model
        return model, f"part-3 pgd_at seed 0 ({suite.result['epochs']} epochs)"
    model = new_model(suite)
    pretrain(suite, model, 2 if suite.smoke else 40)
    return model, "a fresh model after a few PGD-AT steps (part 3 did not run)"


def _autoattack(suite: Suite, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    name = "eval AutoAttack standard"  # pyautoattack is a core dependency
    pgd = suite.eval_speed["rows"].get("pgd20")
    # standard AA costs roughly 50-100 PGD-20s on the images it attacks (the robust ones)
    per_img = (pgd["seconds"] / pgd["n"]) * 60 if pgd else 0.05
    n = int(x.shape[0]) if suite.smoke else max(0, min(int(x.shape[0]), int(suite.budget.left() * 0.8 / per_img)))
    if n < 16 and not suite.smoke:
        suite.skip(name, f"budget: {suite.budget.left():.0f} s left, ~{per_img:.2f} s per image")
        return
    spec = (AutoAttackSpec("custom", ("apgd-ce", "apgd-t", "fab-t", "square"), options=suite.scale.aa_options)
            if suite.smoke else AutoAttackSpec("standard"))
    sync(suite.device)
    t0 = time.perf_counter()
    try:
        res = spec.evaluate(model, x[:n], y[:n], device=suite.device, batch_size=256, progress=None)
    except Exception as e:
        suite.error(name, e, time.perf_counter() - t0)
        return
    sync(suite.device)
    sec = time.perf_counter() - t0
    suite.eval_speed["rows"]["autoattack"] = {"n": n, "seconds": sec, "s_per_1000": 1000 * sec / n,
                                              "accuracy": res.accuracy, "clean_accuracy": res.clean_accuracy,
                                              "flags": list(res.flags), "protocol": spec.describe()}
    suite.record(name, "ran", sec, f"{1000 * sec / n:.1f} s per 1,000 images on the first {n}, robust "
                 f"{100 * res.accuracy:.2f}% (its cost grows with the robust share)"
                 + (" (smoke: cut iterations)" if suite.smoke else ""))


def _torchattacks(suite: Suite, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    name = "eval torchattacks PGD-20"
    try:
        import torchattacks
    except ImportError:
        suite.skip(name, "torchattacks is not importable here (not a dependency): no comparison")
        return
    ours = suite.eval_speed["rows"].get("pgd20")
    if ours is None or not suite.fits(name, ours["seconds"] * 1.5):
        return
    ta = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=20, random_start=True)
    xs, ys = x.to(suite.device).float() / 255, y.to(suite.device)
    correct = 0
    sync(suite.device)
    t0 = time.perf_counter()
    with fp32_eval(model):
        for i in range(0, xs.shape[0], 256):
            adv = ta(xs[i:i + 256], ys[i:i + 256])
            with torch.no_grad():
                correct += int((model(adv).argmax(1) == ys[i:i + 256]).sum())
    sync(suite.device)
    sec = time.perf_counter() - t0
    n = int(xs.shape[0])
    suite.eval_speed["rows"]["torchattacks pgd20"] = {"n": n, "seconds": sec, "s_per_1000": 1000 * sec / n,
                                                      "accuracy": correct / n, "ours_over_theirs": ours["seconds"] / sec}
    suite.record(name, "ran", sec, f"ours / torchattacks = {ours['seconds'] / sec:.2f}; accuracy "
                 f"{100 * ours['accuracy']:.2f}% vs {100 * correct / n:.2f}%")
