"""Loss-curve regression (torchtune style): per-epoch metrics and final table of tiny CPU runs.

Hard-coded values recorded with seed 0 before the layering redesign (issue 11); a refactor that
changes numerics fails here. Re-record only for an intended numeric change, and say so in the commit.
Re-recorded for issue 13 (selection split), an intended change: the runs now train on the synthetic
training split less its 51 held-out validation images and select on those instead of test images.
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
                "loss": 1.785831332206726,
                "acc": 0.4446854591369629,
                "loss_ce": 1.785831332206726,
                "acc_adv": 0.4446854591369629
            },
            {
                "loss": 0.1611199527978897,
                "acc": 0.9869847893714905,
                "loss_ce": 0.1611199527978897,
                "acc_adv": 0.9869847893714905
            }
        ],
        "eval": [
            {
                "natural": 1.0,
                "pgd20": 0.7843137254901961
            },
            {
                "natural": 1.0,
                "pgd20": 0.9803921568627451
            }
        ],
        "guard": [
            {
                "pgd": 0.78125,
                "best": 0.78125
            },
            {
                "pgd": 1.0,
                "best": 1.0
            }
        ],
        "final": {
            "natural": 1.0,
            "pgd20": 0.984375,
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
                "loss": 2.158596992492676,
                "acc": 0.3687635660171509,
                "loss_ce": 1.947252869606018,
                "loss_reg": 0.06038404256105423,
                "acc_adv": 0.3687635660171509,
                "acc_target": 0.5618221163749695
            },
            {
                "loss": 1.9754968881607056,
                "acc": 0.9327548742294312,
                "loss_ce": 1.0491195917129517,
                "loss_reg": 0.2646791636943817,
                "acc_adv": 0.9327548742294312,
                "acc_target": 0.9587852358818054
            }
        ],
        "eval": [
            {
                "natural": 0.803921568627451,
                "pgd20": 0.4117647058823529
            },
            {
                "natural": 1.0,
                "pgd20": 0.9607843137254902
            }
        ],
        "guard": [
            {
                "pgd": 0.5,
                "best": 0.5
            },
            {
                "pgd": 0.9921875,
                "best": 0.9921875
            }
        ],
        "final": {
            "natural": 1.0,
            "pgd20": 0.984375,
            "cw30": 0.8125
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
                "loss": 2.1044273376464844,
                "acc": 0.44902387261390686,
                "loss_ce": 1.7486830949783325,
                "loss_reg": 0.024984335526823997,
                "acc_nat": 0.5162689685821533,
                "acc_adv": 0.44902387261390686,
                "loss_uiat": 0.058810919523239136,
                "acc_target": 0.4446854591369629
            },
            {
                "loss": 1.044958233833313,
                "acc": 0.8937093019485474,
                "loss_ce": 0.5986018180847168,
                "loss_reg": 0.042139533907175064,
                "acc_nat": 0.9110628962516785,
                "acc_adv": 0.8937093019485474,
                "loss_uiat": 0.05529118329286575,
                "acc_target": 0.9479392766952515
            }
        ],
        "eval": [
            {
                "natural": 0.5882352941176471,
                "pgd20": 0.49019607843137253
            },
            {
                "natural": 1.0,
                "pgd20": 0.9803921568627451
            }
        ],
        "guard": [
            {
                "pgd": 0.484375,
                "best": 0.484375
            },
            {
                "pgd": 1.0,
                "best": 1.0
            }
        ],
        "final": {
            "natural": 1.0,
            "pgd20": 0.984375,
            "cw30": 0.984375
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
