"""Evaluate finished runs and collect a table's results (``results.json`` / ``results.md``).

Each finished run is evaluated on the checkpoint its ``summary.json`` names (``best.pt``, the
trainer's choice; EMA weights when on) through :func:`robustrain.eval.evaluate_checkpoint`,
one attack at a time, each cached in the run folder's ``reproduce-eval.json`` under
``ATTACK|eps=...|n=...|CHECKPOINT@EPOCH`` as soon as it is done, so an interrupted evaluation
continues with the next attack. The epoch-time column is the run's mean training seconds per
epoch (:func:`robustrain.eval.figures.timing.mean_epoch_time`, the rule of UIAT Table 2).

Every accuracy column is measured on the same images (the plan's ``eval_n``: the first N test
images, 0 = all). Each cache entry keeps which images the attack failed on (``correct``: a
hex bit string, :func:`encode_mask`), so the ``worst`` column (per image, correct under every
evaluated attack, natural included) is computed from the cache, also after an interruption; an
entry without it (written by an older version) is evaluated again when evaluations are run.

For each row with a baseline (the table's PGD-AT / SAT row), every accuracy column also gets
the paired difference to the baseline over the seeds both rows finished, with its 95% t-interval
(:func:`robustrain.reproduce.stats.paired_difference`).

Example:
    >>> _eval_key("pgd20", 8 / 255, 256, "best.pt", 3)
    'pgd20|eps=0.03137255|n=256|best.pt@3'
    >>> import torch
    >>> encode_mask(torch.tensor([True, False, False, True, True, False, False, False, True]))
    '1901'
    >>> decode_mask("1901", 9).int().tolist()
    [1, 0, 0, 1, 1, 0, 0, 0, 1]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from robustrain.artifacts import RunDir, load_model
from robustrain.data import load_split
from robustrain.eval import build_eval_attacks, describe_protocol, evaluate_checkpoint
from robustrain.eval.figures.timing import mean_epoch_time
from robustrain.reproduce.plan import Plan, RunSpec, describe_images
from robustrain.reproduce.scale import MINI_EPOCHS
from robustrain.reproduce.stats import paired_difference
from robustrain.reproduce.summary import cell, paired_cell, ratio_cell, render_markdown, write_atomic
from robustrain.reproduce.tables import Row, Table
from robustrain.utils.runtime import resolve_device

__all__ = ["EVAL_FILE", "collect_results", "decode_mask", "encode_mask", "worst_case"]

#: the per-run cache of the harness's evaluations, in the run folder
EVAL_FILE = "reproduce-eval.json"
#: the AutoAttack resume state of the harness's evaluations, in the run folder
AA_STATE_DIR = "reproduce-aa"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _eval_key(attack: str, eps: float, n: int, checkpoint: str, epoch: int) -> str:
    return f"{attack}|eps={eps:.8f}|n={n}|{checkpoint}@{epoch}"


def encode_mask(mask: torch.Tensor | list[bool]) -> str:
    """Per-image flags as a compact hex string: image i is bit ``i % 8`` of byte ``i // 8``
    (2 hex digits per 8 images; 10,000 images -> 2,500 characters)."""
    bits = [bool(b) for b in (mask.tolist() if isinstance(mask, torch.Tensor) else mask)]
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i >> 3] |= 1 << (i & 7)
    return out.hex()


def decode_mask(text: str, n: int) -> torch.Tensor:
    """The bool tensor of ``n`` flags that :func:`encode_mask` wrote.

    Raises:
        ValueError: ``text`` is not hex or holds another number of images.
    """
    data = bytes.fromhex(text)
    if len(data) != (n + 7) // 8 or (n % 8 and data and data[-1] >> (n % 8)):
        raise ValueError(f"a per-image mask of {len(data)} bytes does not hold {n} images")
    return torch.tensor([bool(data[i >> 3] >> (i & 7) & 1) for i in range(n)], dtype=torch.bool)


def worst_case(masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per image: correct under every attack of ``masks`` (attack -> per-image correct flags,
    all on the same images), the per-image worst case; its mean is at most every attack's
    accuracy.

    Raises:
        ValueError: no masks, or masks of different lengths (not the same images).

    Example:
        >>> worst_case({"natural": torch.tensor([True, True, False]),
        ...             "pgd20": torch.tensor([True, False, False])}).tolist()
        [True, False, False]
    """
    if not masks:
        raise ValueError("the worst case needs at least one attack's per-image results")
    sizes = {int(m.numel()) for m in masks.values()}
    if len(sizes) != 1:
        raise ValueError(f"per-image results on different numbers of images {sorted(sizes)}: not the same images")
    out = torch.ones(sizes.pop(), dtype=torch.bool)
    for m in masks.values():
        out &= m.bool().reshape(-1)
    return out


