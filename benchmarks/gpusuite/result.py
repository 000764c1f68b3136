"""Part 3, result: the library's ``study`` reproduce table, run with the suite's overrides.

Rows, configs, evaluation and statistics are :mod:`robustrain.reproduce`'s, not a copy:
:func:`~robustrain.reproduce.build_plan` plans the ``study`` table at mini scale (cifar10-mini,
batch 128, each row's CIFAR-10 / ResNet-18 preset) with the suite's ``--set`` overrides on top
(``model=resnet18``, ``train.device=cuda``, ``train.epochs`` from the budget; ``--smoke``: the
toy sizes of :data:`gpusuite.budget.SMOKE` on the CPU), :func:`~robustrain.reproduce.run_plan`
trains and evaluates (natural, PGD-20, CW30 and the per-image worst case, every column on the
same test images), and :func:`~robustrain.reproduce.collect_results` gives the table: mean ±
sample std per row and each row's paired difference to ``pgd_at`` with the 95% t-interval of
:mod:`robustrain.reproduce.stats`.

Runs go seed by seed (every row of seed 0 first, so that a short budget still leaves complete
pairs): each is one ``run_plan`` call of one row with ``seeds = k + 1`` (the earlier seeds are
found finished and reused), behind a budget check; a row skipped once is skipped for its later
seeds too (its plan would otherwise train the missing seed as well).

Differences to the suite's former own copy of the study:

* rows: the study's ``pgd_at``, ``trades``, ``uiat``, ``uiat_oneoff``, ``pgd_at+awp``,
  ``trades+awp``; the former ``uiat`` with ``method.detach_target=false`` is not a study row and
  is dropped (run it with ``robustrain reproduce`` ``--set method.detach_target=false``);
* configs: each row's CIFAR-10 / ResNet-18 preset at mini scale (not the ``configs/mini``
  small_cnn presets with ``model=resnet18``);
* checkpoint: the one the run's ``summary.json`` names (``best.pt``); with ``eval.every``
  = the number of epochs that is the last epoch's weights, as before;
* numbers are in percent (the table's unit), and the table also has the ``worst`` column.

The paired fp32 vs bf16 ``pgd_at`` run (seed 0) is kept: the same row planned with
``train.bf16=true`` into its own output folder.
"""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm

from robustrain.reproduce import ReproduceOptions, TABLES, build_plan, collect_results, run_plan

from .suite import REPO, Suite

__all__ = ["TABLE", "BASELINE", "run_result", "study_options"]

TABLE = "study"
BASELINE = "pgd_at"
#: training steps per epoch of a mini run (5,085 images, batch 128) and what a run costs besides
STEPS_PER_EPOCH = 5085 // 128
OVERHEAD_S = {"smoke": 2.0, "full": 6.0}  # build, cuDNN autotune, the three evaluations, files


def study_options(suite: Suite, seeds: int, epochs: int, *, only: tuple[str, ...] = (),
                  bf16: bool = False) -> ReproduceOptions:
    """The reproduce options of the suite's study runs: mini scale plus the suite's overrides."""
    sets = [*suite.scale.result_overrides, f"train.device={suite.device.type}", f"train.epochs={epochs}",
            f"eval.every={epochs}"]  # held-out selection once, at the end: best.pt = the last epoch
    if bf16:
        sets.append("train.bf16=true")
    out = suite.work / ("result-bf16" if bf16 else "result")
    return ReproduceOptions(scale="mini", seeds=seeds, only=only, out=out, sets=tuple(sets),
                            eval_n=suite.scale.eval_n)


def reproduce_command(options: ReproduceOptions) -> str:
    """The ``robustrain reproduce`` command line of ``options`` (what a person would type)."""
    only = f" --only {','.join(options.only)}" if options.only else ""
    return (f"robustrain reproduce {TABLE} --scale {options.scale} --seeds {options.seeds}{only} "
            f"--eval-n {options.eval_n} --out {options.out} " + " ".join(f"--set {s}" for s in options.sets))


def _epoch_costs(suite: Suite, rows: list[str]) -> dict[str, float]:
    """Seconds per training epoch of each row: from part 2's first setting when it was timed
    (rows it does not time by name cost as ``uiat``), else a guess."""
    speed = suite.speed
    first = (speed.get("settings") or [""])[0]
    step = {r["method"]: r["ms_per_step"] / 1000 for r in speed.get("rows", []) if r["setting"] == first}
    if not step:
        return {row: 2.0 for row in rows}
    return {row: STEPS_PER_EPOCH * step.get(row, step.get("uiat", 0.05)) * 1.15 for row in rows}


