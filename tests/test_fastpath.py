"""The one-GPU fast path on CPU: torch.compile wiring, bf16 training vs fp32 evaluation.

torch.compile runs with ``backend="eager"`` here: Dynamo traces, guards and caches exactly as
with inductor (so recompilations show up the same way), without the minutes of C++ codegen.
"""


import pytest
import torch
from torch._dynamo.utils import counters

from robustrain.attacks import pgd
from robustrain.attacks.functional import NORMS, _linf_project
from robustrain.config import load_config
from robustrain.utils.errors import ConfigError
from robustrain.data.batch import Batch
from robustrain.methods import MethodContext, create_method
from robustrain.models import create_model
from robustrain.artifacts import load_checkpoint
import robustrain.eval.robust as robust_mod
from robustrain.artifacts.model_card import ModelSpec
from robustrain.build import build_model
from robustrain.train import loop as loop_mod
from robustrain.train import callbacks as callbacks_mod
from robustrain.utils.runtime import fast_math
from robustrain.train import fit

EPS = 8 / 255


@pytest.fixture
def dynamo():
    """Fresh Dynamo caches and counters, reset again afterwards (other tests see none)."""
    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()
    counters.clear()


def tiny_model():
    torch.manual_seed(0)
    return create_model("small_cnn", 10, width=4).train()


def tiny_batch(n=8, size=16):
    g = torch.Generator().manual_seed(1)
    return Batch(torch.rand(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))


@pytest.fixture
def fast_overrides(tiny_overrides):
    """The conftest's tiny run, cheaper still: a 4-channel net, 1-step attacks, FGSM evaluation."""
    return tiny_overrides + [
        "model.width=4", "method.steps=1", "eval.attack=fgsm", "eval.final_attacks=[natural,fgsm]",
        "guard.attack=fgsm", "guard.n=16",
    ]


def ctx(epochs=4):
    return MethodContext(num_classes=10, image_shape=(3, 16, 16), num_train=8, epochs=epochs)


# --------------------------------------------------------------------------- compile
def test_compile_needs_drop_last():
    with pytest.raises(ConfigError, match="data.drop_last=true"):
        load_config(None, ["train.compile=true"])
    assert load_config(None, ["train.compile=true", "data.drop_last=true"]).train.compile


def test_compiled_training_has_no_recompilation_and_clean_checkpoints(fast_overrides, dynamo, monkeypatch):
    """train.compile through fit(): uiat with 3 attack steps, 2 epochs x 8 steps, the momentum
    starting with the second epoch. uiat has the most distinct forwards of any method, each
    one graph built during the first step: the attack's (eval mode, input gradient), the
    training forward with features, F(x) (no grad), the universal step (eval mode, gradient
    w.r.t. z, with features) and the target (no grad). No graph is added later in the first
    epoch, and the second epoch runs with recompilation made an error."""
    monkeypatch.setitem(loop_mod.COMPILE_OPTIONS, "backend", "eager")
    cfg = load_config(None, fast_overrides + [
        "train.compile=true", "data.drop_last=true", "method=uiat", "method.steps=3", "method.alpha=2/255",
        "method.momentum_start=0.5",
    ])
    graphs = []
    no_recompile = torch._dynamo.config.patch(error_on_recompile=True)

    def on_epoch_end(epoch, record):
        graphs.append(dynamo["stats"]["unique_graphs"])
        if epoch == 1:
            no_recompile.__enter__()

    try:
        summary = fit(cfg, overwrite=True, progress=False, verbose=False, on_epoch_end=on_epoch_end)
    finally:
        no_recompile.__exit__(None, None, None)
    # evaluation (guard, per epoch, final) runs the uncompiled model and adds no graph
    assert graphs == [5, 5]
    ckpt = load_checkpoint(f"{summary['run_dir']}/last.pt")
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
    # the checkpoint loads into a plain model (what `robustrain eval` does)
    build_model(cfg).load_state_dict(ckpt["model"])


# --------------------------------------------------------------------------- bf16 / fp32
def test_bf16_attack_keeps_perturbation_fp32_and_inside_eps():
    model = tiny_model()
    batch = tiny_batch()
    dtypes = []
    model.register_forward_hook(lambda m, args, out: dtypes.append((out[0] if isinstance(out, tuple) else out).dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(model, batch.x, batch.y, eps=EPS, alpha=2 / 255, steps=3, bn_mode="eval")
        method = create_method("uiat", ctx(), steps=2)
        out = method(model, batch)
    assert set(dtypes) == {torch.bfloat16}  # autocast really ran the forwards in bf16
    assert x_adv.dtype == torch.float32
    assert (x_adv - batch.x).abs().max() <= EPS  # exact: projection and clamp in fp32
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert method.targets.z.dtype == torch.float32 and method.targets.z.abs().max() <= method.params.eps_inv
    out.loss.backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in model.parameters())


def test_eval_is_fp32_while_training_in_bf16(fast_overrides, monkeypatch):
    seen = {"train": set(), "eval": set()}
    phase = ["train"]
    real_build = ModelSpec.build

    def build(spec, device="cpu", **kwargs):
        model = real_build(spec, device, **kwargs)
        model.register_forward_hook(
            lambda m, args, out: seen[phase[0]].add((out[0] if isinstance(out, tuple) else out).dtype))
        return model

    def as_evaluation(fn):
        """``fn`` with the forwards it runs counted as evaluation."""
        def wrapped(*args, **kwargs):
            phase[0] = "eval"
            try:
                return fn(*args, **kwargs)
            finally:
                phase[0] = "train"
        return wrapped

    # every model (trained, and loaded for the final table) is built from its ModelSpec; every
    # evaluation (guard, per epoch on the EMA weights, final) goes through evaluate_robustness,
    # and the guard's one-class check (issue 19) through one_class_share
    monkeypatch.setattr(ModelSpec, "build", build)
    monkeypatch.setattr(robust_mod, "evaluate_robustness", as_evaluation(robust_mod.evaluate_robustness))
    monkeypatch.setattr(callbacks_mod, "evaluate_robustness", as_evaluation(callbacks_mod.evaluate_robustness))
    monkeypatch.setattr(callbacks_mod, "one_class_share", as_evaluation(callbacks_mod.one_class_share))
    cfg = load_config(None, fast_overrides + ["train.bf16=true", "train.epochs=1", "train.ema=true"])
    fit(cfg, overwrite=True, progress=False, verbose=False)
    assert seen["train"] == {torch.bfloat16}
    assert seen["eval"] == {torch.float32}  # guard, per-epoch (EMA weights) and final evaluation


# --------------------------------------------------------------------------- pieces
def test_linf_projector_equals_min_max_projection_then_clamp():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 5, 5, generator=g) * 1.2 - 0.1  # also pixels outside the box
    v = x + (torch.rand(x.shape, generator=g) - 0.5) * 0.2
    for eps in (0.0, EPS, 0.5):
        expected = _linf_project(x, v, eps).clamp(0.0, 1.0)
        assert torch.equal(NORMS["linf"].projector(x, eps, 0.0, 1.0)(v), expected)


def test_fast_math_sets_tf32_on_cuda_only_and_restores():
    matmul, conv, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn
    before = (matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark)
    # the flags are plain process settings, so the CUDA branch runs on a CPU-only build too
    with fast_math(torch.device("cuda")):
        assert (matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark) == ("tf32", "tf32", True)
    assert (matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark) == before
    with fast_math(torch.device("cpu")):
        assert (matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark) == before
