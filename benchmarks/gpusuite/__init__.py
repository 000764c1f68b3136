"""The GPU suite (issue 14) as a package; ``benchmarks/gpu_suite.py`` is its entry script and
user-facing description. One module per job:

* :mod:`~gpusuite.budget`: each part's share of the wall-clock budget; the sizes of the GPU and
  the smoke mode (:class:`~gpusuite.budget.Scale`);
* :mod:`~gpusuite.suite`: :class:`~gpusuite.suite.Suite`, the run's state and record (items with
  status, seconds, note; budget checks; child processes);
* :mod:`~gpusuite.builders`: models, batches, method contexts, compiled models the parts share;
* :mod:`~gpusuite.checks`: part 1, correctness;
* :mod:`~gpusuite.speed`: part 2, training speed, targets and profiles;
* :mod:`~gpusuite.result`: part 3, the library's ``study`` reproduce table with the suite's overrides;
* :mod:`~gpusuite.eval_speed`: part 4, evaluation speed;
* :mod:`~gpusuite.report`: the JSON-ready report and its markdown;
* :mod:`~gpusuite.plugin`: the pytest plugin selecting the CUDA-only tests (``-p gpu_suite``);
* :mod:`~gpusuite.nccl`: the NCCL probe, a torchrun child of the entry script;
* :mod:`~gpusuite.cli`: the command line (``python benchmarks/gpu_suite.py``, or
  ``python -m gpusuite`` from benchmarks/).

The modules import ``_common`` (benchmarks/) as a top-level module: benchmarks/ must be on
``sys.path``, as the entry script and ``python -m gpusuite`` from benchmarks/ arrange.
"""
