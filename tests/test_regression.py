"""Loss-curve regression (torchtune style): per-epoch metrics and final table of tiny CPU runs.

Hard-coded values recorded with seed 0 before the layering redesign (issue 11); a refactor that
changes numerics fails here. Re-record only for an intended numeric change, and say so in the commit.
"""

import json

import pytest
import torch
from conftest import TINY

from robustrain.config import load_config
from robustrain.train import fit

EXPECTED = {
    "pgd_at": {
        "overrides": [],
        "train": [
            {
                "loss": 1.6329354047775269,
                "acc": 0.48046875,
                "loss_ce": 1.6329354047775269,
                "acc_adv": 0.48046875
            },
            {
                "loss": 0.1407126635313034,
                "acc": 0.998046875,
                "loss_ce": 0.1407126635313034,
                "acc_adv": 0.998046875
            }
        ],
        "eval": [
            {
                "natural": 1.0,
                "pgd20": 0.9375
            },
            {
                "natural": 1.0,
                "pgd20": 1.0
            }
        ],
        "guard": [
            {
                "pgd": 0.921875,
                "best": 0.921875
            },
            {
                "pgd": 1.0,
                "best": 1.0
            }
        ],
        "final": {
            "natural": 1.0,
            "pgd20": 1.0,
            "cw30": 1.0
        },
        "best_epoch": 2
    },
    "uiat": {
        "overrides": [
            "method=uiat",
            "method.steps=2",
            "method.alpha=4/255",
            "method.momentum_start=0.5"
        ],
        "train": [
            {
                "loss": 1.9536726474761963,
                "acc": 0.455078125,
                "loss_ce": 1.7781591415405273,
                "loss_reg": 0.05014669522643089,
                "acc_adv": 0.455078125,
                "acc_target": 0.58203125
            },
            {
                "loss": 1.4980542659759521,
                "acc": 1.0,
                "loss_ce": 1.0072269439697266,
                "loss_reg": 0.14023639261722565,
                "acc_adv": 1.0,
                "acc_target": 0.982421875
            }
        ],
        "eval": [
            {
                "natural": 1.0,
                "pgd20": 0.9375
            },
            {
                "natural": 1.0,
                "pgd20": 1.0
            }
        ],
        "guard": [
            {
                "pgd": 0.953125,
                "best": 0.953125
            },
            {
                "pgd": 1.0,
                "best": 1.0
            }
        ],
        "final": {
            "natural": 1.0,
            "pgd20": 1.0,
            "cw30": 1.0
        },
        "best_epoch": 2
    },
    "trades+uiat": {
        "overrides": [
            "method=trades+uiat",
            "method.steps=2",
            "method.alpha=4/255",
            "method.oneoff_epoch=0.5"
        ],
        "train": [
            {
                "loss": 1.9675332307815552,
                "acc": 0.5078125,
                "loss_ce": 1.628250241279602,
                "loss_reg": 0.025793109089136124,
                "acc_nat": 0.583984375,
                "acc_adv": 0.5078125,
                "loss_uiat": 0.05272125452756882,
                "acc_target": 0.529296875
            },
            {
                "loss": 0.9501841068267822,
                "acc": 0.966796875,
                "loss_ce": 0.49943608045578003,
                "loss_reg": 0.04049774631857872,
                "acc_nat": 1.0,
                "acc_adv": 0.966796875,
                "loss_uiat": 0.05936047434806824,
                "acc_target": 1.0
            }
        ],
        "eval": [
            {
                "natural": 1.0,
                "pgd20": 0.921875
            },
            {
                "natural": 1.0,
                "pgd20": 1.0
            }
        ],
        "guard": [
            {
                "pgd": 0.9296875,
                "best": 0.9296875
            },
            {
                "pgd": 0.984375,
                "best": 0.984375
            }
        ],
        "final": {
            "natural": 1.0,
            "pgd20": 1.0,
            "cw30": 1.0
        },
        "best_epoch": 2
    }
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_tiny_run_matches_recorded_metrics(case, tmp_path):
    want = EXPECTED[case]
    cfg = load_config(None, TINY + want["overrides"] + [f"out_dir={tmp_path}"])
    summary = fit(cfg, progress=False, verbose=False)
    rows = [json.loads(line) for line in (tmp_path / cfg.run_name / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(r["train"]) for r in rows] == [sorted(t) for t in want["train"]]
    for row, train, ev, guard in zip(rows, want["train"], want["eval"], want["guard"], strict=True):
        got = torch.tensor([row["train"][k] for k in sorted(train)], dtype=torch.float64)
        torch.testing.assert_close(got, torch.tensor([train[k] for k in sorted(train)], dtype=torch.float64),
                                   rtol=1e-5, atol=1e-6)
        assert row["eval"] == ev
        assert row.get("guard") == guard
    assert summary["final"] == want["final"]
    assert summary["best_epoch"] == want["best_epoch"]
