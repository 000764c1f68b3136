import json
import math

import pytest
import torch

from robustrain.config import load_config
from robustrain.schedules import ScheduleParams as ScheduleConfig
from robustrain.schedules import lr_at
from robustrain.artifacts import load_checkpoint, save_checkpoint
from robustrain.models import EMA
from robustrain.artifacts.checkpoint import FORMAT, rng_state, set_rng_state
from robustrain.schedules import SCHEDULES, momentum_at
from robustrain.train import BestCheckpoint, OverfitGuard, fit
from robustrain.utils.errors import CheckpointError, NonFiniteLossError, RunExistsError


# ------------------------------------------------------------------ schedules
def test_cyclic_matches_torch_onecycle():
    # the HAT / UIAT code uses torch's OneCycleLR(max_lr=lr, pct_start=0.25): lr and momentum
    total, lr = 37, 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.25)
    cfg = ScheduleConfig(name="cyclic")
    for step in range(total):
        assert lr_at(cfg, step, total, lr) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        assert momentum_at(cfg, step, total) == pytest.approx(opt.param_groups[0]["momentum"], rel=1e-9)
        opt.step()
        sched.step()
    assert momentum_at(ScheduleConfig(name="cyclic", cycle_momentum=False), 3, total) is None
    assert momentum_at(ScheduleConfig(name="cosine"), 3, total) is None


def test_piecewise_and_cosine():
    pw = ScheduleConfig(name="piecewise", milestones=(0.5, 0.75), gamma=0.1)
    assert [round(lr_at(pw, s, 100, 1.0), 6) for s in (0, 49, 50, 74, 75, 99)] == [1, 1, 0.1, 0.1, 0.01, 0.01]
    cos = ScheduleConfig(name="cosine")
    assert lr_at(cos, 0, 100, 1.0) == 1.0
    assert lr_at(cos, 50, 100, 1.0) == pytest.approx(0.5)
    warm = ScheduleConfig(name="cosine", warmup_frac=0.1)
    assert lr_at(warm, 0, 100, 1.0) == pytest.approx(0.1)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedules_positive_finite(name):
    cfg = ScheduleConfig(name=name)
    lrs = [lr_at(cfg, s, 50, 0.1) for s in range(50)]
    assert all(math.isfinite(v) and 0 <= v <= 0.1 + 1e-12 for v in lrs)


# ------------------------------------------------------------------------ EMA
def test_ema_hand_computation():
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(net.weight, 1.0)
    ema = EMA(net, decay=0.5)
    net.weight.data.fill_(3.0)
    ema.update(net, step=0)  # d = min(0.5, 1/10) = 0.1 -> 0.1*1 + 0.9*3
    assert ema.module.weight.item() == pytest.approx(2.8)
    net.weight.data.fill_(0.0)
    ema.update(net, step=100)  # d = 0.5
    assert ema.module.weight.item() == pytest.approx(1.4)


def test_ema_copies_bn_buffers():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    ema = EMA(net)
    net.train()
    net(torch.randn(8, 1, 4, 4) * 5 + 3)
    ema.update(net, step=1000)
    assert torch.equal(ema.module[1].running_mean, net[1].running_mean)
    assert not ema.module.training


# ----------------------------------------------------------------- checkpoint
def test_checkpoint_atomic_and_safe(tmp_path):
    p = tmp_path / "c.pt"
    obj = {"format": FORMAT, "config": {}, "epoch": 1, "model": {"w": torch.ones(2)}, "rng": rng_state()}
    save_checkpoint(obj, p)
    back = load_checkpoint(p)
    assert torch.equal(back["model"]["w"], torch.ones(2))
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_rng_round_trip():
    state = rng_state()
    a = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    set_rng_state(state)
    b = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a robustrain checkpoint"):
        load_checkpoint(foreign)


def test_failed_save_keeps_previous(tmp_path, monkeypatch):
    p = tmp_path / "c.pt"
    save_checkpoint({"format": FORMAT, "config": {}, "epoch": 1, "model": {}}, p)
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint({"format": FORMAT, "config": {}, "epoch": 2, "model": {}}, p)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]


# -------------------------------------------------------------------- trainer
def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_writes_run_folder(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["train.ema=true"])
    summary = fit(cfg, progress=False, verbose=False)
    run = cfg.out_dir + "/" + cfg.run_name
    import pathlib

    run = pathlib.Path(run)
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt", "summary.json"):
        assert (run / name).exists(), name
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"natural", "pgd20"} <= set(records[-1]["eval"])
    assert set(summary["final"]) == {"natural", "pgd20", "cw30"}
    assert summary["weights"] == "ema"
    assert all(0 <= v <= 1 for v in summary["final"].values())
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["ema"] is not None
    assert load_config(run / "config.yaml") == cfg


