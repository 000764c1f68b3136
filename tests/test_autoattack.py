"""AutoAttack adapter (official pyautoattack) and the attack names of evaluate_robustness."""

import json
import sys
import warnings

import pytest
import torch
from torch import nn

from robustrain.attacks import pgd
from robustrain.eval import PROTOCOL, build_eval_attacks, describe_protocol, evaluate_robustness
from robustrain.attacks.autoattack import run as aa_run
from robustrain.attacks.autoattack import AutoAttackSpec, autoattack, parse_autoattack_name, run_autoattack

# few iterations of the package's APGD: the adapter's behaviour, not AutoAttack's strength, is under test
QUICK = {"apgd.n_iter": 10, "apgd.n_restarts": 1}


def _net(seed=0, classes=10):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, classes))


@pytest.fixture(scope="module")
def trained():
    """A tiny conv net trained for a few dozen steps on the synthetic dataset, and 48 test images."""
    from robustrain.data import load_split

    torch.set_num_threads(2)
    x, y = load_split("synthetic", "train")
    xt, yt = load_split("synthetic", "test")
    net = _net()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    xf = x.float() / 255
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        i = torch.randint(0, len(xf), (64,), generator=g)
        loss = nn.functional.cross_entropy(net(xf[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), xt[:48], yt[:48]


# ------------------------------------------------------------------------ parity
def test_autoattack_not_weaker_than_pgd_and_cw(trained):
    net, x, y = trained
    eps = 2 / 255
    attacks = build_eval_attacks(["natural", "pgd20", "cw30"], eps=eps)
    attacks["aa"] = AutoAttackSpec("custom", ("apgd-ce", "apgd-t"), eps=eps,
                                   options={"apgd.n_restarts": 1, "apgd.n_iter": 30, "apgd_targeted.n_iter": 30,
                                            "apgd_targeted.n_target_classes": 3})
    res = evaluate_robustness(net, x, y, attacks, batch_size=48, progress=False)
    acc = res.accuracy
    assert acc["natural"] > 0.2  # the model learned something, so the attacks have work to do
    assert acc["pgd20"] < acc["natural"]
    assert acc["aa"] <= acc["cw30"] and acc["aa"] <= acc["pgd20"], acc
    assert res.autoattack["aa"].clean_accuracy == acc["natural"]
    assert "AutoAttack custom (apgd-ce, apgd-t" in res.protocol and "eps=2/255" in res.protocol


def test_per_image_results_agree_with_accuracies(trained):
    """per_image=True: one bool per image and attack, AutoAttack's from its (resumable) result;
    the worst case over them is at most every accuracy."""
    net, x, y = trained
    eps = 2 / 255
    attacks = build_eval_attacks(["natural", "pgd20", "cw30"], eps=eps)
    attacks["aa"] = AutoAttackSpec("custom", ("apgd-ce",), eps=eps, options=QUICK)
    res = evaluate_robustness(net, x, y, attacks, batch_size=20, progress=False, per_image=True)
    assert list(res.correct) == ["natural", "pgd20", "cw30", "aa"]
    for name, mask in res.correct.items():
        assert mask.dtype == torch.bool and mask.shape == (48,) and mask.device.type == "cpu"
        assert mask.float().mean().item() == pytest.approx(res.accuracy[name])
    assert not (res.correct["aa"] & ~res.correct["natural"]).any()  # robust implies clean-correct
    worst = res.worst_case()
    assert all(worst.sum().item() / 48 <= a + 1e-12 for a in res.accuracy.values())
    assert torch.equal(worst, res.correct["natural"] & res.correct["pgd20"] & res.correct["cw30"] & res.correct["aa"])
    plain = evaluate_robustness(net, x, y, attacks, batch_size=20, progress=False)
    assert plain.correct == {} and plain.accuracy == res.accuracy  # the option changes nothing else
    with pytest.raises(ValueError, match="per_image=True"):
        plain.worst_case()


def _reference_pgd(model, x, y, eps, alpha, steps, delta0):
    """Madry et al.'s PGD written out: random start, signed CE-gradient steps, clip to ball and box."""
    x_adv = torch.clamp(torch.min(torch.max(x + delta0, x - eps), x + eps), 0, 1)
    for _ in range(steps):
        x_adv = x_adv.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0, 1)
    return x_adv


def test_pgd_matches_reference_loop(trained):
    net, x, y = trained
    x = x.float() / 255
    eps, alpha = 8 / 255, 2 / 255
    delta0 = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(3))
    ours = pgd(net, x, y, eps=eps, alpha=alpha, steps=20, generator=torch.Generator().manual_seed(3))
    ref = _reference_pgd(net, x, y, eps, alpha, 20, delta0)
    assert torch.allclose(ours, ref, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(net(ours).argmax(1), net(ref).argmax(1))
    assert (net(ours).argmax(1) == y).float().mean() < (net(x).argmax(1) == y).float().mean()


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, version, attacks", [
    ("aa", "standard", ("apgd-ce", "apgd-t", "fab-t", "square")),
    ("aa-plus", "plus", ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")),
    ("aa-rand", "rand", ("apgd-ce", "apgd-dlr")),
    ("aa:apgd-ce+apgd-t", "custom", ("apgd-ce", "apgd-t")),
])
def test_parse_names(name, version, attacks):
    spec = parse_autoattack_name(name)
    assert (spec.version, spec.attacks_to_run, spec.norm, spec.eps) == (version, attacks, "Linf", 8 / 255)


