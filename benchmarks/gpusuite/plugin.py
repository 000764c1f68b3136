"""The pytest plugin that selects the CUDA-only tests (part 1's first check).

``pytest -p gpu_suite`` (the entry script re-exports the hook; ``-p gpusuite.plugin`` works
too, with benchmarks/ on ``PYTHONPATH``) with ``GPU_SUITE_CUDA_ONLY=1`` keeps only the tests
that skip without CUDA: marked ``cuda``, or with a ``skipif`` whose reason names CUDA and whose
(boolean) condition is true exactly when CUDA is missing (``not torch.cuda.is_available()``;
tests that skip WHEN CUDA is there, such as "CUDA is not available" error-message tests, are
left out). Without the variable the plugin changes nothing.

Imports torch only, so loading it into pytest costs no robustrain import.
"""

from __future__ import annotations

import os

import torch

__all__ = ["ENV", "needs_cuda", "pytest_collection_modifyitems"]

ENV = "GPU_SUITE_CUDA_ONLY"


def needs_cuda(item) -> bool:
    """Whether a collected test runs only with CUDA (see the module docstring)."""
    if item.get_closest_marker("cuda") is not None:
        return True
    missing = not torch.cuda.is_available()
    for m in item.iter_markers("skipif"):
        cond = m.args[0] if m.args else m.kwargs.get("condition")
        if "cuda" in str(m.kwargs.get("reason", "")).lower() and isinstance(cond, bool) and cond == missing:
            return True
    return False


def pytest_collection_modifyitems(config, items):  # pragma: no cover - runs inside pytest
    if os.environ.get(ENV) != "1":
        return
    keep = [it for it in items if needs_cuda(it)]
    dropped = [it for it in items if not needs_cuda(it)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
