"""The GPU proof (issue 14): ONE prepared command that checks correctness, measures speed and
trains a small multi-seed result on one CUDA device, within a wall-clock budget.

    python benchmarks/gpu_suite.py --out benchmarks/results/                 # one GPU, 480 s
    python benchmarks/gpu_suite.py --budget 330 --out benchmarks/results/    # a shorter slot
    python benchmarks/gpu_suite.py --smoke --out /tmp/gs                     # CPU, toy size (tests)

Writes ``<out>/<device-slug>-<date>.json`` (everything: commands, device, torch, what ran, what
was skipped and why, every number) and ``.md`` (the tables). Parts, in order:

1. correctness: the CUDA-only tests of tests/ (those whose ``skipif`` reason names CUDA, or
   marked ``cuda``); evaluation really runs without TF32 (clean logits and PGD-20 under
   ``fp32_eval`` against an fp64 copy of the model; TF32 shown as the contrast); bf16 keeps
   input gradients non-zero (fp16 tried too, without loss scaling); compiled and eager training
   steps agree; no host sync inside a training step (``torch.cuda.set_sync_debug_mode``); a
   one-process ``torchrun`` run of the trainer ends with the same weights as the plain run,
   plus an NCCL probe (process group, all-reduce, DDP step) under torchrun.
2. speed: full training steps of every method, interleaved rounds, medians, images/s and
   seconds per 50,000-image epoch, ratios to ``pgd_at``, for several settings (model, batch,
   fp32/bf16, channels_last, compile) in priority order, with ResNet-50 at 224 px (robustrain's
   ``resnet50`` and ``timm:resnet50``, the PGD-AT of configs/imagenet/pgd_at_resnet50.yaml: the step
   rate ``loader_throughput.py`` sizes the data workers for); where a target is missed, a profile
   (top kernels, data-loading share, host syncs). Targets are reported, never asserted.
3. result: the library's ``study`` table (``robustrain reproduce study``: pgd_at, trades, uiat,
   uiat_oneoff, pgd_at+awp, trades+awp) with ResNet-18 on cifar10-mini, seeds x rows for as many
   epochs as the budget allows, natural / PGD-20 / CW30 / worst case on all 1,017 test images,
   mean +- std and paired differences to pgd_at (95% t-interval over seeds, from
   ``robustrain.reproduce``), plus one paired fp32 vs bf16 pgd_at run.
4. evaluation speed: PGD-20, CW30 and standard AutoAttack seconds per 1,000 images on the
   part-3 pgd_at model, and torchattacks' PGD-20 when it is importable (not a dependency).

A planner gives every part a share of the budget; items that would not fit are skipped and
listed with the reason. ``--smoke`` runs every part at toy size on the CPU (small_cnn width 4,
2 batches, 1 seed; compile with Dynamo's ``eager`` backend; AutoAttack with cut iterations) so
the test suite keeps this file from rotting; the CUDA-only checks say "skipped: no CUDA" there
(on a CUDA machine the smoke run stays on the CPU and says so).
Without ``--smoke`` on a machine without CUDA it stops with one line.

This file is the entry point; the code is the package ``benchmarks/gpusuite/`` (one module per
part, see its ``__init__``). It also stays the pytest plugin (``pytest -p gpu_suite``, with
benchmarks/ on ``PYTHONPATH``) and the NCCL probe's torchrun child (``--nccl-probe PATH``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpusuite and _common, also when loaded as a plugin

# `pytest -p gpu_suite` loads this file as a plugin: the hook is the plugin module's (torch only)
from gpusuite.plugin import pytest_collection_modifyitems  # noqa: E402,F401


def main(argv: list[str] | None = None) -> int:
    from gpusuite.cli import main as run  # the suite's imports only when it runs, not in the plugin

    return run(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
