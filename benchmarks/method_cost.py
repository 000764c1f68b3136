"""Training-step cost of methods as a ratio to PGD-AT: the training rows of throughput.py.

Kept so that the commands quoted in docs/results.md still run; the code is in
``benchmarks/throughput.py`` (same options, plus evaluation rows unless ``--no-eval``).

    python benchmarks/method_cost.py --methods pgd_at,uiat,uiat_oneoff --epoch 0.9 --steps 2 --rounds 6
"""

from __future__ import annotations

import sys

from throughput import main  # benchmarks/ is sys.path[0] when run as a script

if __name__ == "__main__":
    main(["--no-eval", "--pretrain-steps", "0", *sys.argv[1:]])
