"""AWP (robustrain.train.awp): perturbation size, exact restoration, stateful methods, resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustrain.artifacts import load_checkpoint
from robustrain.build import build_run
from robustrain.config import config_to_dict, load_config
from robustrain.train import fit
from robustrain.train.awp import AWP, awp_perturbation, perturbed_parameters


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def test_perturbation_size_per_layer_by_hand():
    model = _mlp()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    w0 = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
    # the hand computation: gradient at w, v_l = gamma * ||w_l|| * g_l / ||g_l||
    g = torch.autograd.grad(_loss(model, x, y), [model[0].weight, model[2].weight])
    want = [0.01 * w.norm() * gl / gl.norm() for w, gl in zip(w0, g)]
    b0 = [model[0].bias.detach().clone(), model[2].bias.detach().clone()]
    handle = AWP(gamma=0.01).perturb(model, lambda: _loss(model, x, y))
    assert [n for n, _ in perturbed_parameters(model)] == ["0.weight", "2.weight"]  # not biases
    for w, layer, v in zip(w0, (model[0], model[2]), want):
        got = layer.weight.detach() - w
        torch.testing.assert_close(got, v, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got.norm(), 0.01 * w.norm(), rtol=1e-5, atol=0)
    assert torch.equal(model[0].bias, b0[0]) and torch.equal(model[2].bias, b0[1])
    assert all(p.grad is None for p in model.parameters())  # the ascent leaves no gradient
    handle.restore()
    torch.testing.assert_close(model[0].weight.detach(), w0[0])


def test_zero_gradient_gives_zero_perturbation():
    w = [torch.ones(2, 2)]
    assert torch.equal(awp_perturbation(w, [torch.zeros(2, 2)], 0.1)[0], torch.zeros(2, 2))
    assert torch.equal(awp_perturbation(w, [None], 0.1)[0], torch.zeros(2, 2))


def test_step_equals_hand_reference_exactly():
    """w' = (w + v) - lr * (grad at w + v + wd * (w + v)) - v, the official order, bit for bit."""
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=5e-4)
    handle = AWP(gamma=0.01).perturb(model, lambda: _loss(model, x, y))
    opt.zero_grad()
    _loss(model, x, y).backward()
    opt.step()
    handle.restore()

    ref = _mlp()
    g = torch.autograd.grad(_loss(ref, x, y), [ref[0].weight, ref[2].weight])
    vs = awp_perturbation([ref[0].weight.detach(), ref[2].weight.detach()], g, 0.01)
    with torch.no_grad():
        ref[0].weight.add_(vs[0])
        ref[2].weight.add_(vs[1])
    ropt = torch.optim.SGD(ref.parameters(), lr=0.1, weight_decay=5e-4)
    ropt.zero_grad()
    _loss(ref, x, y).backward()
    ropt.step()
    with torch.no_grad():
        ref[0].weight.sub_(vs[0])
        ref[2].weight.sub_(vs[1])
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_bn_statistics_untouched_by_ascent():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)).train()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    AWP(gamma=0.01).perturb(model, lambda: _loss(model, x, y))
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v)


def test_uiat_state_and_rng_untouched_by_ascent(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["method=pgd_at+uiat"])
    run = build_run(cfg)
    batch = next(iter(run.loader))
    run.model.train()
    # advance the method once so its state is not the initial one
    run.method(run.model, batch)
    state = {k: v.clone() for k, v in run.method.state_dict().items()}
    rng = torch.get_rng_state()
    handle = AWP(gamma=0.01).perturb(run.model, lambda: run.method(run.model, batch).loss, method=run.method)
    after = run.method.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert torch.equal(torch.get_rng_state(), rng)
    handle.restore()


def test_awp_config_and_suffix():
    cfg = load_config(None, ["method=trades+awp"])
    assert cfg.method.name == "trades" and (cfg.awp.gamma, cfg.awp.warmup) == (5e-3, 10)
    cfg = load_config(None, ["method=pgd_at+awp"])
    assert (cfg.awp.gamma, cfg.awp.warmup) == (1e-2, 0) and cfg.run_name.startswith("pgd_at+awp-")
    assert config_to_dict(cfg)["awp"] == {"gamma": 0.01, "warmup": 0}
    assert "awp" not in config_to_dict(load_config(None, []))  # off: configs unchanged
    assert AWP(0.005, 10).active(9) and not AWP(0.005, 10).active(8)


