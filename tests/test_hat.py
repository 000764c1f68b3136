"""HAT: the loss against a hand computation, the helper example, the helper model's loading and
errors, and the two-step recipe (standard helper run, then HAT) end to end."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustrain.cli import main
from robustrain.config import load_config
from robustrain.utils.errors import ConfigError
from robustrain.data.batch import Batch
from robustrain.methods import MethodContext, create_method
from robustrain.methods.hat import load_helper
from robustrain.methods.losses import hat_loss
from robustrain.artifacts.checkpoint import CheckpointError, load_checkpoint
from robustrain.train import fit

CTX = MethodContext(num_classes=3, image_shape=(3, 2, 2), num_train=8, epochs=1)


def _log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def test_hat_loss_hand_computation():
    nat = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
    adv = [[0.0, 1.0, 0.0], [0.0, 0.2, 1.0]]
    hlp = [[0.0, 0.0, 2.0], [1.0, -1.0, 0.0]]
    y, y_help = [0, 1], [2, 0]
    beta, gamma = 2.5, 0.5
    ce = sum(-_log_softmax(nat[i])[y[i]] for i in range(2)) / 2
    kl = 0.0
    for i in range(2):
        lp, lq = _log_softmax(nat[i]), _log_softmax(adv[i])
        kl += sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))
    kl /= 2
    helper = sum(-_log_softmax(hlp[i])[y_help[i]] for i in range(2)) / 2
    t = hat_loss(torch.tensor(nat), torch.tensor(adv), torch.tensor(hlp), torch.tensor(y), torch.tensor(y_help),
                 beta, gamma)
    assert float(t.ce) == pytest.approx(ce, abs=1e-6)
    assert float(t.reg) == pytest.approx(kl, abs=1e-6)
    assert float(t.helper) == pytest.approx(helper, abs=1e-6)
    assert float(t.total) == pytest.approx(ce + beta * kl + gamma * helper, abs=1e-5)


class Recorder(nn.Module):
    """A linear classifier that records every input it sees."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(12, 3)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.lin(x.flatten(1))


def test_helper_example_and_labels():
    """x_help = x + h (x' - x), unclipped; ŷ = argmax helper(x'); the loss is hat_loss of the
    three training forwards."""
    h, eps, steps = 2.0, 0.25, 3
    method = create_method("hat", CTX, h=h, eps=eps, alpha=0.1, steps=steps, beta=2.5, gamma=0.5)
    helper, model = Recorder(1), Recorder(2)
    method.set_helper(helper)
    torch.manual_seed(0)
    x = torch.rand(8, 3, 2, 2) * 0.2 + 0.8  # near the top of [0, 1]: the helper example leaves it
    y = torch.randint(0, 3, (8,))
    out = method(model, Batch(x, y, torch.arange(8)))

    assert len(model.inputs) == 1 + steps + 3  # KL target, attack steps, f(x), f(x'), f(x_help)
    x_nat, x_adv, x_help = model.inputs[-3:]
    torch.testing.assert_close(x_nat, x)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    torch.testing.assert_close(x_help, x + h * (x_adv - x))
    assert x_help.max() > 1.0  # not clipped to the pixel box, as the official code
    assert (x_help - x).abs().max() > eps  # and outside the eps ball
    assert len(helper.inputs) == 1
    torch.testing.assert_close(helper.inputs[0], x_adv)
    with torch.no_grad():
        y_help = helper.lin(x_adv.flatten(1)).argmax(1)
        logits = [model.lin(v.flatten(1)) for v in (x_nat, x_adv, x_help)]
    expected = hat_loss(*logits, y, y_help, 2.5, 0.5)
    assert float(out.loss.detach()) == pytest.approx(float(expected.total), abs=1e-5)
    torch.testing.assert_close(out.logits, logits[1])
    assert all(p.grad is None for p in helper.parameters()) and not any(p.requires_grad for p in helper.parameters())


def test_zero_weights_reduce_to_natural_ce():
    method = create_method("hat", CTX, beta=0.0, gamma=0.0, steps=1)
    method.set_helper(Recorder(1))
    model = Recorder(2)
    x, y = torch.rand(8, 3, 2, 2), torch.randint(0, 3, (8,))
    out = method(model, Batch(x, y, torch.arange(8)))
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model.lin(x.flatten(1)), y)
    assert float(out.loss.detach()) == pytest.approx(float(expected), abs=1e-6)


def test_no_helper_is_a_clear_error():
    method = create_method("hat", CTX, steps=1)
    with pytest.raises(ValueError, match="method.helper"):
        method(Recorder(2), Batch(torch.rand(4, 3, 2, 2), torch.zeros(4, dtype=torch.long), torch.arange(4)))
    with pytest.raises(ConfigError, match="method.helper is required"):
        load_config(None, ["method=hat"])


def test_cli_without_helper_exits_2_nothing_written(tmp_path, capsys):
    assert main(["train", f"out_dir={tmp_path / 'runs'}", "method=hat"]) == 2
    err = capsys.readouterr().err.strip()
    assert "method.helper is required" in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_missing_helper_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*method=standard"):
        load_helper(tmp_path / "nope.pt", CTX)


def test_recipe_end_to_end_and_mismatch(tiny_overrides, tmp_path, capsys):
    """Step 1: a standard run; step 2: HAT with it as helper. A helper trained for another class
    count is rejected before anything is written."""
    tiny_overrides = tiny_overrides + ["model.width=8", "guard.enabled=false"]
    helper_cfg = load_config(None, tiny_overrides + ["method=standard", "name=helper", "train.epochs=1"])
    fit(helper_cfg, progress=False, verbose=False)
    helper_path = tmp_path / "runs" / "helper" / "last.pt"
    hat_overrides = [o for o in tiny_overrides if not o.startswith("method")]
    cfg = load_config(None, hat_overrides + ["method=hat", "method.steps=2", f"method.helper={helper_path}",
                                             "name=hat", "train.epochs=1"])
    summary = fit(cfg, progress=False, verbose=False)
    assert 0.0 <= summary["final"]["natural"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "runs" / "hat" / "last.pt")
    assert ckpt["method"] == {}  # the helper is an input, not method state
    assert "loss_helper" in (tmp_path / "runs" / "hat" / "metrics.jsonl").read_text()

    with pytest.raises(CheckpointError, match="10 classes.*this run has 3 classes"):
        load_helper(helper_path, CTX)
    code = main(["train", *hat_overrides, "method=hat", f"method.helper={helper_path}", "name=bad",
                 "data.name=cifar10-mini"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "images (3, 16, 16)" in err and "(3, 32, 32)" in err
    assert not (tmp_path / "runs" / "bad").exists()