def _entry_mask(entry: Mapping[str, Any] | None) -> torch.Tensor | None:
    """The per-image flags of a cache entry, None when it has none (an older entry) or they do
    not agree with its accuracy."""
    if not entry or not isinstance(entry.get("correct"), str):
        return None
    try:
        mask = decode_mask(entry["correct"], int(entry["n"]))
    except (KeyError, TypeError, ValueError):
        return None
    if abs(float(mask.sum()) - float(entry["accuracy"]) * mask.numel()) > 1e-6 * max(mask.numel(), 1):
        return None
    return mask


def _epoch_time(run: RunDir) -> float | None:
    """Mean training time per epoch (s), the first epoch (warm-up) left out when there are more
    (:func:`robustrain.eval.figures.timing.mean_epoch_time`); None without readable metrics."""
    if not run.metrics.exists():
        return None
    try:
        records = run.read_metrics()
    except (OSError, ValueError):
        return None
    return mean_epoch_time(records)


@dataclass
class _SeedResult:
    """What one seed of a row gives the table."""

    values: dict[str, float] = field(default_factory=dict)
    n_images: int | None = None
    selection: str | None = None


def _selection_text(summary: Mapping[str, Any]) -> str | None:
    """The run's model-selection statement (``summary.json``'s ``selection``: a string, or a
    dict with a ``text`` / ``description`` or plain key-value pairs)."""
    sel = summary.get("selection")
    if sel is None:
        return None
    if isinstance(sel, Mapping):
        for key in ("text", "description", "protocol", "summary"):
            if isinstance(sel.get(key), str):
                return sel[key]
        return ", ".join(f"{k}={v}" for k, v in sel.items())
    return str(sel)


def _worst_sources(plan: Plan) -> list[str]:
    """The attacks the ``worst`` column is taken over: every evaluated attack column."""
    return [a for a in plan.attacks]


def _seed_result(plan: Plan, row: Row, spec: RunSpec, *, compute: bool, progress: bool,
                 say: Callable[[str], None]) -> _SeedResult:
    run = RunDir(spec.train_dir)
    summary = _read_json(run.summary)
    if summary is None:
        return _SeedResult()
    out = _SeedResult(selection=_selection_text(summary))
    checkpoint, epoch = summary["checkpoint"], int(summary["checkpoint_epoch"])
    cache = _read_json(run.path / EVAL_FILE) or {"entries": {}}

    def key(attack: str) -> str:
        return _eval_key(attack, row.eps, plan.eval_n, checkpoint, epoch)

    # an entry without per-image results (an older version's) is evaluated again: the worst case needs them
    missing = [a for a in plan.attacks if _entry_mask(cache["entries"].get(key(a))) is None]
    if missing and compute:
        _evaluate(plan, row, spec, missing, checkpoint, epoch, cache, progress=progress, say=say)
    masks: dict[str, torch.Tensor] = {}
    for col in plan.table.columns:
        if col.is_attack and col.source in plan.attacks:
            hit = cache["entries"].get(key(col.source))
            if hit is not None:
                out.values[col.key] = 100.0 * hit["accuracy"]
                out.n_images = int(hit["n"])
        elif col.source == "epoch_time":
            t = _epoch_time(run)
            if t is not None:
                out.values[col.key] = t / 60 if col.unit == "min" else t
    for attack in _worst_sources(plan):
        mask = _entry_mask(cache["entries"].get(key(attack)))
        if mask is not None:
            masks[attack] = mask
    worst_cols = [c for c in plan.table.columns if c.source == "worst"]
    if worst_cols and masks and len(masks) == len(_worst_sources(plan)):
        try:
            worst = worst_case(masks)
        except ValueError:  # entries of different image counts: no worst case from them
            worst = None
        if worst is not None:
            for c in worst_cols:
                out.values[c.key] = 100.0 * float(worst.sum()) / max(worst.numel(), 1)
    return out


