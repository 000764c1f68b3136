"""Part 2, speed: full training steps of every method (as the trainer runs them), in several
settings (model, batch, fp32/bf16, channels_last, compile) of decreasing priority, all rows
interleaved in the same rounds; medians, images/s, seconds per 50,000-image epoch and ratios
to ``pgd_at``. Targets are reported, never asserted; a missed one gets a profile (top kernels,
the loader's share of a step, host syncs per step).

Two ImageNet settings (ResNet-50 at 224 px: robustrain's ``resnet50`` and ``timm:resnet50``,
skipped with the reason where timm is not importable) time the PGD-AT step of
``configs/imagenet/pgd_at_resnet50.yaml`` (PGD-3 at 4/255, bf16, channels_last); their images/s
is the step rate ``benchmarks/loader_throughput.py`` sizes the decoding workers for.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from _common import Row, count_passes, make_optimizer, parse_method, split_awp, sync, time_rows, train_step_fn
from robustrain.data import DeviceLoader, load_split
from robustrain.methods import create_method
from robustrain.models.timm_backbone import require_timm
from robustrain.utils import MissingExtraError

from .budget import FULL
from .builders import (EPOCHS, METHOD_ROWS, compile_model, imagenet_batch, imagenet_method, imagenet_model,
                       method_ctx, new_model, train_batch)
from .suite import DATASET, Suite

__all__ = ["EPOCH_IMAGES", "EPOCH_TARGETS", "RATIO_TARGETS", "run_speed", "settings", "targets", "unavailable"]

EPOCH_IMAGES = 50_000
#: (row, seconds per 50,000-image epoch on one H100) and (row, reference, ratio): issue 14
EPOCH_TARGETS = (("uiat", 10.0), ("pgd_at", 8.0))
RATIO_TARGETS = (("uiat", "pgd_at", 1.30),)


@dataclass
class _Warmed:
    """The rows that survived warm-up: what the timing rounds run."""

    rows: list[Row] = field(default_factory=list)
    meta: dict[str, dict] = field(default_factory=dict)  # row label -> setting, method, batch
    estimate: dict[str, float] = field(default_factory=dict)  # row label -> seconds of one call
    settings: list[str] = field(default_factory=list)


def settings(suite: Suite) -> list[dict[str, Any]]:
    """Speed settings in priority order (the planner drops from the end)."""
    small, large = suite.scale.batches
    m, w = suite.scale.model, suite.scale.wrn
    few = ("pgd_at", "uiat")
    px, ib = suite.scale.imagenet_px, suite.scale.imagenet_batch
    # ImageNet: the preset's PGD-AT step (bf16, channels_last), after the three all-method settings
    imagenet = [dict(model=name, kwargs=kw, batch=ib, bf16=True, cl=True, compile=False, methods=("pgd_at",),
                     px=px, stands_for=FULL.imagenet_models[i][0])
                for i, (name, kw) in enumerate(suite.scale.imagenet_models)]
    out = [
        dict(model=m, batch=small, bf16=False, cl=False, compile=False, methods=METHOD_ROWS),
        dict(model=m, batch=small, bf16=True, cl=False, compile=False, methods=METHOD_ROWS),
        dict(model=m, batch=large, bf16=True, cl=False, compile=False, methods=METHOD_ROWS),
        *imagenet,
        dict(model=m, batch=small, bf16=True, cl=True, compile=False, methods=few),
        dict(model=m, batch=small, bf16=False, cl=False, compile=True, methods=few),
        dict(model=m, batch=large, bf16=False, cl=False, compile=False, methods=few),
        dict(model=m, batch=large, bf16=True, cl=True, compile=True, methods=few),
        dict(model=w, batch=small, bf16=True, cl=False, compile=False, methods=few, wrn=True),
    ]
    for s in out:
        name = s.get("stands_for") or ("wrn28_10" if s.get("wrn") else "resnet18")
        shown = name if not suite.smoke else f"{name}~{s['model']}"
        s.setdefault("stands_for", name)
        s.setdefault("px", suite.info.image_shape[-1])
        size = f" {s['px']}px" if "kwargs" in s else ""
        s["label"] = (f"{shown}{size} b{s['batch']} {'bf16' if s['bf16'] else 'fp32'}"
                      f"{' cl' if s['cl'] else ''}{' compiled' if s['compile'] else ''}")
    return out


def run_speed(suite: Suite) -> None:
    """Warm up every setting that fits, time the rows in interleaved rounds, check the targets."""
    warmed = _Warmed()
    for s in tqdm(settings(suite), desc="speed: warm-up", leave=False, disable=None):
        est = (60 if s["compile"] else 10 if "kwargs" in s else 5) if not suite.smoke else 1
        why = unavailable(s["model"])
        if why:
            suite.skip(f"speed setting {s['label']}", why)
        elif suite.fits(f"speed setting {s['label']}", est):
            _warm_up(suite, s, warmed)
    if not warmed.rows:
        return
    table = _time(suite, warmed)
    suite.speed["targets"] = targets(suite, table)
    missed = [t for t in suite.speed["targets"] if t["met"] is False]
    if missed or suite.smoke:
        _profile(suite, missed, warmed)


def unavailable(model: str) -> str | None:
    """Why ``model`` cannot be built here (a ``timm:`` model without an importable timm), else None."""
    if not model.startswith("timm:"):
        return None
    try:
        require_timm()
    except MissingExtraError as e:
        return f"timm not importable: {e}"
    return None


def _warm_up(suite: Suite, s: dict[str, Any], warmed: _Warmed) -> None:
    """Build one setting's rows and run each twice (compile / autotune, then one call as the estimate)."""
    name = f"speed setting {s['label']}"
    t0 = time.perf_counter()
    try:
        if "kwargs" in s:  # an ImageNet setting: 1000 classes, px x px inputs, the preset's PGD-AT
            model = imagenet_model(suite, s["model"], s["kwargs"], s["px"])
            batch, num_ids = imagenet_batch(suite, s["batch"], s["px"])
        else:
            kwargs = suite.scale.wrn_kwargs if s.get("wrn") else suite.scale.model_kwargs
            model = new_model(suite, s["model"], kwargs)
            batch, num_ids = train_batch(suite, s["batch"])
        if s["cl"]:
            model = model.to(memory_format=torch.channels_last)
            batch = batch._replace(x=batch.x.contiguous(memory_format=torch.channels_last))
        step_model = compile_model(suite, model) if s["compile"] else model
        opt = make_optimizer(model, suite.device)
        new_rows = []
        for spec in s["methods"]:
            method_name, frac = parse_method(spec, 0.9)
            base, awp = split_awp(method_name)
            method = (imagenet_method(suite, num_ids, s["px"]) if "kwargs" in s
                      else create_method(base, method_ctx(suite, num_ids)).to(suite.device))
            method.set_epoch(int(frac * EPOCHS))
            fwd, bwd = count_passes(method, model, batch, awp)
            label = f"{s['label']} | {spec}"
            row = Row(label, "train", train_step_fn(method, step_model, opt, batch, bf16=s["bf16"],
                                                    device=suite.device, awp=awp), passes=f"{fwd}/{bwd}",
                      epoch=int(frac * EPOCHS))
            for _ in range(2):
                t1 = time.perf_counter()
                row.run()
                sync(suite.device)
            warmed.estimate[label] = time.perf_counter() - t1
            warmed.meta[label] = {"setting": s["label"], "method": spec, "batch": s["batch"],
                                  "model": s["stands_for"], "image_px": s["px"]}
            new_rows.append(row)
    except Exception as e:
        suite.error(name, e)
        return
    warmed.rows += new_rows
    warmed.settings.append(s["label"])
    suite.record(name, "ran", time.perf_counter() - t0, f"{len(new_rows)} rows warmed up")