def test_awp_label_and_a_warmup_longer_than_the_run_is_said(tiny_overrides, capsys):
    """Issue 23: trades+awp at the default length trained plain TRADES without a word."""
    short = load_config(None, ["method=trades+awp", "train.epochs=4"])
    assert short.method_label == "trades+awp" and load_config(None, ["method=trades"]).method_label == "trades"
    assert "never switches on" in short.awp_note() and "plain trades" in short.awp_note()
    assert "on from epoch 10" in load_config(None, ["method=trades+awp", "train.epochs=12"]).awp_note()
    assert load_config(None, ["method=pgd_at+awp"]).awp_note() is None
    cfg = load_config(None, tiny_overrides + ["method=pgd_at+awp", "awp.warmup=5", "eval.final_attacks=natural"])
    fit(cfg, progress=False, verbose=True)
    out = capsys.readouterr().out
    assert "pgd_at+awp on synthetic" in out and "note: awp.warmup=5 is longer than the run (2 epochs)" in out
    assert "pgd_at+awp / small_cnn, best.pt" in out


def test_awp_off_is_the_default_and_changes_nothing(tiny_overrides):
    a = load_config(None, tiny_overrides)
    b = load_config(None, tiny_overrides + ["awp.gamma=0"])
    assert a == b and not a.awp.enabled


def _states_equal(a, b):
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else _states_equal(a[k], b[k])
        if isinstance(a[k], dict) else a[k] == b[k] for k in a)


def test_fit_with_awp_changes_training_and_resumes_bit_identically(tmp_path, tiny_overrides):
    over = tiny_overrides + ["method=pgd_at+uiat+awp", "method.steps=2", "train.epochs=2", "eval.every=2"]
    full_cfg = load_config(None, over + [f"out_dir={tmp_path / 'a'}"])
    fit(full_cfg, progress=False, verbose=False)
    cut_cfg = load_config(None, over + [f"out_dir={tmp_path / 'b'}"])

    class Stop(Exception):
        pass

    def stop(epoch, record):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(cut_cfg, progress=False, verbose=False, on_epoch_end=stop)
    fit(cut_cfg, resume=True, progress=False, verbose=False)
    a = load_checkpoint(tmp_path / "a" / full_cfg.run_name / "last.pt")
    b = load_checkpoint(tmp_path / "b" / cut_cfg.run_name / "last.pt")
    assert a["config"]["awp"] == {"gamma": 0.01, "warmup": 0}
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["method"], b["method"])
    ra = (tmp_path / "a" / full_cfg.run_name / "metrics.jsonl").read_text().splitlines()
    rb = (tmp_path / "b" / cut_cfg.run_name / "metrics.jsonl").read_text().splitlines()
    strip = lambda r: {k: v for k, v in json.loads(r).items() if not k.endswith("time_s")}  # noqa: E731
    assert [strip(r) for r in ra] == [strip(r) for r in rb]

    # the same run without AWP trains different weights (AWP is really applied)
    plain = load_config(None, [o for o in over if o != "method=pgd_at+uiat+awp"] + ["method=pgd_at+uiat",
                                                                                     f"out_dir={tmp_path / 'c'}"])
    fit(plain, progress=False, verbose=False)
    c = load_checkpoint(tmp_path / "c" / plain.run_name / "last.pt")
    assert not _states_equal(a["model"], c["model"])


def _count_pgd(monkeypatch):
    """Count the PGD bodies actually run (each resolves its loss once; a replayed call runs none)."""
    import robustrain.attacks.functional as fn
    calls = {"n": 0}
    real = fn._resolve_loss

    def counting(loss):
        calls["n"] += 1
        return real(loss)
    monkeypatch.setattr(fn, "_resolve_loss", counting)
    return calls