@pytest.mark.parametrize("name", ["aa-foo", "aa:", "aa:bogus", "aa:apgd-ce+apgd-ce"])
def test_bad_names(name):
    with pytest.raises(ValueError, match="AutoAttack"):
        parse_autoattack_name(name)


def test_options_only_for_custom_and_known_parts():
    with pytest.raises(ValueError, match="custom"):
        AutoAttackSpec("standard", options={"apgd.n_iter": 5})
    with pytest.raises(ValueError, match="PART.ATTR"):
        AutoAttackSpec("custom", ("apgd-ce",), options={"pgd.n_iter": 5})


def test_norm_and_eps_reach_every_attack():
    a = build_eval_attacks(["natural", "pgd20", "cw30", "pgd_l2", "aa"], eps=4 / 255)
    assert a["pgd20"].eps == a["cw30"].eps == a["aa"].eps == 4 / 255
    assert (a["pgd_l2"].norm, a["pgd_l2"].eps) == ("l2", 0.5)  # another threat model keeps its own radius
    l2 = build_eval_attacks(["pgd20", "aa-plus"], norm="L2")
    assert (l2["pgd20"].norm, l2["pgd20"].eps, l2["pgd20"].alpha) == ("l2", 0.5, 0.125)
    assert (l2["aa-plus"].norm, l2["aa-plus"].eps) == ("L2", 0.5)
    with pytest.raises(ValueError, match="Linf-only"):
        build_eval_attacks(["cw30"], norm="L2")
    with pytest.raises(ValueError, match="unknown norm"):
        build_eval_attacks(["pgd20"], norm="L1")
    assert build_eval_attacks(["pgd20"], alpha=1 / 255)["pgd20"].alpha == 1 / 255  # other fields pass through


def test_protocol_line():
    assert describe_protocol(build_eval_attacks(["natural", "pgd20", "cw30"])) == PROTOCOL
    line = describe_protocol(build_eval_attacks(["natural", "pgd20", "aa"], norm="L2"))
    assert line.startswith("L2 eps=0.5; PGD-20: step 0.125") and "AutoAttack standard (apgd-ce" in line
    mixed = describe_protocol(build_eval_attacks(["pgd20", "pgd_l2"]))
    assert "PGD-20: Linf eps=8/255" in mixed and "PGD-10: L2 eps=0.5" in mixed


# ------------------------------------------------------------------ adapter contract
def test_fp32_eval_mode_rng_and_quiet(capsys, caplog):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 5))
    seen = set()
    net.register_forward_hook(lambda m, i, o: seen.add((m.training, o.dtype)))
    net.train()
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 5, (6,))
    rng = torch.get_rng_state()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = run_autoattack(net, x, y, version="custom", attacks=["apgd-ce", "apgd-t"], options=QUICK,
                             progress=False)
    assert seen == {(False, torch.float32)}
    assert net.training
    assert torch.equal(torch.get_rng_state(), rng)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    # 5 classes: apgd-t aims at 4, says so, and the package's own flag is not raised
    assert any("4 target classes" in f for f in res.flags)
    assert 0 <= res.accuracy <= res.clean_accuracy <= 1


