"""Issue 19: a one-class collapse is prevented (UIAT's target in batch statistics), seen (per-step
collapse metrics, the guard's held-out shares) and reported (a warning naming the epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY

from robustrain.config import load_config
from robustrain.train import fit
from robustrain.train import callbacks as cb

#: synthetic data at a high lr, where UIAT with the old eval-mode target collapses toward one
#: class within two epochs (measured: held-out majority 0.57 -> 0.80, natural accuracy 29%)
#: while PGD-AT and UIAT with its defaults train (majority <= 0.20 at the end, accuracy >= 73%)
DYNAMICS = ["method.steps=2", "train.epochs=2", "train.log_every=1", "optim.lr=0.2"]
OLD_TARGET = ["method.target_bn_mode=eval", "method.adv_features=training_forward"]


def _train(tmp_path: Path, extra: list[str]) -> list[dict]:
    cfg = load_config(None, TINY + DYNAMICS + extra + [f"out_dir={tmp_path}"])
    fit(cfg, progress=False, verbose=False)
    return [json.loads(x) for x in (tmp_path / cfg.run_name / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def dynamics(tmp_path_factory):
    runs = {"pgd_at": ["method=pgd_at"], "uiat": ["method=uiat"], "uiat_old_target": ["method=uiat", *OLD_TARGET]}
    return {name: _train(tmp_path_factory.mktemp(name), extra) for name, extra in runs.items()}


@pytest.mark.parametrize("method", ["pgd_at", "uiat"])
def test_training_does_not_collapse_to_one_class(dynamics, method):
    rows = dynamics[method]
    assert all(r["guard"]["val_majority"] < cb.ONE_CLASS for r in rows), [r["guard"] for r in rows]
    assert not any(r.get("one_class_collapse") for r in rows)
    last = rows[-1]
    assert last["guard"]["val_majority"] < 0.5 and last["eval"]["natural"] >= 0.5, last
    assert max(s["majority"] for s in last["steps"]) < 0.6  # the student, per log point


def test_old_eval_mode_target_collapses_where_the_defaults_do_not(dynamics):
    """The control that shows the test above can fail: the pre-issue-19 target."""
    old, new = dynamics["uiat_old_target"], dynamics["uiat"]
    assert old[-1]["guard"]["val_majority"] > new[-1]["guard"]["val_majority"] + 0.3
    assert old[-1]["eval"]["natural"] < new[-1]["eval"]["natural"]
    assert max(s["majority"] for s in old[-1]["steps"]) > max(s["majority"] for s in new[-1]["steps"])


def test_step_records_carry_the_collapse_metrics(dynamics):
    steps = dynamics["uiat"][0]["steps"]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))  # log_every=1
    for s in steps:
        for key in ("loss", "loss_reg", "p_max", "majority", "target_p_max", "target_majority"):
            assert 0.0 <= s[key] < float("inf"), key
        assert 0.0 < s["majority"] <= 1.0 and 0.0 < s["target_majority"] <= 1.0
    assert set(dynamics["pgd_at"][0]["train"]) >= {"p_max", "majority"}  # every method, not only UIAT


def test_guard_warns_at_a_one_class_collapse(tiny_overrides, monkeypatch, capsys):
    shares = iter([(0.3, 1, 0.9), (0.2, 0, 0.9), (0.95, 3, 0.1), (1.0, 3, 0.12)])
    monkeypatch.setattr(cb, "one_class_share", lambda *a, **k: next(shares))
    cfg = load_config(None, tiny_overrides + ["guard.n=16"])
    fit(cfg, progress=False, verbose=True)
    err = capsys.readouterr().err
    assert "one-class collapse at epoch 2: 95.0% of the 16 guard images are given class 3 (natural accuracy 10.0%)" in err
    assert "100.0% of the 51 held-out validation images are given class 3" in err
    assert "epoch 1" not in err.split("one-class collapse")[0]
    rows = [json.loads(x) for x in (Path(cfg.out_dir) / cfg.run_name / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("one_class_collapse", False) for r in rows] == [False, True]
    assert [(r["guard"]["majority"], r["guard"]["val_majority"]) for r in rows] == [(0.3, 0.2), (0.95, 1.0)]
