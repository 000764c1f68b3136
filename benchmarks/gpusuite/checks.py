"""Part 1, correctness: what must hold on a GPU before any speed number means anything.

Each check returns ``(status, note, details)`` and is run through :meth:`Suite.check` (budget,
errors recorded); the CUDA-only ones say why they were skipped on the CPU:

* the CUDA-only tests of ``tests/`` (selected by the pytest plugin, :mod:`gpusuite.plugin`);
* evaluation really runs without TF32 (``fp32_eval`` against an fp64 copy; TF32 as contrast);
* bf16 autocast keeps input gradients non-zero (fp16 without loss scaling tried too);
* compiled and eager training steps agree (strict fp32);
* no implicit host sync inside a training step of any method (CUDA);
* the trainer under one-process ``torchrun`` ends with the plain run's weights (CUDA);
* an NCCL probe under torchrun (:mod:`gpusuite.nccl`, CUDA).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import sys
import time
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from _common import make_optimizer, parse_method, split_awp, sync, train_step_fn
from robustrain.attacks import create_attack
from robustrain.methods import create_method
from robustrain.utils.runtime import fast_math, fp32_eval, no_tf32, seed_everything

from .builders import EPOCHS, METHOD_ROWS, compile_model, method_ctx, new_model, pretrain, test_images, train_batch
from .suite import BENCH, Suite, sub_env

__all__ = ["run_correctness", "state_diff"]

Outcome = tuple[str, str, dict]


def run_correctness(suite: Suite) -> None:
    """Every check of part 1, in order of what a failure would invalidate."""
    suite.check("eval without TF32 (fp32_eval vs fp64)", 15, lambda: check_fp32_eval(suite))
    suite.check("bf16 input gradients", 10, lambda: check_bf16_grads(suite))
    suite.check("no host sync in a training step", 25, lambda: check_no_sync(suite), cuda_only=True)
    suite.check("torchrun world size 1 = plain run", 75, lambda: check_torchrun(suite), cuda_only=True)
    suite.check("NCCL probe under torchrun", 25, lambda: check_nccl(suite), cuda_only=True)
    check_cuda_tests(suite)
    suite.check("compiled vs eager training step", 4 if suite.smoke else 100, lambda: check_compile(suite))


def state_diff(a: dict, b: dict) -> dict[str, float]:
    """Largest absolute difference of two state dicts' float tensors, and relative to max |a|."""
    diff, scale = 0.0, 0.0
    for k, v in a.items():
        if torch.is_tensor(v) and v.is_floating_point():
            diff = max(diff, float((v.double() - b[k].double()).abs().max()))
            scale = max(scale, float(v.double().abs().max()))
    return {"max_abs": diff, "max_rel": diff / scale if scale else 0.0}