def test_deterministic_with_fixed_seed():
    net = _net()
    x, y = torch.rand(12, 3, 8, 8), torch.randint(0, 10, (12,))
    kw = dict(version="custom", attacks=["apgd-ce"], options=QUICK, eps=2 / 255, progress=False)
    assert run_autoattack(net, x, y, **kw) == run_autoattack(net, x, y, **kw)


def test_flags_are_captured_and_returned():
    net = nn.Sequential(_net(), nn.Softmax(dim=1))  # probabilities instead of logits
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 10, (4,))
    res = run_autoattack(net, x, y, version="custom", attacks=["apgd-ce"], options=QUICK, progress=False)
    assert any("probability distribution" in f and "flags_doc.md" in f for f in res.flags)
    with pytest.warns(UserWarning, match=r"AutoAttack flag \(aa\): .*probability"):
        evaluate_robustness(net, x, y, {"aa": AutoAttackSpec("custom", ("apgd-ce",), options=QUICK)}, progress=False,
                            warn_flags=True)


def test_randomised_model_is_flagged():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            return self.net(x) + torch.randn(x.shape[0], 10)

    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 10, (4,))
    res = run_autoattack(Noisy(), x, y, version="custom", attacks=["apgd-ce"], options=QUICK, progress=False)
    assert any("randomized defense" in f for f in res.flags)


def test_resume_after_interruption(tmp_path, monkeypatch):
    net = _net()
    x, y = torch.randint(0, 256, (24, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (24,))
    kw = dict(version="custom", attacks=["apgd-ce"], options=QUICK, eps=1 / 255, chunk_size=8, progress=False)
    full = run_autoattack(net, x, y, **kw)

    real, calls = aa_run.attack_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(aa_run, "attack_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_autoattack(net, x, y, state_dir=tmp_path, **kw)
    (state,) = tmp_path.glob("aa-*.json")
    assert list(json.loads(state.read_text())["chunks"]) == ["0"]
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.setattr(aa_run, "attack_chunk", real)

    resumed = run_autoattack(net, x, y, state_dir=tmp_path, **kw)
    assert resumed.resumed_chunks == 1
    assert (resumed.accuracy, resumed.clean_accuracy) == (full.accuracy, full.clean_accuracy)
    assert torch.equal(resumed.robust, full.robust) and torch.equal(resumed.clean, full.clean)  # per image too
    assert resumed.log_path and (tmp_path / state.with_suffix(".log").name).is_file()
    # another radius (or model, data, seed) never reuses that state
    assert run_autoattack(net, x, y, state_dir=tmp_path, **{**kw, "eps": 2 / 255}).resumed_chunks == 0


def test_functional_form_stays_in_the_ball():
    net = _net().train()
    x, y = torch.rand(5, 3, 8, 8), torch.randint(0, 10, (5,))
    x_adv = autoattack(net, x, y, version="custom", attacks=["apgd-ce"], options=QUICK, eps=4 / 255)
    assert x_adv.shape == x.shape and not x_adv.requires_grad and net.training
    assert (x_adv - x).abs().max() <= 4 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    spec = AutoAttackSpec("custom", ("apgd-ce",), eps=4 / 255, options=QUICK)
    assert torch.equal(spec(net, x, y), x_adv)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    with pytest.raises(ImportError, match=r"pip install 'pyautoattack>=0\.2'"):
        run_autoattack(_net(), torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), progress=False)


def test_foreign_warnings_are_not_swallowed():
    class Warns(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            warnings.warn("from the model", RuntimeWarning)
            return self.net(x)

    with pytest.warns(RuntimeWarning, match="from the model"):
        run_autoattack(Warns(), torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), version="custom",
                       attacks=["apgd-ce"], options={"apgd.n_iter": 2, "apgd.n_restarts": 1}, progress=False)
