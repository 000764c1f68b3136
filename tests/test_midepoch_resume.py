"""Resume inside an epoch (issue 20): ``train.checkpoint_every=N`` writes ``last.pt`` after every
N-th step with the epoch's progress, and ``--resume`` continues from that step bit-identically on
CPU: the final weights, method state, ``metrics.jsonl`` and ``summary.json`` equal an
uninterrupted run's (times aside)."""

from __future__ import annotations

import json

import pytest
import torch

import robustrain.build as build_mod
from robustrain.artifacts import RunDir, load_checkpoint
from robustrain.config import load_config
from robustrain.data import DeviceLoader, MixedLoader, load_split
from robustrain.train import fit
from robustrain.train.state import EpochProgress, TrainState

from conftest import TINY

# synthetic: 461 training images (51 held out), batch 64 -> 8 steps an epoch, 2 epochs
SMALL = TINY + ["model.width=4", "method.steps=1", "train.checkpoint_every=3", "eval.n=32", "eval.every=2",
                "eval.final_attacks=natural", "guard.n=32"]


@pytest.fixture(autouse=True)
def _one_thread():
    # each test trains 3 short runs: on the shared 2-core machine two threads only add contention
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Kill(Exception):
    """Stands for a kill in the middle of a step."""


def _kill_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """The method raises in the forward of global step ``step`` (0-based), after ``step`` steps."""
    real = build_mod.create_method

    def create(*args, **kwargs):
        method = real(*args, **kwargs)
        forward, calls = method.forward, [0]

        def forward_or_die(model, batch):
            if calls[0] == step:
                raise _Kill
            calls[0] += 1
            return forward(model, batch)

        method.forward = forward_or_die
        return method

    monkeypatch.setattr(build_mod, "create_method", create)


def _no_times(obj):
    """``obj`` without wall times and the run's own folder names."""
    if isinstance(obj, dict):
        return {k: _no_times(v) for k, v in obj.items() if not k.endswith("time_s") and k not in ("run_dir", "out_dir")}
    if isinstance(obj, list):
        return [_no_times(v) for v in obj]
    return obj


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("extra, kill, saved_step", [
    # epoch 1: the checkpoint after step 3 holds a half-finished log interval (log_every=2)
    ([], 5, 3),
    # epoch 2 with UIAT's momentum on (T = epoch 2): z, momentum_p / momentum_seen carry on
    (["method=uiat", "method.momentum_start=0.5"], 13, 4),
    # the same with the compact storage forced on (bf16 tables in host memory)
    (["method=uiat", "method.momentum_start=0.5", "train.sample_state=host"], 13, 4),
], ids=["pgd_at", "uiat", "uiat-host"])
def test_resume_inside_an_epoch_is_bit_identical(tmp_path, monkeypatch, extra, kill, saved_step):
    over = SMALL + extra
    full = load_config(None, over + [f"out_dir={tmp_path / 'a'}"])
    summary_a = fit(full, progress=False, verbose=False)

    cut = load_config(None, over + [f"out_dir={tmp_path / 'b'}"])
    _kill_at(monkeypatch, kill)
    with pytest.raises(_Kill):
        fit(cut, progress=False, verbose=False)
    monkeypatch.undo()
    rd_a, rd_b = RunDir(tmp_path / "a" / full.run_name), RunDir(tmp_path / "b" / cut.run_name)
    mid = load_checkpoint(rd_b.last)
    done = kill // 8  # completed epochs at the kill
    assert (mid["epoch"], mid["partial"]["step"]) == (done, saved_step)
    assert len(mid["history"]) == done
    # metrics.jsonl holds completed epochs only
    assert len(rd_b.read_metrics()) == done if rd_b.metrics.exists() else done == 0

    summary_b = fit(cut, resume=True, progress=False, verbose=False)
    a, b = load_checkpoint(rd_a.last), load_checkpoint(rd_b.last)
    assert "partial" not in b  # the epoch end replaced the mid-epoch checkpoint
    for key in ("model", "method", "optimizer", "ema", "rng", "callbacks", "step", "epoch"):
        assert _equal(a[key], b[key]), key
    assert _equal(load_checkpoint(rd_a.best)["model"], load_checkpoint(rd_b.best)["model"])
    ra, rb = rd_a.metrics.read_text(), rd_b.metrics.read_text()
    assert [_no_times(json.loads(x)) for x in ra.splitlines()] == [_no_times(json.loads(x)) for x in rb.splitlines()]
    assert _no_times(summary_a) == _no_times(summary_b)
    assert _no_times(rd_a.read_summary()) == _no_times(rd_b.read_summary())
    if "train.sample_state=host" in extra:
        assert b["method"]["targets.momentum_p"].dtype == torch.bfloat16


