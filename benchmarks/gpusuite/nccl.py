"""The NCCL probe, run as a torchrun child (``gpu_suite.py --nccl-probe PATH``): a process
group on the GPU, an all-reduce, and one DDP backward against a plain one; the findings go to
the JSON file ``PATH`` (part 1 reads it). With world size 1 the trainer creates no process
group, so this is the suite's only contact with NCCL itself."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["nccl_probe"]


def nccl_probe(path: str | Path) -> None:
    """Probe NCCL on this rank's GPU and write what was found to ``path``."""
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dev = torch.device("cuda", local)
    try:  # device_id binds the group to the GPU (torch >= 2.3)
        dist.init_process_group("nccl", device_id=dev)
    except TypeError:
        dist.init_process_group("nccl")
    t = torch.ones(4, device=dev)
    dist.all_reduce(t)
    ok = bool((t == dist.get_world_size()).all())
    torch.manual_seed(0)
    plain = nn.Linear(16, 4).to(dev)
    wrapped = nn.parallel.DistributedDataParallel(copy.deepcopy(plain), device_ids=[local])
    x = torch.randn(8, 16, device=dev)
    plain(x).square().sum().backward()
    wrapped(x).square().sum().backward()
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(plain.parameters(), wrapped.module.parameters()))
    Path(path).write_text(json.dumps({"backend": dist.get_backend(), "world_size": dist.get_world_size(),
                                      "all_reduce_ok": ok, "ddp_grad_max_abs_diff": diff}))
    dist.destroy_process_group()
