"""Adaptive attacks (issue 21): EOT-PGD against a randomized defence, BPDA against a
non-differentiable input quantisation, and the audit that reruns them.

One small MLP is trained for 300 seeded steps on a 4-class synthetic task (about a second). At
the radius used here PGD breaks nearly every image of the undefended model. Wrapped in either toy
defence, plain PGD reports a large robust accuracy; the adaptive attack brings it back to within
a few points of the undefended model's. Tolerances are gaps measured on this machine with room
to spare; no float is pinned.

The randomized defence: Gaussian input noise in front of the model, whose logits also carry a
small ripple of high frequency ``a cos(w v_c . z)`` (a stand-in for the rough loss surface of
real randomized defences). One draw's gradient is dominated by the ripple at a random phase, so
plain PGD walks at random; the ripple averages out over the noise
(``E cos(w v.(x + s n)) = cos(w v.x) exp(-s^2 w^2 / 2)``, ~e^-50 here), so the EOT gradient is the
model's own. Its clean accuracy is the model's.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks import BPDA, EOTPGD, create_attack, cw_inf, eot_pgd, pgd
from robustrain.attacks.autoattack import run_autoattack
from robustrain.attacks.eot import eot_gradient
from robustrain.config import load_config
from robustrain.eval import build_eval_attacks, describe_protocol, evaluate_robustness
from robustrain.eval.audit import AuditSettings, format_markdown, format_text, run_audit
from robustrain.eval.audit.run import BPDA_HINT
from robustrain.utils.errors import ConfigError

NUM_CLASSES, IMAGE = 4, (3, 8, 8)
EPS = 0.18  # where PGD breaks ~all of the undefended model's images
KW = dict(eps=EPS, alpha=EPS / 4, steps=20)


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One random prototype image per class plus Gaussian noise, in [0, 1]."""
    protos = torch.rand(NUM_CLASSES, *IMAGE, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return (protos[y] + 0.15 * torch.randn(n, *IMAGE, generator=g)).clamp(0, 1), y


class Noisy(nn.Module):
    """The randomized toy defence (module docstring): ``net(z) + a cos(w z V)``, z = x + s N(0, 1)."""

    def __init__(self, net: nn.Module, sigma: float = 0.05, amplitude: float = 0.1, freq: float = 200.0) -> None:
        super().__init__()
        self.net, self.sigma, self.amplitude, self.freq = net, sigma, amplitude, freq
        v = torch.randn(torch.Size(IMAGE).numel(), NUM_CLASSES, generator=torch.Generator().manual_seed(3))
        self.register_buffer("v", v / v.norm(dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x + self.sigma * torch.randn_like(x)
        return self.net(z) + self.amplitude * torch.cos(self.freq * z.flatten(1) @ self.v)


def quantise(x: torch.Tensor, levels: int = 8) -> torch.Tensor:
    return torch.round(x * levels) / levels


class Quantised(nn.Module):
    """The non-differentiable toy defence: round the input to 9 levels (zero gradient a.e.)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(quantise(x))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = synthetic(2048, seed=1)
    for _ in range(300):
        i = torch.randint(0, len(x), (64,))
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic(128, seed=7)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def undefended(net, data) -> float:
    x, y = data
    torch.manual_seed(1)
    acc = accuracy(net, pgd(net, x, y, **KW), y)
    assert accuracy(net, x, y) > 0.95 and acc < 0.1  # a model PGD breaks at this radius
    return acc


# --------------------------------------------------------------------------- (a) EOT
def test_eot_pgd_breaks_a_randomized_defence(net, data, undefended):
    x, y = data
    defence = Noisy(net)
    torch.manual_seed(2)
    assert accuracy(defence, x, y) > 0.95  # the noise costs no clean accuracy
    plain = accuracy(defence, pgd(defence, x, y, **KW), y)
    adaptive = accuracy(defence, eot_pgd(defence, x, y, samples=16, **KW), y)
    # measured over three image seeds: undefended 0-1%, plain PGD 90-94%, EOT-PGD-20x16 1-4%
    assert plain - undefended > 0.5, (plain, undefended)
    assert adaptive - undefended < 0.08, (adaptive, undefended)


# --------------------------------------------------------------------------- (b) BPDA
def test_bpda_breaks_input_quantisation(net, data, undefended):
    x, y = data
    defence = Quantised(net)
    assert accuracy(defence, x, y) > 0.95
    torch.manual_seed(3)
    plain = accuracy(defence, pgd(defence, x, y, **KW), y)
    wrapped = BPDA(net, quantise)
    assert torch.equal(wrapped(x), defence(x))  # the wrapper's forward is the defence's
    adaptive = accuracy(defence, pgd(wrapped, x, y, **KW), y)
    # measured over three image seeds: undefended 0-1%, plain PGD 100% (zero gradient: it stays at the
    # random start), BPDA-PGD 0-2%
    assert plain - undefended > 0.5, (plain, undefended)
    assert adaptive - undefended < 0.1, (adaptive, undefended)


def test_every_attack_runs_through_bpda(net, data):
    """CW and APGD (through the AutoAttack adapter) run on the wrapper unchanged, and break it."""
    x, y = data[0][:32], data[1][:32]
    defence, wrapped = Quantised(net), BPDA(net, quantise)
    assert accuracy(defence, cw_inf(wrapped, x, y, eps=EPS, alpha=EPS / 4, steps=20), y) < 0.15
    opts = {"apgd.n_iter": 10, "apgd.n_restarts": 1}
    common = dict(attacks=["apgd-ce"], version="custom", eps=EPS, seed=0, progress=False, options=opts)
    plain = run_autoattack(defence, x, y, **common)
    through = run_autoattack(wrapped, x, y, **common)
    assert plain.accuracy - through.accuracy > 0.5, (plain.accuracy, through.accuracy)
    assert not any("zero gradient" in f for f in through.flags)


def test_bpda_approx_gradient_is_the_approximation():
    """Backward through BPDA is the vector-Jacobian product of ``approx`` (hand-computed)."""
    x = torch.tensor([0.1, 0.6], requires_grad=True)
    out = BPDA(nn.Identity(), quantise, approx=lambda v: v ** 2)(x)
    assert out.tolist() == [0.125, 0.625]
    out.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.2, 1.2]))  # d(v^2)/dv = 2v
    with pytest.raises(ValueError, match="keep the input shape"):
        BPDA(nn.Identity(), lambda v: v[:1])(torch.rand(2, 3))
    with pytest.raises(ValueError, match="preprocess must be a callable"):
        BPDA(nn.Identity(), 3)


# --------------------------------------------------------------------------- (c) honest models
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_an_honest_model_is_unchanged(net, data, norm):
    x, y = data
    kw = dict(KW, norm=norm, eps=EPS if norm == "linf" else 1.0, alpha=EPS / 4 if norm == "linf" else 0.25)

    def run(attack, model, **extra):
        return attack(model, x, y, generator=torch.Generator().manual_seed(5), **kw, **extra)

    reference = run(pgd, net)
    assert torch.equal(run(eot_pgd, net, samples=1), reference)  # the same code path, bit for bit
    assert torch.equal(run(pgd, BPDA(net, lambda v: v)), reference)  # straight through the identity
    assert torch.allclose(run(pgd, BPDA(net, lambda v: v, approx=lambda v: v)), reference, atol=1e-6)
    many = run(eot_pgd, net, samples=4)
    if norm == "linf":  # the sign of the mean of 4 equal gradients is the sign of one
        assert torch.equal(many, reference)
    else:
        assert torch.allclose(many, reference, atol=1e-5)


# --------------------------------------------------------------------------- (e) the EOT gradient
class Draws(nn.Module):
    """f(x; r) = [r w.x, 0] with r taken in turn from ``draws``: a random model whose draws are known."""

    def __init__(self, w: list[float], draws: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.draws, self.k = draws, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.draws[self.k % len(self.draws)]
        self.k += 1
        z = r * (x @ self.w)
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def test_eot_gradient_is_the_mean_over_draws():
    x, y = torch.tensor([[0.5, 0.25]]), torch.tensor([0])
    # w.x = 0.5 - 0.5 = 0, so z = 0 for every draw and dCE/dz = -(1 - softmax) = -0.5:
    # draw r has gradient -0.5 r w; the mean over r in {1, 3} is -0.5 * 2 * w = -w = [-1, 2]
    model = Draws([1.0, -2.0], [1.0, 3.0])
    ce = lambda logits, t: F.cross_entropy(logits, t, reduction="none")  # noqa: E731
    grad = eot_gradient(model, ce, x.clone(), y, samples=2)
    assert torch.allclose(grad, torch.tensor([[-1.0, 2.0]]))
    model.k = 0
    assert torch.allclose(eot_gradient(model, ce, x.clone(), y, samples=1), torch.tensor([[-0.5, 1.0]]))


def test_eot_step_follows_the_mean_not_one_draw():
    """Draws r in {+1, -3} of the loss z_0 = r w.x: one draw says +w, the mean (1 - 3) / 2 w = -w."""
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    logit0 = lambda logits, t: logits[:, 0]  # noqa: E731
    kw = dict(eps=0.1, alpha=0.1, steps=1, start="zero", loss=logit0)
    one = pgd(Draws([1.0, -2.0], [1.0, -3.0]), x, y, **kw)
    mean = eot_pgd(Draws([1.0, -2.0], [1.0, -3.0]), x, y, samples=2, **kw)
    assert torch.allclose(one, torch.tensor([[0.6, 0.4]]))   # x + 0.1 sign(w)
    assert torch.allclose(mean, torch.tensor([[0.4, 0.6]]))  # x - 0.1 sign(w)


# --------------------------------------------------------------------------- names, configs, eval
def test_eot_attack_names():
    a = create_attack("eot-pgd50x32")
    assert isinstance(a, EOTPGD) and (a.steps, a.samples, a.eps) == (50, 32, 8 / 255)
    assert (create_attack("eot-pgd").steps, create_attack("eot-pgd").samples) == (20, 16)
    built = build_eval_attacks(["natural", "eot-pgd5x2"], eps=4 / 255)
    assert built["eot-pgd5x2"].eps == 4 / 255 and built["eot-pgd5x2"].samples == 2
    assert "EOT-PGD-5x2" in describe_protocol(built)
    assert build_eval_attacks(["eot-pgd3x2"], norm="L2")["eot-pgd3x2"].norm == "l2"
    with pytest.raises(ValueError, match="steps and samples must be >= 1"):
        create_attack("eot-pgd0x4")
    with pytest.raises(KeyError, match="unknown attack"):
        build_eval_attacks(["eot-pgdx4"])
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        EOTPGD(samples=0)


def test_eot_names_in_configs():
    cfg = load_config(None, ["eval.final_attacks=natural,pgd20,eot-pgd20x16"])
    assert cfg.eval.final_attacks == ("natural", "pgd20", "eot-pgd20x16")
    with pytest.raises(ConfigError, match="eot-pgd0x16"):
        load_config(None, ["eval.final_attacks=natural,eot-pgd0x16"])
    with pytest.raises(ConfigError, match="robustrain list attacks"):
        load_config(None, ["eval.final_attacks=natural,eot-pgdd"])


def test_evaluate_robustness_with_eot(net, data):
    x, y = data[0][:64], data[1][:64]
    defence = Noisy(net)
    res = evaluate_robustness(defence, x, y, build_eval_attacks(["pgd20", "eot-pgd20x8"], eps=EPS, alpha=EPS / 4),
                              progress=False)
    assert res.accuracy["pgd20"] - res.accuracy["eot-pgd20x8"] > 0.5, res.accuracy


# --------------------------------------------------------------------------- (d) the audit
def _audit(model, data, n=64, **kw):
    x, y = data
    return run_audit(model, x[:n], y[:n], AuditSettings.for_mode(True, eps=EPS), use_autoattack=False,
                     progress=False, **kw)


def test_audit_reruns_a_random_model_with_eot(net, data):
    report = _audit(Noisy(net), data)
    (eot,) = [r for r in report.adaptive if r.key == "eot"]
    assert "outputs differ between two passes on 64 of 64 images" in eot.trigger
    assert eot.reported - eot.adaptive > 0.5, eot
    assert report.robust_accuracy <= eot.adaptive
    line = f"reported {100 * eot.reported:.1f}%, adaptive {100 * eot.adaptive:.1f}%"
    assert line in format_text(report) and line in format_markdown(report)
    assert "## Adaptive attacks" in format_markdown(report)
    assert report.to_dict()["adaptive"][0]["attack"] == "EOT-PGD-10x8"


def test_audit_reruns_a_named_preprocessing_with_bpda(net, data):
    report = _audit(net, data, preprocess=quantise)
    assert report.check("gradients").status == "FAIL"
    (bpda,) = report.adaptive
    assert bpda.key == "bpda" and bpda.attack == "BPDA + PGD-10"
    assert bpda.reported - bpda.adaptive > 0.5, bpda
    assert f"reported {100 * bpda.reported:.1f}%, adaptive {100 * bpda.adaptive:.1f}%" in format_text(report)


def test_audit_says_how_to_name_the_preprocessing(net, data):
    report = _audit(Quantised(net), data, n=32)
    (bpda,) = report.adaptive
    assert bpda.adaptive is None and bpda.note == BPDA_HINT
    text = format_text(report)
    assert BPDA_HINT in text and "preprocess=fn" in text


def test_audit_of_an_honest_model_adds_nothing(net, data):
    assert _audit(net, data, n=32).adaptive == []
