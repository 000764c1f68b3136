"""Markdown table of finished runs: final accuracies and seconds per training epoch.

    python benchmarks/summarize_runs.py runs/compare/*      # one row per run folder

Reads each run's ``summary.json`` (final table) and ``metrics.jsonl`` (epoch times).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    rows = []
    for p in map(Path, paths):
        if not (p / "summary.json").exists():
            continue
        s = json.loads((p / "summary.json").read_text())
        epochs = [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines() if x.strip()]
        sec = statistics.median(e["epoch_time_s"] for e in epochs)
        cfg = s["config"]
        label = cfg["method"]["name"] if p.name == cfg["method"]["name"] else f"{cfg['method']['name']} ({p.name})"
        rows.append((label, s["final"], sec, s["checkpoint"], s["checkpoint_epoch"], len(epochs)))
    cols = sorted({k for r in rows for k in r[1]}, key=["natural", "pgd20", "cw30"].index)
    print("| run | " + " | ".join(cols) + " | s/epoch (median) | checkpoint |")
    print("|---|" + "---:|" * (len(cols) + 1) + "---|")
    for name, acc, sec, ck, ep, n in rows:
        print(f"| {name} | " + " | ".join(f"{100 * acc[c]:.2f}" for c in cols) + f" | {sec:.1f} | {ck} (epoch {ep}/{n}) |")


if __name__ == "__main__":
    main(sys.argv[1:])