def _time(suite: Suite, warmed: _Warmed) -> list[dict[str, Any]]:
    """Plan rounds x steps into what is left (35% kept for the profile and slack), time, tabulate."""
    rows = warmed.rows
    per_round = sum(warmed.estimate[r.label] for r in rows)
    left = suite.budget.left() * 0.65
    steps = 1 if suite.smoke else max(1, min(10, int(left / (5 * per_round))))
    rounds = 1 if suite.smoke else max(1, min(5, int(left / (steps * per_round))))
    while not suite.smoke and len(rows) > 2 and rounds * steps * per_round > left:
        dropped = rows.pop()
        per_round -= warmed.estimate[dropped.label]
        suite.skip(f"speed row {dropped.label}", "budget: dropped before timing")
    suite.log(f"speed: timing {len(rows)} rows, {rounds} rounds x {steps} steps (~{rounds * steps * per_round:.0f} s)")
    bar = tqdm(total=rounds, desc="speed: rounds", leave=False, disable=None)

    def log(msg: str) -> None:
        if msg.strip().startswith("round"):
            bar.update(1)

    t0 = time.perf_counter()
    times = time_rows(rows, steps=steps, warmup=0, rounds=rounds, device=suite.device, log=log)
    bar.close()
    table = []
    for row in rows:
        med = statistics.median(times[row.label])
        m = warmed.meta[row.label]
        table.append({**m, "passes": row.passes, "run_epoch": row.epoch, "ms_per_step": 1000 * med,
                      "img_per_s": m["batch"] / med, "s_per_50k_epoch": EPOCH_IMAGES * med / m["batch"],
                      "spread": (max(times[row.label]) - min(times[row.label])) / med})
    by_setting: dict[str, dict] = {}
    for r in table:
        by_setting.setdefault(r["setting"], {})[r["method"]] = r
    for rs in by_setting.values():
        base = rs.get("pgd_at")
        for r in rs.values():
            r["vs_pgd_at"] = r["ms_per_step"] / base["ms_per_step"] if base else None
    suite.speed.update(rows=table, rounds=rounds, steps=steps, settings=warmed.settings)
    suite.record("speed timing", "ran", time.perf_counter() - t0, f"{len(rows)} rows, median of {rounds} "
                 f"interleaved rounds x {steps} steps")
    return table