def _plan_epochs(suite: Suite, n_runs: int, cost_one: float, overhead: float) -> int:
    """``--epochs``, 1 in the smoke run, else as many (1..30) as fit into what part 3 has left."""
    if suite.args.epochs:
        return suite.args.epochs
    if suite.smoke or not cost_one:
        return 1
    return max(1, min(int((suite.budget.left() - overhead * n_runs) / cost_one), 30))


def _seed_values(row: dict[str, Any], seed: int) -> dict[str, float]:
    """One seed's column values (%) of a results row (from its cells' per-seed values)."""
    if seed not in row["seed_ids"]:
        return {}
    i = row["seed_ids"].index(seed)
    return {k: c["values"][i] for k, c in row["cells"].items() if len(c.get("values", ())) > i}


def _say(suite: Suite, msg: str) -> None:
    """run_plan's progress lines, less its "wrote results.md" after every call (scratch files)."""
    if not msg.startswith("wrote "):
        suite.log(f"result: {msg}")


def _train_one(suite: Suite, key: str, options: ReproduceOptions, row: str, seed: int,
               bf16: bool = False) -> bool:
    """Plan and run one row with ``options`` (its seed ``seed`` is the one not yet trained);
    records the item; False when it failed."""
    t0 = time.perf_counter()
    name = f"train {key}"
    try:
        plan = build_plan(TABLE, options)
        spec = plan.rows[0].runs[seed]
        suite.commands.append("in-process reproduce run_plan of: " + spec.command(REPO))
        res = run_plan(plan, progress=False, verbose=False, say=lambda msg: _say(suite, msg))
    except Exception as e:
        suite.error(name, e, time.perf_counter() - t0)
        return False
    (out,) = res["rows"]
    if res["failed"]:
        suite.record(name, "error", time.perf_counter() - t0, out["note"])
        return False
    values = _seed_values(out, seed)
    suite.result["runs"][key] = {"row": row, "seed": seed, "bf16": bf16, "values": values,
                                 "run_dir": str(spec.train_dir)}
    suite.record(name, "ran", time.perf_counter() - t0, ", ".join(f"{k} {v:.2f}" for k, v in values.items()))
    return True


def run_result(suite: Suite) -> None:
    """Train and evaluate the study's rows x seeds (+ the bf16 twin) into part 3's budget."""
    rows = [r.id for r in TABLES.get(TABLE).rows]
    seeds = list(range(suite.args.seeds or suite.scale.seeds))
    plan = [(row, s, False) for s in seeds for row in rows] + [(BASELINE, 0, True)]
    per_epoch = _epoch_costs(suite, rows)
    overhead = OVERHEAD_S["smoke" if suite.smoke else "full"]
    left = suite.budget.left()
    epochs = _plan_epochs(suite, len(plan), sum(per_epoch[row] for row, _, _ in plan), overhead)
    suite.result = {"table": None, "epochs": epochs, "seeds": seeds, "rows": rows, "runs": {},
                    "plan_note": f"{len(plan)} runs planned into {left:.0f} s: {epochs} epoch(s) each"}
    suite.log(f"result: {suite.result['plan_note']}")
    dropped: set[str] = set()
    for row, seed, bf16 in tqdm(plan, desc="result: runs", leave=False, disable=None):
        key = f"{row} s{seed}{' bf16' if bf16 else ''}"
        if (row, bf16) in dropped:
            suite.skip(f"train {key}", "an earlier seed of this row did not run (its plan would train both)")
            continue
        est = overhead + epochs * per_epoch[row] * (1.5 if bf16 and not suite.cuda else 1)
        options = study_options(suite, seed + 1, epochs, only=(row,), bf16=bf16)
        if not suite.fits(f"train {key}", est) or not _train_one(suite, key, options, row, seed, bf16):
            dropped.add((row, bf16))
    full = study_options(suite, len(seeds), epochs)
    suite.commands.append("the same table by hand: " + reproduce_command(full))
    suite.result["table"] = collect_results(build_plan(TABLE, full))
    suite.result["fp32_vs_bf16"] = _fp32_vs_bf16(suite.result["runs"])


def _fp32_vs_bf16(runs: dict[str, dict]) -> dict[str, Any] | None:
    """The paired seed-0 ``pgd_at`` run in fp32 and bf16: both values and bf16 - fp32 (points)."""
    fp32, bf16 = runs.get(f"{BASELINE} s0"), runs.get(f"{BASELINE} s0 bf16")
    if fp32 is None or bf16 is None:
        return None
    keys = [k for k in fp32["values"] if k in bf16["values"]]
    return {"seed": 0, "row": BASELINE, "fp32": fp32["values"], "bf16": bf16["values"],
            "bf16_minus_fp32": {k: bf16["values"][k] - fp32["values"][k] for k in keys}}
