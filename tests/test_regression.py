"""Loss-curve regression (torchtune style) of tiny CPU runs: a refactor that changes numerics
fails here, on any CPU (issue 22).

Convolutions round differently across CPU vendors and instruction sets, and sign-gradient
attacks amplify the differences (a flipped sign moves a pixel by a whole step), so float results
recorded on one machine are not exact on another. What is pinned, and how tightly:

* exact: the metric names of every epoch record, the number of epochs and of per-step log
  points, the selection protocol.
* the first log point's mean loss (steps 1-2, before training has amplified any difference):
  ``FIRST_RTOL`` = 1e-3.
* every later training metric: ``|got - recorded| <= ATOL + RTOL * |recorded|`` with ATOL = 0.03,
  RTOL = 0.05; held-out, guard and final accuracies within ``EVAL_IMAGES`` / ``GUARD_IMAGES`` /
  ``FINAL_IMAGES`` images.

How the tolerances were chosen: float differences between machines were stood in for by thread
counts on one machine (1, 2 and 3 threads change the reduction order of every convolution, as a
different CPU does), all three cases, measured 2026-12-07 with
``python tests/test_regression.py --spread`` (2 threads against 1 and 3): training metrics differed by up to 0.039 absolute / 8.5% relative, using at
most 49% of the ATOL + RTOL band above (issue 22's AMD EPYC run differed by up to 0.015 / 4%);
the first log point's loss by at most 9e-5 relative; held-out PGD-20 after epoch 1 by up to 6 of
51 images, the guard by up to 10 of 128, the final table by 1 of 64. Each image tolerance is
twice its measured spread. The per-epoch accuracies of a two-epoch run are that chaotic because
sign-gradient attacks amplify float differences: a flipped sign moves a pixel by a whole step.

Re-record only for an intended numeric change, and say so in the commit:
``python tests/test_regression.py --record`` rewrites ``tests/data/regression.json``.
Re-recorded for issue 19 (UIAT's target in batch statistics; per-step logs and collapse metrics).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import TINY

from robustrain.config import load_config
from robustrain.train import fit

EXPECTED_FILE = Path(__file__).parent / "data" / "regression.json"
CASES = {
    "pgd_at": [],
    "uiat": ["method=uiat", "method.steps=2", "method.alpha=4/255", "method.momentum_start=0.5"],
    "trades+uiat": ["method=trades+uiat", "method.steps=2", "method.alpha=4/255", "method.oneoff_epoch=0.5"],
}
FIRST_RTOL = 1e-3
ATOL, RTOL = 0.03, 0.05
EVAL_IMAGES, GUARD_IMAGES, FINAL_IMAGES = 12, 20, 3


def run_case(case: str, out: Path) -> dict:
    """One tiny run: its per-epoch records (no wall times) and its final table."""
    cfg = load_config(None, TINY + CASES[case] + [f"out_dir={out}"])
    summary = fit(cfg, progress=False, verbose=False)
    rows = [json.loads(line) for line in (out / cfg.run_name / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        for key in [k for k in row if k.endswith("time_s")]:
            del row[key]
    return {"rows": rows, "final": summary["final"], "selection": summary["selection"],
            "n_val": summary["selection_split"]["n_evaluated"], "n_final": summary["n_test"], "n_guard": cfg.guard.n}


def _close(got: float, want: float, atol: float, rtol: float) -> bool:
    return abs(got - want) <= atol + rtol * abs(want)


def _accuracy_close(got: dict, want: dict, n: int, images: int, where: str) -> None:
    assert set(got) == set(want), where
    for k in want:
        assert abs(got[k] - want[k]) * n <= images + 1e-6, f"{where}.{k}: {got[k]} vs recorded {want[k]} ({n} images)"


@pytest.mark.parametrize("case", sorted(CASES))
def test_tiny_run_matches_recorded_metrics(case, tmp_path):
    want = json.loads(EXPECTED_FILE.read_text())[case]
    got = run_case(case, tmp_path)
    rows, rec = got["rows"], want["rows"]
    assert len(rows) == len(rec)
    assert [sorted(r["train"]) for r in rows] == [sorted(r["train"]) for r in rec]
    assert [[sorted(s) for s in r["steps"]] for r in rows] == [[sorted(s) for s in r["steps"]] for r in rec]
    assert [[s["step"] for s in r["steps"]] for r in rows] == [[s["step"] for s in r["steps"]] for r in rec]
    assert got["selection"] == want["selection"]
    first, first_rec = rows[0]["steps"][0]["loss"], rec[0]["steps"][0]["loss"]
    assert _close(first, first_rec, 0.0, FIRST_RTOL), f"first logged loss {first} vs recorded {first_rec}"
    assert (got["n_val"], got["n_guard"], got["n_final"]) == (want["n_val"], want["n_guard"], want["n_final"])
    n_val, n_guard = want["n_val"], want["n_guard"]
    for e, (row, r) in enumerate(zip(rows, rec), start=1):
        for k, v in r["train"].items():
            assert _close(row["train"][k], v, ATOL, RTOL), f"epoch {e} train.{k}: {row['train'][k]} vs recorded {v}"
        _accuracy_close(row["eval"], r["eval"], n_val, EVAL_IMAGES, f"epoch {e} eval")
        _accuracy_close({k: row["guard"][k] for k in ("pgd", "best")}, {k: r["guard"][k] for k in ("pgd", "best")},
                        n_guard, GUARD_IMAGES, f"epoch {e} guard")
    _accuracy_close(got["final"], want["final"], want["n_final"], FINAL_IMAGES, "final")


def test_same_config_twice_is_bit_identical(tmp_path):
    a = run_case("uiat", tmp_path / "a")
    b = run_case("uiat", tmp_path / "b")
    assert a == b


def record() -> None:
    """Rewrite ``tests/data/regression.json`` from runs on this machine, with the suite's two
    threads (``conftest._two_threads``)."""
    import tempfile

    import torch

    torch.set_num_threads(2)
    out = {}
    for case in sorted(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            out[case] = run_case(case, Path(tmp))
    EXPECTED_FILE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED_FILE}")


def spread() -> None:
    """Print the largest difference of every pinned quantity between 2 threads and 1 / 3 threads."""
    import tempfile

    import torch

    res = {}
    for threads in (2, 1, 3):
        torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as tmp:
            res[threads] = {case: run_case(case, Path(tmp) / case) for case in sorted(CASES)}
    for case in sorted(CASES):
        a = res[2][case]
        for threads in (1, 3):
            b = res[threads][case]
            pairs = list(zip(b["rows"], a["rows"]))
            band = max(abs(x["train"][k] - y["train"][k]) / (ATOL + RTOL * abs(y["train"][k]))
                       for x, y in pairs for k in y["train"])
            ev = max(abs(x["eval"][k] - y["eval"][k]) * a["n_val"] for x, y in pairs for k in y["eval"])
            guard = max(abs(x["guard"]["pgd"] - y["guard"]["pgd"]) * a["n_guard"] for x, y in pairs)
            final = max(abs(b["final"][k] - a["final"][k]) * a["n_final"] for k in a["final"])
            l0, l1 = b["rows"][0]["steps"][0]["loss"], a["rows"][0]["steps"][0]["loss"]
            print(f"{case} {threads} threads: train {100 * band:.0f}% of the band, first loss "
                  f"{abs(l0 - l1) / abs(l1):.1e} rel, eval {ev:.0f} / guard {guard:.0f} / final {final:.0f} images")


if __name__ == "__main__":
    modes = {"--record": record, "--spread": spread}
    if len(sys.argv) != 2 or sys.argv[1] not in modes:
        sys.exit("usage: python tests/test_regression.py --record | --spread")
    modes[sys.argv[1]]()