def test_checkpoints_inside_epochs_are_written_every_n_steps(tmp_path):
    """Saves fall on run steps 3, 6, 9, 12, 15 that do not end an epoch (8 and 16 do); each save
    replaces last.pt only, and the finished run's last.pt is the epoch end's."""
    cfg = load_config(None, SMALL + [f"out_dir={tmp_path}"])
    rd = RunDir(tmp_path / cfg.run_name)
    seen = []
    from robustrain.train import logging as train_logging

    original = train_logging.RunWriter.save_progress

    def spy(self, ckpt):
        seen.append((ckpt["epoch"], ckpt["partial"]["step"], len(ckpt["history"])))
        original(self, ckpt)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_logging.RunWriter, "save_progress", spy)
        fit(cfg, progress=False, verbose=False)
    assert seen == [(0, 3, 0), (0, 6, 0), (1, 1, 1), (1, 4, 1), (1, 7, 1)]
    assert "partial" not in load_checkpoint(rd.last) and len(rd.read_metrics()) == 2


def test_resume_at_checkpoint_every_off_is_unchanged(tiny_overrides):
    # the default writes no mid-epoch checkpoint and no new checkpoint key
    cfg = load_config(None, tiny_overrides + ["model.width=4", "train.epochs=1", "eval.final_attacks=natural"])
    assert cfg.train.checkpoint_every == 0
    fit(cfg, progress=False, verbose=False)
    ckpt = load_checkpoint(RunDir(f"{cfg.out_dir}/{cfg.run_name}").last)
    assert "partial" not in ckpt and "rng_ranks" not in ckpt


def test_checkpoint_every_is_checked_and_may_change_on_resume():
    from robustrain.train.loop import RESUME_OVERRIDES

    with pytest.raises(ValueError, match="train.checkpoint_every must be an integer >= 0"):
        load_config(None, ["train.checkpoint_every=-1"])
    assert "train.checkpoint_every" in RESUME_OVERRIDES


# ------------------------------------------------------------------ the loaders' start step
def test_device_loader_start_step_skips_batches_of_the_same_plan():
    x, y = load_split("synthetic", "train")
    loader = DeviceLoader(x, y, 48, augment=True, pad=2, seed=3)
    loader.set_epoch(2)
    whole = list(loader)
    loader.set_epoch(2, start_step=4)
    rest = list(loader)
    assert len(loader) == len(whole) and len(rest) == len(whole) - 4
    for a, b in zip(whole[4:], rest):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    loader.set_epoch(3)  # a new epoch starts at its first batch again
    assert len(list(loader)) == len(whole)
    with pytest.raises(ValueError, match="start_step must be in"):
        loader.set_epoch(2, start_step=len(loader))


def test_mixed_loader_start_step_skips_batches_of_the_same_plan():
    x, y = load_split("synthetic", "train")
    gen_x, gen_y = x[:100].permute(0, 2, 3, 1).numpy(), y[:100].numpy()
    loader = MixedLoader(DeviceLoader(x, y, 64, augment=True, pad=2), gen_x, gen_y, ratio=0.5)
    loader.set_epoch(1)
    whole = list(loader)
    loader.set_epoch(1, start_step=3)
    rest = list(loader)
    assert len(rest) == len(whole) - 3
    for a, b in zip(whole[3:], rest):
        assert all(torch.equal(u, v) for u, v in zip(a, b))


# ------------------------------------------------------------------ state and run folder
def test_train_state_round_trips_its_epoch_progress():
    prog = EpochProgress.start("cpu")
    prog.step, prog.sums, prog.n_seen = 5, {"loss": torch.tensor(3.5), "acc": torch.tensor(2.0)}, torch.tensor(7.0)
    prog.steps.append({"step": 4, "lr": 0.1, "loss": 0.5})
    state = TrainState(epoch=1, step=8, partial=prog)
    back = TrainState()
    back.load_state_dict(state.state_dict())
    assert repr(back) == "TrainState(epoch=1, step=8, partial_step=5)"
    assert list(back.partial.sums) == ["loss", "acc"] and float(back.partial.n_seen) == 7.0
    assert back.partial.steps == prog.steps
    assert "partial" not in TrainState(epoch=2, step=16).state_dict()  # epoch-end checkpoints keep their keys


def test_repair_never_copies_a_mid_epoch_last_pt_to_best(tmp_path):
    rd = RunDir(tmp_path)
    rd.last.write_bytes(b"mid-epoch weights")
    history = [{"epoch": 1}]
    lines = rd.repair(history, best_epoch=1, last_epoch=1, best_epoch_on_disk=None, mid_epoch=True)
    assert not rd.best.exists()
    assert rd.read_metrics() == history and len(lines) == 1
    # between epochs the same situation is repaired by a copy
    assert rd.repair(history, best_epoch=1, last_epoch=1, best_epoch_on_disk=None)
    assert rd.best.read_bytes() == b"mid-epoch weights"


def test_nan_in_epoch_one_names_the_mid_epoch_checkpoint(tmp_path):
    """A NaN inside epoch 1 of a run with train.checkpoint_every: its last.pt is the way on, not
    "nothing was kept"."""
    from robustrain.train.loop import _nan_advice

    assert "nothing was kept" in _nan_advice(float("nan"), 0, 7, 0.1, tmp_path)
    (tmp_path / "last.pt").write_bytes(b"x")
    msg = _nan_advice(float("nan"), 0, 7, 0.1, tmp_path)
    assert "last.pt (inside epoch 1) is intact" in msg and f"--resume {tmp_path} optim.lr=0.05" in msg
    assert "nothing was kept" not in msg