def targets(suite: Suite, table: list[dict]) -> list[dict]:
    """Each target against the fastest measured setting of the main model at the small batch."""
    small = suite.scale.batches[0]
    cand = [r for r in table if r["batch"] == small and r["model"] == FULL.model]
    out = []

    def best(method):
        rs = [r for r in cand if r["method"] == method]
        return min(rs, key=lambda r: r["s_per_50k_epoch"]) if rs else None

    for method, target in EPOCH_TARGETS:
        r = best(method)
        if r:
            out.append({"target": f"{method} <= {target:g} s per 50,000-image epoch", "method": method,
                        "value": r["s_per_50k_epoch"], "setting": r["setting"], "met": r["s_per_50k_epoch"] <= target})
    for method, ref, target in RATIO_TARGETS:
        ratios = [(r["vs_pgd_at"], r["setting"]) for r in cand if r["method"] == method and r.get("vs_pgd_at")]
        if ratios:
            ratio, setting = min(ratios)
            out.append({"target": f"{method} / {ref} <= {target:.2f}", "method": method, "value": ratio,
                        "setting": setting, "met": ratio <= target})
    return out


def _profile(suite: Suite, missed: list[dict], warmed: _Warmed) -> None:
    """Where the time of a missed target's step goes: top kernels, data loading, host syncs."""
    wanted = [(t["method"], t["setting"]) for t in missed] or [("pgd_at", suite.speed["settings"][0])]
    if suite.smoke:  # the code path once
        wanted = wanted[:1]
    for method, setting in dict.fromkeys(wanted):
        label = f"{setting} | {method}"
        row = next((r for r in warmed.rows if r.label == label), None)
        name = f"profile {label}"
        if row is None or not suite.fits(name, 3 if suite.smoke else 20):
            continue
        t0 = time.perf_counter()
        try:
            kernels = _top_kernels(suite, row)
            load_s = _load_seconds(suite, warmed.meta[label]["batch"])
            step_s = next(r["ms_per_step"] for r in suite.speed["rows"] if r["setting"] == setting
                          and r["method"] == method) / 1000
        except Exception as e:
            suite.error(name, e, time.perf_counter() - t0)
            continue
        suite.record(name, "ran", time.perf_counter() - t0,
                     f"top: {kernels[0]['name']} {100 * kernels[0]['share']:.0f}%; data loading "
                     f"{100 * load_s / (load_s + step_s):.1f}% of a step; host syncs per step: "
                     f"{suite.sync_counts.get(method, 'not measured')}",
                     top_kernels=kernels, load_s_per_batch=load_s, step_s=step_s,
                     host_syncs_per_step=suite.sync_counts.get(method))


def _top_kernels(suite: Suite, row: Row) -> list[dict[str, Any]]:
    """The ten ops / kernels with the most self time (device time on CUDA) over a few steps."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if suite.cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(1 if suite.smoke else 3):
            row.run()
        sync(suite.device)
    key = "self_device_time_total" if suite.cuda else "self_cpu_time_total"
    avgs = prof.key_averages()
    total = sum(getattr(e, key, 0) for e in avgs) or 1
    top = sorted(avgs, key=lambda e: getattr(e, key, 0), reverse=True)[:10]
    return [{"name": e.key[:90], "self_ms": getattr(e, key, 0) / 1000, "share": getattr(e, key, 0) / total,
             "calls": e.count} for e in top]


def _load_seconds(suite: Suite, batch_size: int) -> float:
    """Seconds per batch of the trainer's loader (augmented), over up to 5 batches."""
    images, labels = load_split(DATASET, "train")
    loader = DeviceLoader(images, labels, batch_size, augment=True, drop_last=True, seed=0, device=suite.device)
    loader.set_epoch(0)
    it, n = iter(loader), min(5, len(loader))
    sync(suite.device)
    t1 = time.perf_counter()
    for _ in range(n):
        next(it)
    sync(suite.device)
    return (time.perf_counter() - t1) / n