def test_run_exists_error(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["train.epochs=1"])
    fit(cfg, progress=False, verbose=False)
    with pytest.raises(RunExistsError, match="--resume"):
        fit(cfg, progress=False, verbose=False)
    fit(cfg, progress=False, verbose=False, overwrite=True)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("extra", [[], ["train.ema=true", "method=trades", "method.steps=2"]])
def test_resume_is_bit_identical(tmp_path, tiny_overrides, extra):
    over = tiny_overrides + extra + ["train.epochs=3", "eval.every=2"]
    full_cfg = load_config(None, over + [f"out_dir={tmp_path / 'a'}"])
    fit(full_cfg, progress=False, verbose=False)

    cut_cfg = load_config(None, over + [f"out_dir={tmp_path / 'b'}"])

    def stop(epoch, record):
        if epoch == 1:
            raise _Stop

    with pytest.raises(_Stop):
        fit(cut_cfg, progress=False, verbose=False, on_epoch_end=stop)
    fit(cut_cfg, resume=True, progress=False, verbose=False)

    a = load_checkpoint(tmp_path / "a" / full_cfg.run_name / "last.pt")
    b = load_checkpoint(tmp_path / "b" / cut_cfg.run_name / "last.pt")
    assert _states_equal(a["model"], b["model"])
    assert _states_equal(a["method"], b["method"])
    if a["ema"] is not None:
        assert _states_equal(a["ema"], b["ema"])
    assert a["step"] == b["step"]
    ra = [json.loads(x) for x in (tmp_path / "a" / full_cfg.run_name / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (tmp_path / "b" / cut_cfg.run_name / "metrics.jsonl").read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if not k.endswith("time_s")}  # noqa: E731
    assert [strip(r) for r in ra] == [strip(r) for r in rb]


def test_nan_loss_stops_cleanly_and_keeps_checkpoints(tiny_overrides, monkeypatch):
    import robustrain.build as build_mod

    real = build_mod.create_method

    def poisoned(*args, **kwargs):
        method = real(*args, **kwargs)
        forward = method.forward

        def nan_after_first_epoch(model, batch):
            out = forward(model, batch)
            if method.epoch >= 1:
                return out._replace(loss=out.loss * float("nan"))
            return out

        method.forward = nan_after_first_epoch
        return method

    monkeypatch.setattr(build_mod, "create_method", poisoned)
    cfg = load_config(None, tiny_overrides)
    with pytest.raises(NonFiniteLossError, match="epoch 2") as info:
        fit(cfg, progress=False, verbose=False)
    assert "\n" not in str(info.value)
    import pathlib

    run = pathlib.Path(cfg.out_dir) / cfg.run_name
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_bf16_autocast_and_channels_last_run(tiny_overrides):
    # CPU autocast supports bf16: the flag path runs end to end; evaluation stays fp32
    cfg = load_config(None, tiny_overrides + ["train.epochs=1", "train.bf16=true", "train.channels_last=true"])
    summary = fit(cfg, progress=False, verbose=False)
    assert all(0 <= v <= 1 for v in summary["final"].values())


def test_progress_bar_renders(tiny_overrides, capsys):
    cfg = load_config(None, tiny_overrides + ["train.epochs=1"])
    fit(cfg, progress=True, verbose=True)
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and "loss=" in captured.err  # the live bar (stderr)
    assert "final evaluation" in captured.out


class _ScriptedGuard(OverfitGuard):
    """The guard with its accuracy following ``values`` epoch by epoch (other evaluations are real)."""

    def __init__(self, values, **kwargs):
        super().__init__(**kwargs)
        self.values = iter(values)

    def measure(self, run):
        return next(self.values)


def _scripted_callbacks(cfg, values):
    guard = _ScriptedGuard(values, attack=cfg.guard.attack, drop=cfg.guard.drop, stop=cfg.guard.stop, seed=cfg.seed)
    return [guard, BestCheckpoint.from_config(cfg)]


def test_overfit_guard_flags_a_fall_below_the_drop_and_keeps_its_best():
    guard = OverfitGuard(attack="pgd", drop=0.5, stop=False)
    assert [guard.update(v) for v in (0.0, 0.40, 0.25, 0.19, 0.45)] == [False, False, False, True, False]
    restored = OverfitGuard(attack="pgd")
    restored.load_state_dict(guard.state_dict())
    assert restored.best == 0.45 and restored.update(0.2) is True
    # a checkpoint written before callbacks had their own keys
    assert OverfitGuard().legacy_state({"guard_best": 0.3}) == {"best": 0.3}


def test_best_checkpoint_prefers_the_later_epoch_on_ties_and_round_trips():
    best = BestCheckpoint(monitor="pgd20", every=2, epochs=5)
    assert [best.update(a, e) for e, a in enumerate((0.2, 0.3, 0.3, 0.1), start=1)] == [True, True, True, False]
    assert best.state_dict() == {"best": 0.3, "best_epoch": 3}
    other = BestCheckpoint(monitor="pgd20")
    other.load_state_dict(best.state_dict())
    assert (other.best, other.best_epoch) == (0.3, 3)
    assert BestCheckpoint().legacy_state({"best": 0.5, "best_epoch": 2}) == {"best": 0.5, "best_epoch": 2}


def test_guard_warns_and_logs_collapse(tiny_overrides, monkeypatch, capsys):
    cfg = load_config(None, tiny_overrides + ["train.epochs=3", "guard.n=16", "eval.attack=pgd20"])
    summary = fit(cfg, progress=False, verbose=False, callbacks=_scripted_callbacks(cfg, [0.40, 0.10, 0.45]))
    err = capsys.readouterr().err
    assert "catastrophic overfitting at epoch 2" in err and "40.0% to 10.0%" in err
    import pathlib

    records = [json.loads(x) for x in (pathlib.Path(cfg.out_dir) / cfg.run_name / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("catastrophic_overfitting", False) for r in records] == [False, True, False]
    assert [r["guard"]["pgd"] for r in records] == [0.40, 0.10, 0.45]
    assert summary["stopped_early"] is None


def test_guard_stop_ends_run_and_keeps_best(tiny_overrides, monkeypatch):
    cfg = load_config(None, tiny_overrides + ["train.epochs=3", "guard.n=16", "guard.stop=true"])
    summary = fit(cfg, progress=False, verbose=False, callbacks=_scripted_callbacks(cfg, [0.40, 0.10, 0.45]))
    import pathlib

    run = pathlib.Path(cfg.out_dir) / cfg.run_name
    assert summary["stopped_early"] == 2
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert summary["checkpoint"] == "best.pt"


def test_natural_training_can_choose_best_by_clean_accuracy(tiny_overrides):
    # eval.attack=natural: no attack per epoch, best.pt is the epoch with the best clean accuracy
    cfg = load_config(None, tiny_overrides + ["method=standard", "eval.attack=natural", "train.epochs=3",
                                              "guard.enabled=false", "eval.final_attacks=natural"])
    summary = fit(cfg, progress=False, verbose=False)
    import pathlib

    run = pathlib.Path(cfg.out_dir) / cfg.run_name
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(set(r["eval"]) == {"natural"} for r in records)
    accs = [r["eval"]["natural"] for r in records]
    best_epoch = max(range(3), key=lambda i: (accs[i], i)) + 1  # ties go to the later epoch
    assert records[-1]["best"] == {"epoch": best_epoch, "natural": accs[best_epoch - 1]}
    assert load_checkpoint(run / "best.pt")["epoch"] == best_epoch
    assert summary["selection"].startswith("best natural")


def test_training_time_sums_every_process_and_a_finished_run_says_so(tiny_overrides, capsys):
    """Issue 23: a resumed run's wall time counted only the last process."""
    cfg = load_config(None, tiny_overrides + ["train.epochs=2", "eval.final_attacks=natural"])

    def stop(epoch, record):
        if epoch == 1:
            raise _Stop

    with pytest.raises(_Stop):
        fit(cfg, progress=False, verbose=False, on_epoch_end=stop)
    summary = fit(cfg, resume=True, progress=False, verbose=False)
    import pathlib

    rows = [json.loads(x) for x in (pathlib.Path(cfg.out_dir) / cfg.run_name / "metrics.jsonl").read_text().splitlines()]
    assert all(r["wall_time_s"] >= r["epoch_time_s"] > 0 for r in rows)
    assert summary["train_time_s"] == pytest.approx(sum(r["wall_time_s"] for r in rows))
    capsys.readouterr()
    again = fit(cfg, resume=True, progress=False, verbose=True)
    out = capsys.readouterr().out
    assert "already finished (2 of 2 epochs)" in out and "at epoch 3/2" not in out
    assert again["train_time_s"] == pytest.approx(summary["train_time_s"])