def _seed_values(plan: Plan, row: Row, spec: RunSpec, *, compute: bool, progress: bool,
                 say: Callable[[str], None]) -> dict[str, float]:
    """The row's column values for one seed (accuracy in %, time in the column's unit); with
    ``compute`` the missing attack evaluations are run and cached first."""
    return _seed_result(plan, row, spec, compute=compute, progress=progress, say=say).values


def _evaluate(plan: Plan, row: Row, spec: RunSpec, attacks: list[str], checkpoint: str, epoch: int,
              cache: dict[str, Any], *, progress: bool, say: Callable[[str], None]) -> None:
    """Evaluate ``attacks`` on the run's ``checkpoint`` (of ``epoch``, as its summary says), all on
    the same first ``plan.eval_n`` test images, and add them with their per-image results to
    ``cache``, writing the cache after each attack."""
    run = RunDir(spec.train_dir)
    cfg = spec.cfg
    device = resolve_device(cfg.train.device)
    x, y = load_split(cfg.data.name, "test", root=cfg.data.root)
    batch = plan.options.eval_batch_size or cfg.data.eval_batch_size
    n = min(plan.eval_n or int(x.shape[0]), int(x.shape[0]))
    loaded = load_model(run.path / checkpoint, device)  # once for every attack of the run
    for attack in attacks:
        say(f"{spec.label}: evaluating {attack} on {describe_images(plan.eval_n, int(x.shape[0]))} "
            f"({checkpoint}, epoch {epoch})")
        t0 = time.perf_counter()
        record = evaluate_checkpoint(run.path / checkpoint, x[:n], y[:n], [attack], device=device, eps=row.eps,
                                     batch_size=batch, seed=cfg.seed, progress=progress, per_image=True, loaded=loaded,
                                     aa_state=run.path / AA_STATE_DIR if attack.startswith("aa") else None)
        loaded, res = record.loaded, record.result
        cache["entries"][_eval_key(attack, row.eps, plan.eval_n, checkpoint, int(loaded.epoch))] = {
            "attack": attack, "accuracy": res.accuracy[attack], "n": n, "eps": row.eps, "checkpoint": checkpoint,
            "epoch": loaded.epoch, "weights": loaded.weights, "protocol": res.protocol,
            "flags": list(res.flags.get(attack, ())), "time_s": time.perf_counter() - t0,
            "correct": encode_mask(res.correct[attack]),
        }
        for flag in res.flags.get(attack, ()):
            say(f"{spec.label}: AutoAttack flag: {flag}")
        write_atomic(run.path / EVAL_FILE, json.dumps(cache, indent=2))  # each attack is kept once done


def _protocols(plan: Plan) -> list[str]:
    if not plan.attacks:
        return []
    eps_values = sorted({rp.row.eps for rp in plan.rows})
    return [describe_protocol(build_eval_attacks(list(plan.attacks), eps=e)) for e in eps_values]


#: what the notes say when no run states its model selection (runs of an older version)
DEFAULT_SELECTION = "best PGD-20 on the trainer's held-out subset (eval.n images)"


def _selection_note(plan: Plan, selections: Mapping[str, list[str]]) -> str:
    """Which data chose each run's checkpoint (from the runs' ``summary.json``)."""
    distinct: dict[str, list[str]] = {}
    for row_id, texts in selections.items():
        for t in texts:
            rows = distinct.setdefault(t, [])
            if row_id not in rows:
                rows.append(row_id)
    if not distinct:
        what = DEFAULT_SELECTION + " (no finished run states it yet)"
    elif len(distinct) == 1:
        what = next(iter(distinct))
    else:
        what = "differs between runs: " + "; ".join(f"{t} ({', '.join(r)})" for t, r in distinct.items())
    return ("model selection: the checkpoint each run's summary.json names (best.pt, the trainer's choice; EMA "
            f"weights when on), selected by {what}")


