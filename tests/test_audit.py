"""`robustrain audit`: an honest model gets PASS, gradient-masked models get FAIL with the reason.

The models are built by hand (no training, so the tests are fast and deterministic): a
nearest-class-mean linear classifier of the synthetic dataset (honest: differentiable
everywhere, logits of moderate size), the same classifier behind a non-differentiable input
quantisation ``x -> round(8x) / 8`` (zero gradients everywhere), and the same classifier with
its logits scaled by 1e4 (a saturated softmax: cross-entropy's gradient underflows to 0).
"""

import json

import pytest
import torch
from torch import nn

from robustrain.cli import main
from robustrain.data import load_split, to_unit_float
from robustrain.eval.audit import FAIL, PASS, WARN, AuditSettings, Thresholds, run_audit
from robustrain.eval.audit.checks import classify_flag
from robustrain.eval.audit import checks as C

N = 48
EPS = 20 / 255  # the linear model below is ~96% robust here: a real, non-trivial number


class Prototype(nn.Module):
    """Nearest-class-mean linear classifier: logits = (x - mu) . (m_c - mu), rescaled."""

    def __init__(self, x, y, num_classes, temperature=5.0):
        super().__init__()
        x = to_unit_float(x).flatten(1)
        means = torch.stack([x[y == c].mean(0) for c in range(num_classes)])
        mu = means.mean(0)
        w = means - mu
        self.weight = nn.Parameter(w * temperature / w.norm(dim=1).mean())
        self.register_buffer("mu", mu)

    def forward(self, x):
        return (x.flatten(1) - self.mu) @ self.weight.T


class Quantised(nn.Module):
    """Deliberate gradient masking: a non-differentiable input quantisation (zero gradient)."""

    def __init__(self, net, levels=8):
        super().__init__()
        self.net, self.levels = net, levels

    def forward(self, x):
        return self.net(torch.round(x * self.levels) / self.levels)


class Saturated(nn.Module):
    """Deliberate gradient masking: logits so large that the softmax saturates in fp32."""

    def __init__(self, net, scale=1e4):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x):
        return self.net(x) * self.scale


@pytest.fixture(scope="module")
def data():
    xtr, ytr = (torch.as_tensor(a) for a in load_split("synthetic", "train"))
    xte, yte = (torch.as_tensor(a) for a in load_split("synthetic", "test"))
    torch.manual_seed(0)
    return Prototype(xtr, ytr, 10).eval(), xte[:N], yte[:N]


def _audit(model, x, y, eps=EPS, **kw):
    return run_audit(model, x, y, AuditSettings.for_mode(True, eps=eps), progress=False, **kw)


@pytest.fixture(scope="module")
def honest(data):
    return _audit(*data)


def test_honest_model_passes(honest):
    assert [c.status for c in honest.checks] == [PASS] * 6, "\n".join(
        f"{c.key} {c.status}: {c.reason}" for c in honest.checks)
    assert honest.verdict == PASS
    assert 0 < honest.robust_accuracy < honest.clean_accuracy  # a real, non-trivial robustness number
    assert honest.check("eps_sweep").numbers["unbounded_accuracy"] == 0


def test_quantised_input_fails_with_the_reason(data):
    model, x, y = data
    report = _audit(Quantised(model), x, y)
    assert report.verdict == FAIL
    grads = report.check("gradients")
    assert grads.status == FAIL and grads.numbers["fraction"] == 1.0 and "zero" in grads.reason
    assert report.check("eps_sweep").status == FAIL and "not ~0" in report.check("eps_sweep").reason
    assert report.check("autoattack_flags").status == FAIL
    assert "zero gradient" in report.check("autoattack_flags").reason


def test_saturated_softmax_fails_with_the_reason(data):
    model, x, y = data
    report = _audit(Saturated(model), x, y, eps=24 / 255)  # where CW breaks ~40% of the images
    assert report.verdict == FAIL
    losses = report.check("losses")
    assert losses.status == FAIL
    assert losses.numbers["losses"]["ce"] - losses.numbers["losses"]["cw"] > 0.1  # CE is fooled, CW is not
    assert "PGD-CE is" in losses.reason
    assert report.check("gradients").status == FAIL
    assert report.check("eps_sweep").status == FAIL
    # AutoAttack's own checks miss this one: the audit's other checks are what catch it
    assert report.check("autoattack_flags").status == PASS


def test_transfer_attack_from_a_surrogate(data):
    model, x, y = data
    # at 28/255 the unmasked twin is broken everywhere; its adversarial examples transfer
    report = _audit(Quantised(model), x, y, eps=28 / 255, surrogate=model, use_autoattack=False)
    bb = report.check("black_box")
    assert bb.numbers["transfer"] is not None and bb.numbers["square"] is None
    assert bb.status == FAIL and "transfer" in bb.reason  # the unmasked twin's examples transfer
    assert report.check("autoattack_flags").status == WARN and "switched off" in report.check("autoattack_flags").reason


