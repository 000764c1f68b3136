"""The plan of a suite run: each part's share of the wall-clock budget (:class:`Budget`) and
the sizes of the two modes (:class:`Scale`: the GPU run, the CPU smoke run).

A part k may run until ``start + budget * (share_1 + ... + share_k)``, so a part that finishes
early leaves its time to the next ones; :data:`RESERVE` of the budget is kept for the report.

Example:
    >>> b = Budget(100.0)
    >>> 21 < b.open_part("correctness") <= 22
    True
    >>> round(b.deadline - b.t0)  # correctness + speed
    22
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["PARTS", "RESERVE", "Budget", "Scale", "FULL", "SMOKE"]

#: (part, share of the budget), in the order the parts run; a part may also use what earlier parts left
PARTS = (("correctness", 0.22), ("speed", 0.28), ("result", 0.38), ("eval_speed", 0.09))
RESERVE = 0.03  # of the budget, kept for writing the report


class Budget:
    """Wall-clock plan: part k may run until start + budget * (share_1 + ... + share_k)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.t0 = seconds, time.perf_counter()
        self.deadline = self.t0

    def elapsed(self) -> float:
        """Seconds since the suite started."""
        return time.perf_counter() - self.t0

    def open_part(self, name: str) -> float:
        """Move the deadline to the end of part ``name``'s share; returns the seconds left."""
        done = 0.0
        for part, share in PARTS:
            done += share
            if part == name:
                break
        self.deadline = self.t0 + self.seconds * min(done, 1 - RESERVE)
        return self.left()

    def left(self) -> float:
        """Seconds until the current part's deadline (negative once it has passed)."""
        return self.deadline - time.perf_counter()


@dataclass(frozen=True)
class Scale:
    """Sizes of one mode: the GPU run, or the CPU smoke run (toy size).

    Attributes:
        model, model_kwargs: the main model of parts 1, 2 and 4.
        wrn, wrn_kwargs: the wide model of part 2's last setting.
        batches: the small and the large batch of part 2.
        check_n: images of the precision checks.
        seeds: seeds of part 3 (``--seeds`` overrides it).
        compile_backend: ``torch.compile`` backend (``eager`` in the smoke run: Dynamo only).
        eval_n: test images of part 3's table and part 4 (0 = all).
        result_overrides: ``--set`` overrides of part 3's runs (on top of the study's rows).
        aa_options: AutoAttack options (the smoke run cuts its iterations).
        imagenet_models: ``(model, kwargs)`` of part 2's ImageNet rows (1000 classes, ``imagenet_px``
            inputs, the PGD-AT of ``configs/imagenet/pgd_at_resnet50.yaml``); the loader benchmark
            (``benchmarks/loader_throughput.py``) reads their step rate.
        imagenet_px, imagenet_batch: input side and batch of those rows.
    """

    model: str
    model_kwargs: dict
    wrn: str
    wrn_kwargs: dict
    batches: tuple[int, int]
    check_n: int
    seeds: int
    compile_backend: str
    eval_n: int
    result_overrides: tuple[str, ...]
    aa_options: dict = field(default_factory=dict)
    imagenet_models: tuple[tuple[str, dict], ...] = ()
    imagenet_px: int = 224
    imagenet_batch: int = 256


FULL = Scale("resnet18", {}, "wrn28_10", {}, (128, 512), 16, 3, "inductor", 0,
             ("model=resnet18", "eval.n=256"),
             # the preset's one-GPU batch (its header: data.batch_size=256)
             imagenet_models=(("resnet50", {}), ("timm:resnet50", {})), imagenet_px=224, imagenet_batch=256)
SMOKE = Scale("small_cnn", {"width": 4}, "small_cnn", {"width": 4}, (8, 16), 4, 1, "eager", 16,
              # synthetic data (512 training images): 2 batches of 256 (cifar10-mini would need
              # batches of 2,542 for 2 batches, ~10 s per run on one CPU thread)
              ("data.name=synthetic", "model=small_cnn", "model.width=4", "data.batch_size=256", "data.drop_last=true",
               "method.steps=2", "eval.n=16", "guard.n=16"),
              {"apgd.n_iter": 2, "apgd_targeted.n_iter": 2, "apgd_targeted.n_target_classes": 1,
               "fab.n_iter": 2, "fab.n_target_classes": 1, "square.n_queries": 5},
              # the same two rows at toy size: ResNet-50 at 1/16 of its channels, timm's smallest ResNet
              imagenet_models=(("resnet50", {"width": 4}), ("timm:test_resnet", {})), imagenet_px=64,
              imagenet_batch=8)
