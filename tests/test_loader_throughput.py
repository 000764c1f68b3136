"""benchmarks/loader_throughput.py: the workers-needed arithmetic, the default worker counts, and
finding the ResNet-50 224 px PGD-AT step rate in gpu_suite.py reports (full runs only)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import loader_throughput as lt  # noqa: E402


def test_workers_needed_rounds_up():
    assert lt.workers_needed(900.0, 120.0) == 8  # 7.5 -> 8
    assert lt.workers_needed(240.0, 120.0) == 2  # exact: no extra worker
    assert lt.workers_needed(1.0, 500.0) == 1
    with pytest.raises(ValueError, match="must be > 0"):
        lt.workers_needed(100.0, 0.0)


def test_default_workers():
    assert lt.default_workers(1) == [0, 1]
    assert lt.default_workers(2) == [0, 1, 2]
    assert lt.default_workers(16) == [0, 1, 2, 4, 8, 16]


def _report(path: Path, mode: str, rows: list[dict], mtime: float) -> None:
    path.write_text(json.dumps({"mode": mode, "date": "2026-12-07", "device": {"name": "GPU X"},
                                "speed": {"rows": rows}}))
    os.utime(path, (mtime, mtime))


def test_step_rate_from_the_newest_full_report(tmp_path):
    row = {"setting": "resnet50 224px b256 bf16 cl", "method": "pgd_at", "model": "resnet50", "image_px": 224,
           "img_per_s": 800.0}
    other = {**row, "setting": "resnet18 b128 fp32", "model": "resnet18", "image_px": 32, "img_per_s": 9000.0}
    assert lt.step_rate_from_reports(tmp_path) is None
    _report(tmp_path / "old.json", "full", [row], 1000)
    _report(tmp_path / "new.json", "full", [other, {**row, "img_per_s": 950.0}], 2000)
    _report(tmp_path / "cpu-smoke.json", "smoke", [{**row, "img_per_s": 5.0}], 3000)  # never a smoke run's
    (tmp_path / "broken.json").write_text("{not json")
    rate, where = lt.step_rate_from_reports(tmp_path)
    assert rate == 950.0 and "new.json" in where and "GPU X" in where and "resnet50 224px" in where