def test_missing_pyautoattack_warns_with_install_hint(data, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    model, x, y = data
    report = _audit(model, x[:16], y[:16])
    for key in ("black_box", "losses", "autoattack_flags"):
        check = report.check(key)
        assert check.status == WARN and "pip install 'pyautoattack>=0.2'" in check.reason, (key, check.reason)


@pytest.mark.parametrize("numbers, status", [
    (([0.0, 0.1, 1.0], [0.9, 0.5, 0.0]), PASS),
    (([0.0, 0.1, 1.0], [0.9, 0.5, 0.03]), WARN),
    (([0.0, 0.1, 1.0], [0.9, 0.5, 0.2]), FAIL),
    (([0.0, 0.1, 0.2, 1.0], [0.9, 0.3, 0.5, 0.0]), FAIL),  # rises by 20% with eps
])
def test_eps_sweep_thresholds(numbers, status):
    assert C.check_eps_sweep(*numbers, n=200, thresholds=Thresholds()).status == status


def test_gap_thresholds_and_flags():
    th = Thresholds()
    conv = C.check_convergence(short_steps=20, steps=100, restarts=3, acc_short=0.50, acc_long=0.45,
                               acc_restarts=0.35, n=256, thresholds=th)
    assert conv.status == FAIL and "15.0% lower" in conv.reason
    assert C.check_black_box(white_box=0.4, square=0.37, transfer=None, n=256, thresholds=th).status == PASS
    assert C.check_black_box(white_box=0.4, square=None, transfer=None, n=256, thresholds=th).status == WARN
    assert C.check_gradients(zero=0, nonfinite=1, zero_clean=0, zero_random=0, n=256, thresholds=th).status == FAIL
    assert classify_flag("there are 3 points with zero gradient! ...") == FAIL
    assert classify_flag("apgd-t: 3 classes, so 2 target classes instead of 9") == WARN
    assert C.check_autoattack_flags([]).status == PASS


@pytest.fixture
def ckpt(tmp_path, data):
    """An exported (state_dict + model card) small CNN: the CLI's loading path."""
    from robustrain.config import config_to_dict, load_config
    from robustrain.artifacts.checkpoint import FORMAT, save_checkpoint
    from robustrain.build import build_model

    cfg = load_config(None, ["data.name=synthetic", "model.name=small_cnn", "model.width=4", "method=pgd_at"])
    torch.manual_seed(0)
    path = tmp_path / "run" / "best.pt"
    save_checkpoint({"format": FORMAT, "config": config_to_dict(cfg), "model": build_model(cfg).state_dict(),
                     "ema": None, "epoch": 1}, path)
    return path


def test_cli_writes_report_json_and_figure(ckpt, capsys):
    pytest.importorskip("matplotlib")
    code = main(["audit", str(ckpt.parent), "--quick", "--n", "16", "--device", "cpu", "--no-progress",
                 "--eps", "4/255"])
    assert code == 0
    out = capsys.readouterr().out
    assert "eps_sweep" in out and "verdict " in out
    base = ckpt.parent / "best-audit"
    result = json.loads(base.with_suffix(".json").read_text())
    assert result["verdict"] in (PASS, WARN, FAIL) and len(result["checks"]) == 6
    assert result["n"] == 16 and result["settings"]["eps"] == pytest.approx(4 / 255)
    assert result["meta"]["checkpoint"] == str(ckpt) and result["meta"]["method"] == "pgd_at"
    md = base.with_suffix(".md").read_text()
    assert f"**Verdict: {result['verdict']}**" in md and "What it means" in md and "Athalye" in md
    assert base.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, code, words", [
    (["--eps", "2"], 2, "--eps"),
    (["--n", "0"], 2, "--n"),
    (["--surrogate", "nope.pt"], 1, "nope.pt"),
])
def test_cli_bad_input_one_line(ckpt, capsys, args, code, words):
    assert main(["audit", str(ckpt), "--no-progress", "--device", "cpu", *args]) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("robustrain: error:") and words in err


def test_eval_points_to_the_audit_when_autoattack_flags(ckpt, capsys, monkeypatch):
    from robustrain.attacks.autoattack import AutoAttackResult, AutoAttackSpec

    def fake(self, model, images, labels, **kw):
        return AutoAttackResult(0.25, 0.5, int(images.shape[0]), ("there are 2 points with zero gradient!",), {})

    monkeypatch.setattr(AutoAttackSpec, "evaluate", fake)
    assert main(["eval", str(ckpt), "--attacks", "natural,aa", "--n", "4", "--no-progress", "--device", "cpu"]) == 0
    assert f"robustrain audit {ckpt}" in capsys.readouterr().out
