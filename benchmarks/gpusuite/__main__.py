"""``python -m gpusuite`` (from benchmarks/): the same as ``python benchmarks/gpu_suite.py``."""

import sys

from gpusuite.cli import main

sys.exit(main())