def _notes(plan: Plan, *, n_images: set[int] | None = None, selections: Mapping[str, list[str]] | None = None
           ) -> list[str]:
    p = plan
    notes = [f"scale {p.scale.name}: {p.scale.help}"]
    if p.scale.mini:
        epochs = p.table.mini_epochs or MINI_EPOCHS
        if any(rp.row.paper for rp in p.rows):
            notes.append("mini numbers are a CPU-sized analogue of the paper's setting (small_cnn, cifar10-mini, "
                         f"<= {epochs} epochs): Δ shows the gap to the paper, it is not a reproduction error")
        else:
            notes.append(f"mini numbers (small_cnn, cifar10-mini, {epochs} epochs) compare the rows with each "
                         "other at this scale; no published number is compared")
    if p.table.note:
        notes.append(p.table.note)
    notes.append(f"seeds 0..{p.options.seeds - 1}: mean ± sample std over the finished seeds")
    notes.append(_selection_note(plan, selections or {}))
    if p.attacks:
        n_split = None
        if n_images and len(n_images) == 1 and not p.eval_n:
            n_split = next(iter(n_images))
        where = describe_images(p.eval_n, n_split)
        if p.eval_n:
            where += " (a subset, the same for every column)"
        notes.append(f"image set: every accuracy column ({', '.join(p.attacks)}"
                     + (", worst" if any(c.source == "worst" for c in p.table.columns) else "")
                     + f") is measured on the same images: {where}"
                     + (f"; runs differ in image count: {sorted(n_images)}" if n_images and len(n_images) > 1 else ""))
        if any(c.source == "worst" for c in p.table.columns):
            notes.append(f"worst: per image, correct under every one of {', '.join(_worst_sources(p))} (an image "
                         "counts as robust only when every attack failed on it); no published number")
    if any(rp.row.baseline for rp in p.rows):
        notes.append("paired difference to the baseline row (same table, same seeds): mean of the per-seed "
                     "differences ± the half-width of its 95% t-interval, t_{0.975, n-1} · sd / √n over the n "
                     "seeds both rows finished (n=1: no interval)")
    skipped_attacks = [c.source for c in p.table.columns if c.is_attack and c.source not in p.attacks]
    if skipped_attacks:
        notes.append(f"not evaluated in this run (--attacks): {', '.join(skipped_attacks)}")
    if p.options.sets:
        notes.append("extra overrides (--set): " + " ".join(p.options.sets))
    return notes


def _paired(plan: Plan, rp_row: Row, seeds_by_row: Mapping[str, Mapping[int, Mapping[str, float]]]
            ) -> tuple[dict[str, Any], str]:
    """The paired differences of a row to its baseline, per accuracy column, and a note."""
    base_id = rp_row.baseline
    if base_id is None:
        return {}, ""
    if base_id not in seeds_by_row:
        return {}, f"baseline {base_id} not in this run (--only): no paired difference"
    mine, base = seeds_by_row[rp_row.id], seeds_by_row[base_id]
    out: dict[str, Any] = {}
    for c in plan.table.columns:
        if not (c.is_accuracy and (c.source == "worst" or c.source in plan.attacks)):
            continue
        seeds = sorted(s for s in mine if s in base and c.key in mine[s] and c.key in base[s])
        out[c.key] = paired_cell([mine[s][c.key] for s in seeds], [base[s][c.key] for s in seeds],
                                 baseline=base_id, seeds=seeds)
    return out, ""


