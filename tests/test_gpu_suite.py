"""benchmarks/gpu_suite.py (issue 14), the entry script of the package benchmarks/gpusuite/: its
``--smoke`` run, every part at toy size on the CPU, so that the GPU suite cannot break unseen;
the full mode's one-line refusal without CUDA; and the entry script staying a light pytest
plugin (``pytest -p gpu_suite`` loads it).

All run the script in a subprocess (one torch thread), as a person would; ~20-35 s together
on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "gpu_suite.py"
#: why the CUDA-only checks did not run in the smoke run (it runs on the CPU, CUDA or not)
NO_CUDA = "skipped: --smoke runs on the CPU" if torch.cuda.is_available() else "skipped: no CUDA"
CUDA_ONLY = ("no host sync in a training step", "torchrun world size 1 = plain run", "NCCL probe under torchrun")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SUITE), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_smoke_runs_every_part(tmp_path):
    proc = _run(["--smoke", "--out", str(tmp_path)], timeout=170)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (report,) = tmp_path.glob("cpu-smoke-*.json")
    rep = json.loads(report.read_text())
    md = report.with_suffix(".md").read_text()
    assert rep["mode"] == "smoke" and rep["device"]["torch"] == torch.__version__
    assert rep["summary"]["error"] == 0 and rep["summary"]["fail"] == 0, [
        (i["name"], i["note"]) for i in rep["items"] if i["status"] in ("error", "fail")]
    items = {i["name"]: i for i in rep["items"]}

    # part 1: the CPU-runnable checks pass; the CUDA-only ones say why they did not run
    for name in ("eval without TF32 (fp32_eval vs fp64)", "bf16 input gradients", "compiled vs eager training step"):
        assert items[name]["status"] == "pass", items[name]
    for name in CUDA_ONLY:
        assert items[name]["status"] == "skipped" and items[name]["note"].startswith(NO_CUDA)
    cuda_tests = items["CUDA-only tests (pytest)"]
    assert cuda_tests["status"] == "skipped" and cuda_tests["note"].startswith(NO_CUDA)
    # ... and the pytest selection of the CUDA-only tests was exercised
    assert any("test_loader_on_cuda_matches_cpu" in t for t in cuda_tests["details"]["selected"])

    # part 2: every method row of the first setting, with ratios to pgd_at, and the targets
    first = rep["speed"]["settings"][0]
    rows = {r["method"]: r for r in rep["speed"]["rows"] if r["setting"] == first}
    assert set(rows) == {"pgd_at", "trades", "uiat", "uiat_oneoff@0.5", "uiat_oneoff@0.9", "n_fgsm",
                         "n_fgsm+uiat@0.5", "n_fgsm+uiat@0.9", "pgd_at+awp", "trades+awp"}
    assert rows["pgd_at"]["vs_pgd_at"] == 1.0 and rows["pgd_at"]["passes"] == "11/11"
    # AWP: the ascent's one forward/backward on the adversary found at w, not a second attack
    assert rows["pgd_at+awp"]["passes"] == "12/12" and rows["trades+awp"]["passes"] == "15/14"
    assert all(r["img_per_s"] > 0 and r["s_per_50k_epoch"] > 0 for r in rep["speed"]["rows"])
    # fp32/bf16, channels_last, compile, two batches, WRN, and the ImageNet rows: ResNet-50 (toy size)
    # with the PGD-3 of configs/imagenet/pgd_at_resnet50.yaml, and timm's unless timm is missing
    timm_item = items["speed setting timm:resnet50~timm:test_resnet 64px b8 bf16 cl"]
    from robustrain.models.timm_backbone import require_timm
    from robustrain.utils import MissingExtraError

    try:
        require_timm()
        has_timm = True
    except MissingExtraError:  # timm needs a torchvision this CPU torch lacks: said, not silently dropped
        has_timm = False
        assert timm_item["status"] == "skipped" and "timm not importable" in timm_item["note"], timm_item
    assert len(rep["speed"]["settings"]) == 9 + has_timm
    (r50,) = [r for r in rep["speed"]["rows"] if r["model"] == "resnet50"]
    assert r50["method"] == "pgd_at" and r50["passes"] == "4/4" and r50["image_px"] == 64 and r50["img_per_s"] > 0
    assert {t["method"] for t in rep["speed"]["targets"]} == {"uiat", "pgd_at"}
    assert any(n.startswith("profile ") and i["status"] == "ran" for n, i in items.items())

    # part 3: the library's study table (its rows, not a copy) x 1 seed + the bf16 twin; the paired
    # statistics are reproduce's and honest about n = 1
    from robustrain.reproduce import TABLES

    res = rep["result"]
    rows = {r["id"]: r for r in res["table"]["rows"]}
    assert list(rows) == res["rows"] == [r.id for r in TABLES.get("study").rows]
    assert res["table"]["table"] == "study" and all(r["seeds"] == 1 for r in rows.values())
    assert len(res["runs"]) == len(rows) + 1 and res["runs"]["pgd_at s0 bf16"]["bf16"]
    d = rows["uiat"]["paired"]["pgd20"]
    assert d["n"] == 1 and d["baseline"] == "pgd_at" and d["half_width"] is None and d["low"] is None
    assert set(res["fp32_vs_bf16"]["bf16_minus_fp32"]) == {"natural", "pgd20", "cw", "worst"}
    assert any(c.startswith("the same table by hand: robustrain reproduce study") for c in rep["commands"])

    # part 4: evaluation seconds per 1,000 images; torchattacks only when importable
    assert {"natural", "pgd20", "cw30"} <= set(rep["eval_speed"]["rows"])
    ta = items["eval torchattacks PGD-20"]
    try:
        import torchattacks  # noqa: F401
    except ImportError:
        assert ta["status"] == "skipped" and "not importable" in ta["note"]

    # the record: commands, what was skipped and why; the markdown has every section
    assert any("robustrain train" in c for c in rep["commands"])
    assert all(s["why"] for s in rep["skipped"])
    for heading in ("## 1. Correctness", "## 2. Speed", "## 3. Result", "## 4. Evaluation speed", "## Skipped"):
        assert heading in md
    assert "gpu_suite: smoke run" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_full_mode_refuses_without_cuda(tmp_path):
    proc = _run(["--out", str(tmp_path)], timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA" in lines[0], proc.stderr
    assert not list(tmp_path.iterdir())


def test_entry_script_is_a_light_pytest_plugin():
    """``pytest -p gpu_suite`` imports the entry script: it must expose the selection hook
    without importing the suite (robustrain) itself."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import gpu_suite; "
            "print(callable(gpu_suite.pytest_collection_modifyitems), 'robustrain' in sys.modules)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.split() == ["True", "False"], proc.stdout + proc.stderr