def check_cuda_tests(suite: Suite) -> None:
    """The CUDA-only tests of tests/ under pytest; on the CPU only their selection is exercised."""
    name = "CUDA-only tests (pytest)"
    env = {**sub_env(), "GPU_SUITE_CUDA_ONLY": "1"}
    base = [sys.executable, "-m", "pytest", "-p", "gpu_suite", "-p", "no:cacheprovider", "-q"]
    try:
        import pytest  # noqa: F401
    except ImportError:
        suite.skip(name, "pytest is not installed here")
        return
    if not suite.cuda:
        # the selection itself is exercised (one file) so that it cannot rot unseen
        if suite.args.smoke_collect:
            proc = suite.run_cmd(base + ["--collect-only", "tests/test_data.py"], 120, env)
            ids = [ln for ln in proc.stdout.splitlines() if "::" in ln]
            suite.record(name, "skipped", note=f"{suite.no_cuda} (selection checked on tests/test_data.py: "
                         f"{len(ids)} CUDA test(s) found)", selected=ids, rc=proc.returncode)
        else:
            suite.skip(name, suite.no_cuda)
        return
    if not suite.fits(name, 60):
        return
    t0 = time.perf_counter()
    proc = suite.run_cmd(base + ["-rs", "tests"], suite.budget.left(), env)
    tail = proc.stdout.strip().splitlines()[-15:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", tail[-1] if tail else "")}
    status = "pass" if proc.returncode == 0 else "fail"
    suite.record(name, status, time.perf_counter() - t0, tail[-1] if tail else "no output",
                 counts=counts, rc=proc.returncode, output_tail=tail + proc.stderr.strip().splitlines()[-5:])


def check_fp32_eval(suite: Suite) -> Outcome:
    """Clean logits and PGD-20 of the fp32 model under fp32_eval vs an fp64 copy."""
    model = new_model(suite)
    pretrain(suite, model, steps=2 if suite.smoke else 20)
    x8, y = test_images(suite.scale.check_n)
    x = x8.to(suite.device).float() / 255
    y = y.to(suite.device)
    ref = copy.deepcopy(model).double()
    with fp32_eval(ref), torch.no_grad():
        logits64 = ref(x.double())
    with fp32_eval(model), torch.no_grad():
        logits32 = model(x)
    scale = float(logits64.abs().max())
    err_eval = float((logits32.double() - logits64).abs().max()) / scale
    with fast_math(suite.device), torch.no_grad():  # the training context: TF32 on CUDA
        was = model.training
        model.eval()
        err_tf32 = float((model(x).double() - logits64).abs().max()) / scale
        model.train(was)
    attack = create_attack("pgd20", start="zero")  # no random start: both see the same path
    with fp32_eval(model):
        adv32 = attack(model, x, y)
    with fp32_eval(ref):
        adv64 = attack(ref, x.double(), y)
    with fp32_eval(ref), torch.no_grad():
        p32, p64 = ref(adv32.double()).argmax(1), ref(adv64).argmax(1)
    same_px = float(((adv32.double() - adv64).abs() <= 1e-6).float().mean())
    details = {"images": int(x.shape[0]), "clean_logits_rel_err_fp32_eval": err_eval,
               "clean_logits_rel_err_tf32": err_tf32, "pgd20_pixels_equal": same_px,
               "pgd20_robust_acc_fp32": float((p32 == y).float().mean()),
               "pgd20_robust_acc_fp64": float((p64 == y).float().mean()),
               "pgd20_prediction_agreement": float((p32 == p64).float().mean())}
    ok = err_eval < 1e-4
    note = (f"logits rel. err {err_eval:.1e} under fp32_eval vs {err_tf32:.1e} with TF32 on; PGD-20 "
            f"pixels equal {100 * same_px:.1f}%, predictions agree {100 * details['pgd20_prediction_agreement']:.0f}%")
    if suite.cuda and err_tf32 < 10 * err_eval:
        note += " (TF32 error not larger: this GPU may not use TF32, the contrast shows nothing)"
    if not suite.cuda:
        note += " (CPU: no TF32 exists here, the code path only)"
    return ("pass" if ok else "fail"), note, details


def check_bf16_grads(suite: Suite) -> Outcome:
    """Fraction of exactly-zero input-gradient entries under fp32, bf16 and fp16 autocast."""
    model = new_model(suite)
    batch, _ = train_batch(suite, suite.scale.batches[0])
    x0 = batch.x.float() / 255 if batch.x.dtype == torch.uint8 else batch.x
    fractions: dict[str, Any] = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16 (no loss scaling)", torch.float16)):
        x = x0.clone().requires_grad_(True)
        try:
            with fp32_eval(model) if dtype is None else contextlib.nullcontext():
                model.eval()  # the attacks' BatchNorm mode
                with torch.autocast(suite.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = F.cross_entropy(model(x), batch.y)
                (g,) = torch.autograd.grad(loss.float(), x)
            fractions[name] = float((g == 0).float().mean())
            fractions[name + " non-finite"] = float((~torch.isfinite(g)).float().mean())
        except RuntimeError as e:
            fractions[name] = f"not run: {str(e).splitlines()[0]}"
    model.train()
    # the library's own training attack under bf16 autocast: how many pixels does it move?
    attack = create_attack("pgd")
    with torch.autocast(suite.device.type, dtype=torch.bfloat16):
        adv = attack(model, x0, batch.y)
    fractions["pgd10 under bf16: pixels moved"] = float(((adv - x0).abs() > 0).float().mean())
    ok = isinstance(fractions["bf16"], float) and fractions["bf16"] <= fractions["fp32"] + 0.01
    fp16 = fractions["fp16 (no loss scaling)"]
    note = (f"zero input-gradient entries: fp32 {100 * fractions['fp32']:.2f}%, bf16 {100 * fractions['bf16']:.2f}%, "
            + (f"fp16 {100 * fp16:.2f}% (tried, without loss scaling)" if isinstance(fp16, float) else f"fp16 {fp16}"))
    return ("pass" if ok else "fail"), note, {"batch": int(x0.shape[0]), **fractions}


def check_compile(suite: Suite) -> Outcome:
    """One pgd_at training step, eager vs compiled, same seed, strict fp32 (no TF32)."""
    batch, num_ids = train_batch(suite, suite.scale.batches[0])
    eager = new_model(suite)
    compiled_base = copy.deepcopy(eager)
    compiled = compile_model(suite, compiled_base)
    out = {}
    for label, net, base in (("eager", eager, eager), ("compiled", compiled, compiled_base)):
        method = create_method("pgd_at", method_ctx(suite, num_ids)).to(suite.device)
        opt = make_optimizer(base, suite.device)
        losses = []
        with no_tf32():
            for step in range(2):  # the second step reuses the graphs of the first
                seed_everything(step)
                res = method(net, batch)
                opt.zero_grad(set_to_none=True)
                res.loss.backward()
                opt.step()
                losses.append(float(res.loss.detach()))
        out[label] = (losses, base.state_dict())
    loss_rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(out["eager"][0], out["compiled"][0]))
    diff = state_diff(out["eager"][1], out["compiled"][1])
    ok = loss_rel < 1e-3 and diff["max_rel"] < 1e-3
    backend = suite.scale.compile_backend
    note = (f"2 pgd_at steps, backend {backend}: loss rel. diff {loss_rel:.1e}, weights max rel. diff "
            f"{diff['max_rel']:.1e}" + (" (smoke: Dynamo tracing only, no Inductor code)" if backend == "eager" else ""))
    return ("pass" if ok else "fail"), note, {"losses_eager": out["eager"][0], "losses_compiled": out["compiled"][0],
                                              "loss_max_rel_diff": loss_rel, "weights": diff, "backend": backend}


def check_no_sync(suite: Suite) -> Outcome:
    """Implicit host syncs per training step of every method (after warm-up); the counts are
    kept on the suite for part 2's profiles."""
    batch, num_ids = train_batch(suite, suite.scale.batches[0])
    model = new_model(suite)
    counts, first = {}, {}
    for spec in METHOD_ROWS:
        name, frac = parse_method(spec, 0.9)
        base, awp = split_awp(name)
        method = create_method(base, method_ctx(suite, num_ids)).to(suite.device)
        method.set_epoch(int(frac * EPOCHS))
        step = train_step_fn(method, model, make_optimizer(model, suite.device), batch, bf16=False,
                             device=suite.device, awp=awp)
        step()  # warm-up: cuDNN autotuning, lazy state
        sync(suite.device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step()
            finally:
                torch.cuda.set_sync_debug_mode(0)
        syncs = [w for w in caught if "synchroniz" in str(w.message)]
        counts[spec] = len(syncs)
        if syncs:
            first[spec] = f"{syncs[0].filename}:{syncs[0].lineno}: {str(syncs[0].message)[:120]}"
    suite.sync_counts = counts
    ok = not any(counts.values())
    note = "syncs per step: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    return ("pass" if ok else "fail"), note, {"syncs_per_step": counts, "first_sync": first,
                                              "caveat": "set_sync_debug_mode sees implicit syncs "
                                                        "(.item(), nonzero, DtoH copies), not every stall"}


def _trainer_overrides(suite: Suite, name: str) -> list[str]:
    return ["data.name=cifar10-mini", f"model={suite.scale.model}", "method=pgd_at", "train.epochs=1",
            "train.device=cuda", "eval.n=64", "eval.final_n=64", "eval.final_attacks=natural",
            "guard.enabled=false", f"out_dir={suite.work / 'torchrun'}", f"name={name}"]


def check_torchrun(suite: Suite) -> Outcome:
    """The trainer twice plainly (the noise floor) and once under torchrun (world size 1)."""
    train = ["-m", "robustrain", "train", "--no-progress"]
    runs = {"plain": [sys.executable, *train], "plain-again": [sys.executable, *train],
            "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", *train]}
    states, out = {}, {}
    for name, cmd in runs.items():
        proc = suite.run_cmd(cmd + _trainer_overrides(suite, name), max(suite.budget.left(), 30))
        out[name] = {"rc": proc.returncode, "tail": (proc.stdout + proc.stderr).strip().splitlines()[-5:]}
        if proc.returncode != 0:
            return "fail", f"{name} run failed (rc {proc.returncode})", out
        ckpt = torch.load(suite.work / "torchrun" / name / "last.pt", map_location="cpu", weights_only=True)
        states[name] = ckpt["model"]
    floor = state_diff(states["plain"], states["plain-again"])
    diff = state_diff(states["plain"], states["torchrun"])
    ok = diff["max_abs"] <= max(10 * floor["max_abs"], 1e-6)
    note = (f"1 epoch pgd_at {suite.scale.model}: torchrun vs plain max |dw| {diff['max_abs']:.1e} "
            f"(plain vs plain {floor['max_abs']:.1e}); NB world size 1 creates no process group in "
            "robustrain (init_distributed), so NCCL itself is checked by the probe")
    return ("pass" if ok else "fail"), note, {"torchrun_vs_plain": diff, "plain_vs_plain": floor, "runs": out}


def check_nccl(suite: Suite) -> Outcome:
    """The NCCL probe (:func:`gpusuite.nccl.nccl_probe`) as a torchrun child of the entry script."""
    res_file = suite.work / "nccl.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           str(BENCH / "gpu_suite.py"), "--nccl-probe", str(res_file)]
    proc = suite.run_cmd(cmd, 120)
    if proc.returncode != 0 or not res_file.exists():
        return "fail", f"probe failed (rc {proc.returncode})", {"tail": (proc.stdout + proc.stderr).splitlines()[-8:]}
    res = json.loads(res_file.read_text())
    ok = res["all_reduce_ok"] and res["ddp_grad_max_abs_diff"] == 0.0
    return ("pass" if ok else "fail"), (f"backend {res['backend']}, all_reduce ok {res['all_reduce_ok']}, DDP vs "
                                        f"plain grad diff {res['ddp_grad_max_abs_diff']:.1e} (world size 1)"), res