def collect_results(plan: Plan, *, compute: bool = False, progress: bool = False,
                    say: Callable[[str], None] = lambda s: None,
                    failures: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The results dict of ``plan`` (what ``results.json`` holds) from the run folders.

    Every row gets, per column, the cell over its finished seeds (mean ± sample std, the
    paper's number, the difference); a row with a baseline (``Row.baseline``) also gets
    ``paired``: per accuracy column the paired difference to the baseline over the seeds both
    finished, with its 95% t-interval (:func:`robustrain.reproduce.summary.paired_cell`).

    Args:
        compute: run the missing evaluations of finished runs first (else report what exists).
        failures: row id -> error message of a run that failed in this invocation.
    """
    failures = failures or {}
    out_rows = []
    cells_by_row: dict[str, dict[str, Any]] = {}
    seeds_by_row: dict[str, dict[int, dict[str, float]]] = {}
    selections: dict[str, list[str]] = {}
    n_images: set[int] = set()
    wanted = [c.key for c in plan.table.columns
              if c.source == "epoch_time" or (c.is_attack and c.source in plan.attacks)
              or (c.source == "worst" and plan.attacks)]
    for rp in plan.rows:
        row = rp.row
        per_seed: dict[int, dict[str, float]] = {}
        for seed, spec in enumerate(rp.runs):
            res = _seed_result(plan, row, spec, compute=compute, progress=progress, say=say)
            per_seed[seed] = res.values
            if res.selection:
                selections.setdefault(row.id, []).append(res.selection)
            if res.n_images is not None:
                n_images.add(res.n_images)
        complete = {s: v for s, v in per_seed.items() if all(k in v for k in wanted)}
        if rp.skip is None:
            seeds_by_row[row.id] = complete
        cells = {c.key: cell([v[c.key] for v in complete.values() if c.key in v], row.paper.get(c.key))
                 for c in plan.table.columns if c.source != "ratio"}
        cells_by_row[row.id] = cells
        notes = [n for n in (rp.note,) if n]
        if rp.skip:
            notes.append(rp.skip)
        elif row.id in failures:
            notes.append(f"failed: {failures[row.id]}")
        elif len(complete) < len(rp.runs):
            notes.append(f"pending: {len(complete)}/{len(rp.runs)} seeds done")
        shared = {s.owner.label.rsplit(' seed', 1)[0] for s in rp.runs if s.owner is not None}
        shared |= {str(s.found) for s in rp.runs if s.found is not None and s.owner is None}
        if shared:
            notes.append("same run as " + ", ".join(sorted(shared)))
        out_rows.append({"id": row.id, "label": row.label, "config": row.config, "seeds": len(complete),
                         "seed_ids": sorted(complete), "seeds_planned": len(rp.runs),
                         "status": "skipped" if rp.skip else (
                             "done" if rp.runs and len(complete) == len(rp.runs) else "pending"),
                         "note": "; ".join(notes), "run_dirs": [str(s.train_dir) for s in rp.runs],
                         "baseline": row.baseline, "cells": cells, "paired": {}})
    for entry, rp in zip(out_rows, plan.rows):
        if rp.skip is None:
            paired, note = _paired(plan, rp.row, seeds_by_row)
            entry["paired"] = paired
            if note:
                entry["note"] = "; ".join(n for n in (entry["note"], note) if n)
        for c in plan.table.columns:
            if c.source != "ratio":
                continue
            ref = cells_by_row.get(rp.row.ref or "")
            if ref is None:
                entry["cells"][c.key] = ratio_cell({}, {})
                entry["cells"][c.key]["paper"] = _paper_ratio(plan.table, rp.row, c.ratio_of)
                continue
            entry["cells"][c.key] = ratio_cell(entry["cells"][c.ratio_of], ref[c.ratio_of])
    return {
        "table": plan.table.name,
        "title": plan.table.title,
        "scale": plan.scale.name,
        "seeds": list(range(plan.options.seeds)),
        "eval_n": plan.eval_n,
        "image_set": describe_images(plan.eval_n, next(iter(n_images)) if len(n_images) == 1 and not plan.eval_n
                                     else None),
        "notes": _notes(plan, n_images=n_images, selections=selections),
        "protocol": _protocols(plan),
        "columns": [{"key": c.key, "label": c.label, "unit": c.unit, "source": c.source}
                    for c in plan.table.columns],
        "rows": out_rows,
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _paper_ratio(table: Table, row: Row, key: str | None) -> float | None:
    try:
        ref = table.row(row.ref or "")
    except KeyError:
        return None
    num, den = row.paper.get(key or ""), ref.paper.get(key or "")
    return num / den if num is not None and den else None


def _write(plan: Plan, result: dict[str, Any]) -> tuple[Path, Path]:
    md = write_atomic(plan.table_dir / "results.md", render_markdown(result))
    js = write_atomic(plan.table_dir / "results.json", json.dumps(result, indent=2))
    return md, js