def test_training_call_reuses_the_adversary_generated_at_w(monkeypatch, tiny_overrides):
    """Official order: x_adv at w, ascent on it, train at w + v on the SAME x_adv (one attack)."""
    cfg = load_config(None, tiny_overrides + ["method=pgd_at", "method.steps=2"])
    run = build_run(cfg)
    batch = next(iter(run.loader))
    run.model.train()
    torch.manual_seed(3)
    x_adv_at_w = run.method.attack(run.model, batch.x, batch.y)  # the reference, at w
    calls = _count_pgd(monkeypatch)
    torch.manual_seed(3)
    handle = AWP(gamma=0.01).perturb(run.model, lambda: run.method(run.model, batch).loss, method=run.method)
    with handle.replay():
        out = run.method(run.model, batch)  # at w + v
    assert calls["n"] == 1  # the attack ran once, in the ascent, at w
    assert len(handle.tape) == 1 and torch.equal(handle.tape.entries[0][2], x_adv_at_w)
    with torch.no_grad():  # the training forward at w + v was on x_adv found at w
        torch.testing.assert_close(out.logits, run.model(x_adv_at_w), rtol=0, atol=0)
    handle.restore()


def test_tape_records_outermost_calls_and_replays_them_in_order():
    from robustrain.attacks.tape import TapeMismatchError, recording, replaying, taped

    @taped
    def inner(x):
        return x + torch.rand_like(x)

    @taped
    def outer(x):
        return inner(x) * 2

    x = torch.zeros(3)
    with recording() as tape:
        a, b = outer(x), inner(x)
    assert len(tape) == 2  # outer's inner call is part of outer's entry
    with replaying(tape):
        assert torch.equal(outer(x), a) and torch.equal(inner(x), b)
    assert not torch.equal(inner(x), b)  # outside a tape: a plain call
    with pytest.raises(TapeMismatchError, match="same adversaries"):
        with replaying(tape):
            inner(x)  # recorded outer first
    with pytest.raises(TapeMismatchError, match="used 1 of the 2"):
        with replaying(tape):
            outer(x)
    with pytest.raises(TapeMismatchError, match="called 3 time"):
        with replaying(tape):
            outer(x), inner(x), inner(x)
    with pytest.raises(RuntimeError, match="inside"):
        with recording():
            with recording():
                pass


def test_bf16_ascent_gives_fp32_perturbation_of_the_right_size(tiny_overrides):
    """Under bf16 autocast (as train.bf16=true) the ascent's loss is bf16 but v is computed on and
    added to the fp32 weights, with the per-layer size gamma * ||w_l||, and the step runs."""
    cfg = load_config(None, tiny_overrides + ["method=pgd_at+awp", "method.steps=1", "train.bf16=true"])
    run = build_run(cfg)
    batch = next(iter(run.loader))
    run.model.train()
    params = [p for _, p in perturbed_parameters(run.model)]
    w0 = [p.detach().clone() for p in params]

    def loss_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = run.method(run.model, batch)
        assert out.logits.dtype == torch.bfloat16  # the ascent really ran in bf16
        return out.loss

    handle = AWP(gamma=0.01).perturb(run.model, loss_bf16, method=run.method)
    for p, w, v in zip(params, w0, handle.deltas):
        assert p.dtype == v.dtype == torch.float32
        torch.testing.assert_close((p.detach() - w).norm(), 0.01 * w.norm(), rtol=1e-4, atol=1e-8)
    with handle.replay(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = run.method(run.model, batch)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in params)
    handle.restore()
    for p, w in zip(params, w0):  # no optimiser step here: back to w up to fp32 rounding of (w + v) - v
        torch.testing.assert_close(p.detach(), w, rtol=0, atol=1e-6)


def test_awp_suffix_in_either_order_once_and_listed(capsys):
    """Issue 22: pgd_at+awp+uiat was refused ("did you mean pgd_at+uiat?"), pgd_at+awp+awp said
    "unknown method 'pgd_at+awp'", and `list methods` did not mention +awp."""
    from robustrain.cli import main
    from robustrain.utils.errors import ConfigError

    for name in ("pgd_at+uiat+awp", "pgd_at+awp+uiat"):
        cfg = load_config(None, [f"method={name}"])
        assert cfg.method.name == "pgd_at+uiat" and cfg.awp.gamma == 1e-2 and cfg.method_label == "pgd_at+uiat+awp"
    with pytest.raises(ConfigError, match=r"names \+awp more than once; write it once, e\.g\. pgd_at\+awp"):
        load_config(None, ["method=pgd_at+awp+awp"])
    with pytest.raises(ConfigError, match="unknown method 'trades\\+awpx'"):
        load_config(None, ["method=trades+awpx"])
    assert main(["list", "methods"]) == 0
    assert "<method>+awp" in capsys.readouterr().out
