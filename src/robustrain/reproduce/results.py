"""Evaluate finished runs and collect a table's results (``results.json`` / ``results.md``).

Each finished run is evaluated on the checkpoint its ``summary.json`` names (``best.pt``, the
trainer's choice; EMA weights when on) through :func:`robustrain.eval.evaluate_checkpoint`,
one attack at a time, each cached in the run folder's ``reproduce-eval.json`` under
``ATTACK|eps=...|n=...|CHECKPOINT@EPOCH`` as soon as it is done, so an interrupted evaluation
continues with the next attack. The epoch-time column is the run's mean training seconds per
epoch (:func:`robustrain.eval.figures.mean_epoch_time`, the rule of UIAT Table 2).

Example:
    >>> _eval_key("pgd20", 8 / 255, 256, "best.pt", 3)
    'pgd20|eps=0.03137255|n=256|best.pt@3'
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from robustrain.artifacts import RunDir
from robustrain.data import load_split
from robustrain.eval import build_eval_attacks, describe_protocol, evaluate_checkpoint
from robustrain.eval.figures import mean_epoch_time
from robustrain.reproduce.plan import Plan, RunSpec
from robustrain.reproduce.summary import cell, ratio_cell, render_markdown, write_atomic
from robustrain.reproduce.tables import Row, Table
from robustrain.utils.runtime import resolve_device

__all__ = ["EVAL_FILE", "collect_results"]

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


def _epoch_time(run: RunDir) -> float | None:
    """Mean training time per epoch (s), the first epoch (warm-up) left out when there are more
    (:func:`robustrain.eval.figures.mean_epoch_time`); None without readable metrics."""
    if not run.metrics.exists():
        return None
    try:
        records = run.read_metrics()
    except (OSError, ValueError):
        return None
    return mean_epoch_time(records)


def _seed_values(plan: Plan, row: Row, spec: RunSpec, *, compute: bool, progress: bool,
                 say: Callable[[str], None]) -> dict[str, float]:
    """The row's column values for one seed (accuracy in %, time in the column's unit); with
    ``compute`` the missing attack evaluations are run and cached first."""
    run = RunDir(spec.train_dir)
    summary = _read_json(run.summary)
    if summary is None:
        return {}
    checkpoint, epoch = summary["checkpoint"], int(summary["checkpoint_epoch"])
    cache = _read_json(run.path / EVAL_FILE) or {"entries": {}}
    size = {a: (plan.aa_n if a.startswith("aa") else plan.eval_n) for a in plan.attacks}
    missing = [a for a in plan.attacks
               if _eval_key(a, row.eps, size[a], checkpoint, epoch) not in cache["entries"]]
    if missing and compute:
        _evaluate(plan, row, spec, missing, size, checkpoint, epoch, cache, progress=progress, say=say)
    values: dict[str, float] = {}
    for col in plan.table.columns:
        if col.is_attack and col.source in plan.attacks:
            hit = cache["entries"].get(_eval_key(col.source, row.eps, size[col.source], checkpoint, epoch))
            if hit is not None:
                values[col.key] = 100.0 * hit["accuracy"]
        elif col.source == "epoch_time":
            t = _epoch_time(run)
            if t is not None:
                values[col.key] = t / 60 if col.unit == "min" else t
    return values


def _evaluate(plan: Plan, row: Row, spec: RunSpec, attacks: list[str], size: dict[str, int], checkpoint: str,
              epoch: int, cache: dict[str, Any], *, progress: bool, say: Callable[[str], None]) -> None:
    """Evaluate ``attacks`` on the run's ``checkpoint`` (of ``epoch``, as its summary says) and
    add them to ``cache``, writing the cache after each attack."""
    run = RunDir(spec.train_dir)
    cfg = spec.cfg
    device = resolve_device(cfg.train.device)
    x, y = load_split(cfg.data.name, "test", root=cfg.data.root)
    batch = plan.options.eval_batch_size or cfg.data.eval_batch_size
    for attack in attacks:
        n = size[attack] or int(x.shape[0])
        n = min(n, int(x.shape[0]))
        say(f"{spec.label}: evaluating {attack} on {n} test images ({checkpoint}, epoch {epoch})")
        t0 = time.perf_counter()
        record = evaluate_checkpoint(run.path / checkpoint, x[:n], y[:n], [attack], device=device, eps=row.eps,
                                     batch_size=batch, seed=cfg.seed, progress=progress,
                                     aa_state=run.path / AA_STATE_DIR if attack.startswith("aa") else None)
        loaded, res = record.loaded, record.result
        cache["entries"][_eval_key(attack, row.eps, size[attack], checkpoint, int(loaded.epoch))] = {
            "attack": attack, "accuracy": res.accuracy[attack], "n": n, "eps": row.eps, "checkpoint": checkpoint,
            "epoch": loaded.epoch, "weights": loaded.weights, "protocol": res.protocol,
            "flags": list(res.flags.get(attack, ())), "time_s": time.perf_counter() - t0,
        }
        for flag in res.flags.get(attack, ()):
            say(f"{spec.label}: AutoAttack flag: {flag}")
        write_atomic(run.path / EVAL_FILE, json.dumps(cache, indent=2))  # each attack is kept once done


def _protocols(plan: Plan) -> list[str]:
    if not plan.attacks:
        return []
    eps_values = sorted({rp.row.eps for rp in plan.rows})
    return [describe_protocol(build_eval_attacks(list(plan.attacks), eps=e)) for e in eps_values]


def _notes(plan: Plan) -> list[str]:
    p = plan
    sizes = []
    if any(not a.startswith("aa") for a in p.attacks):
        sizes.append(f"{', '.join(a for a in p.attacks if not a.startswith('aa'))} on "
                     + (f"the first {p.eval_n}" if p.eval_n else "all") + " test images")
    if any(a.startswith("aa") for a in p.attacks):
        sizes.append("AutoAttack on " + (f"the first {p.aa_n}" if p.aa_n else "all") + " test images")
    notes = [f"scale {p.scale.name}: {p.scale.help}"]
    if p.scale.mini:
        notes.append("mini numbers are a CPU-sized analogue of the paper's setting (small_cnn, cifar10-mini, "
                     "<= 4 epochs): Δ shows the gap to the paper, it is not a reproduction error")
    if p.table.note:
        notes.append(p.table.note)
    notes.append(f"seeds 0..{p.options.seeds - 1}: mean ± sample std over the finished seeds; weights: best.pt "
                 "(best PGD-20 on the held-out subset, the trainer's choice; EMA when on)"
                 + ("; evaluation: " + "; ".join(sizes) if sizes else ""))
    skipped_attacks = [c.source for c in p.table.columns if c.is_attack and c.source not in p.attacks]
    if skipped_attacks:
        notes.append(f"not evaluated in this run (--attacks): {', '.join(skipped_attacks)}")
    if p.options.sets:
        notes.append("extra overrides (--set): " + " ".join(p.options.sets))
    return notes


def collect_results(plan: Plan, *, compute: bool = False, progress: bool = False,
                    say: Callable[[str], None] = lambda s: None,
                    failures: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The results dict of ``plan`` (what ``results.json`` holds) from the run folders.

    Args:
        compute: run the missing evaluations of finished runs first (else report what exists).
        failures: row id -> error message of a run that failed in this invocation.
    """
    failures = failures or {}
    out_rows = []
    cells_by_row: dict[str, dict[str, Any]] = {}
    for rp in plan.rows:
        row = rp.row
        per_seed = []
        for spec in rp.runs:
            per_seed.append(_seed_values(plan, row, spec, compute=compute, progress=progress, say=say))
        wanted = [c.key for c in plan.table.columns
                  if c.source == "epoch_time" or (c.is_attack and c.source in plan.attacks)]
        complete = [v for v in per_seed if all(k in v for k in wanted)]
        cells = {c.key: cell([v[c.key] for v in complete if c.key in v], row.paper.get(c.key))
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
                         "seeds_planned": len(rp.runs), "status": "skipped" if rp.skip else (
                             "done" if rp.runs and len(complete) == len(rp.runs) else "pending"),
                         "note": "; ".join(notes), "run_dirs": [str(s.train_dir) for s in rp.runs],
                         "cells": cells})
    for entry, rp in zip(out_rows, plan.rows):
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
        "notes": _notes(plan),
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


