"""The report of a suite run: one JSON-ready dict (:func:`build_report`: commands, device,
every item with status, seconds, note and details, what was skipped and why, every number) and
its markdown (:func:`markdown`: one section per part, then the skipped items and commands)."""

from __future__ import annotations

import datetime
import platform
import sys
from typing import Any

import torch

from _common import machine_line
from robustrain.reproduce import render_markdown

from .suite import DATASET, Suite

__all__ = ["build_report", "device_info", "markdown"]


def device_info(suite: Suite) -> dict[str, Any]:
    """The machine, Python, torch / CUDA / cuDNN versions and the device's name."""
    info = {"type": suite.device.type, "machine": machine_line(suite.device), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "hostname": platform.node()}
    if suite.cuda:
        p = torch.cuda.get_device_properties(suite.device)
        info.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
    else:
        info["name"] = "cpu"
    return info


def build_report(suite: Suite) -> dict[str, Any]:
    """Everything the run found, as the JSON file holds it."""
    statuses = [i["status"] for i in suite.items]
    return {
        "suite": "benchmarks/gpu_suite.py", "issue": 14, "mode": "smoke" if suite.smoke else "full",
        "date": datetime.date.today().isoformat(), "command": " ".join([sys.executable, *sys.argv]),
        "device": device_info(suite), "budget_s": suite.args.budget, "wall_s": round(suite.budget.elapsed(), 1),
        "summary": {s: statuses.count(s) for s in ("pass", "fail", "error", "ran", "skipped")},
        "items": suite.items,
        "skipped": [{"part": i["part"], "name": i["name"], "why": i["note"]} for i in suite.items
                    if i["status"] == "skipped"],
        "scratch": str(suite.work) + ("" if suite.args.keep else " (deleted; --keep keeps it)"),
        "commands": suite.commands, "speed": suite.speed, "result": suite.result, "eval_speed": suite.eval_speed,
        "targets_note": "targets are reported, not asserted; ResNet-18 on one H100 (paper Table 2: 132 s on an A100)",
    }


# ------------------------------------------------------------------------------ markdown
def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def pct(x: float | None) -> str:
    """A fraction in [0, 1] as percent with 2 decimals."""
    return "-" if x is None else f"{100 * x:.2f}"


def markdown(rep: dict[str, Any]) -> str:
    """The markdown report: header, the four parts, skipped items, commands."""
    out = _header(rep) + _correctness(rep) + _speed(rep) + _profiles(rep) + _result(rep) + _eval_speed(rep)
    out += ["", "## Skipped", ""]
    out += [f"- {s['part']} / {s['name']}: {s['why']}" for s in rep["skipped"]] or ["- nothing"]
    out += ["", "## Commands run", ""] + [f"- `{c}`" for c in rep["commands"]]
    return "\n".join(out) + "\n"


def _header(rep: dict[str, Any]) -> list[str]:
    dev = rep["device"]
    out = [f"# GPU suite ({rep['mode']}): {dev.get('name')}, {rep['date']}", "",
           f"- command: `{rep['command']}`",
           f"- device: {dev['machine']}; CUDA {dev['cuda']}, cuDNN {dev['cudnn']}, Python {dev['python']}",
           f"- budget {rep['budget_s']:.0f} s, wall {rep['wall_s']:.0f} s; items: "
           + ", ".join(f"{v} {k}" for k, v in rep["summary"].items() if v)]
    if rep["mode"] == "smoke":
        out += ["- **smoke run**: toy sizes on the CPU (small_cnn width 4, 2 batches, 1 seed); no number here "
                "is a measurement of anything but the code paths"]
    return out


def _correctness(rep: dict[str, Any]) -> list[str]:
    out = ["", "## 1. Correctness", "", "| check | status | s | note |", "|---|---|---:|---|"]
    return out + [f"| {i['name']} | {i['status']} | {i['seconds']:.1f} | {i['note']} |" for i in rep["items"]
                  if i["part"] == "correctness"]


def _speed(rep: dict[str, Any]) -> list[str]:
    sp = rep["speed"]
    out = ["", "## 2. Speed (training steps)", ""]
    if not sp.get("rows"):
        return out + ["not measured (see skipped items)"]
    out += [f"Median of {sp['rounds']} interleaved rounds x {sp['steps']} steps; `run epoch` = the epoch of a "
            "100-epoch run the method is set to (T = 75, T' = 80: `@0.5` before T', `@0.9` after).", "",
            "| setting | method | run epoch | fwd/bwd | ms/step | img/s | s per 50k epoch | vs pgd_at | spread |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sp["rows"]:
        out.append(f"| {r['setting']} | {r['method']} | {r['run_epoch']} | {r['passes']} | {r['ms_per_step']:.1f} | "
                   f"{r['img_per_s']:.0f} | {r['s_per_50k_epoch']:.1f} | {fmt(r.get('vs_pgd_at'))} | "
                   f"{100 * r['spread']:.0f}% |")
    out += ["", "Per setting (fp32 vs bf16, channels_last, compile, batch):", "",
            "| setting | pgd_at img/s | pgd_at s per 50k epoch | uiat s per 50k epoch | uiat / pgd_at |",
            "|---|---:|---:|---:|---:|"]
    for setting in sp["settings"]:
        rs = {r["method"]: r for r in sp["rows"] if r["setting"] == setting}
        p, u = rs.get("pgd_at"), rs.get("uiat")
        out.append(f"| {setting} | {fmt(p and p['img_per_s'], 0)} | {fmt(p and p['s_per_50k_epoch'], 1)} | "
                   f"{fmt(u and u['s_per_50k_epoch'], 1)} | {fmt(u and u.get('vs_pgd_at'))} |")
    imagenet = [r for r in sp["rows"] if r.get("image_px", 32) > 32]
    if imagenet:
        out += ["", "ImageNet rows (" + ", ".join(sorted({f"{r['model']} at {r['image_px']} px" for r in imagenet}))
                + "): the PGD-AT step of `configs/imagenet/pgd_at_resnet50.yaml` (PGD-3 at 4/255, bf16, "
                "channels_last), 1000 classes; their img/s is the step rate `benchmarks/loader_throughput.py` "
                "sizes the decoding workers for (their `s per 50k epoch` is no ImageNet epoch: 1.28M images)."]
    out += ["", "| target (reported, not asserted) | value | best setting | met |", "|---|---:|---|---|"]
    return out + [f"| {t['target']} | {t['value']:.2f} | {t['setting']} | {'yes' if t['met'] else 'NO'} |"
                  for t in sp.get("targets", [])]


def _profiles(rep: dict[str, Any]) -> list[str]:
    out = []
    for i in (i for i in rep["items"] if i["name"].startswith("profile ")):
        out += ["", f"Profile of {i['name'][8:]}: {i['note']}", "", "| op / kernel | self ms | share | calls |",
                "|---|---:|---:|---:|"]
        out += [f"| `{k['name']}` | {k['self_ms']:.2f} | {100 * k['share']:.1f}% | {k['calls']} |"
                for k in i["details"].get("top_kernels", [])]
    return out


def _result(rep: dict[str, Any]) -> list[str]:
    """Part 3: the library's own rendering of the study table (headings one level down), after
    the suite's overrides, which supersede what the table's title says about model and epochs."""
    res = rep["result"]
    data = "synthetic (smoke)" if rep["mode"] == "smoke" else DATASET
    out = ["", f"## 3. Result: the `study` table on {data}, natural / PGD-20 / CW30 / worst (%)", ""]
    table = res.get("table") if res else None
    if not table or not any(r["seeds"] for r in table["rows"]):
        return out + ["not run (see skipped items)"]
    out += [f"{res['epochs']} epoch(s) per run, seeds {res['seeds']}, on {rep['device'].get('name')}: the rows of "
            "`robustrain reproduce study` with the overrides its notes list (they replace the title's model and "
            "epochs); mean ± std over seeds, paired differences to PGD-AT with 95% t-intervals (n >= 2).", ""]
    out += [ln.replace("## ", "### ", 1) if ln.startswith("## ") else ln
            for ln in render_markdown(table).rstrip("\n").splitlines()]
    fb = res.get("fp32_vs_bf16")
    if fb:
        out += ["", f"fp32 vs bf16 ({fb['row']}, seed {fb['seed']}, paired): "
                + ", ".join(f"{k} {fb['fp32'][k]:.2f} vs {fb['bf16'][k]:.2f} (bf16 - fp32 {d:+.2f})"
                            for k, d in fb["bf16_minus_fp32"].items())]
    return out


def _eval_speed(rep: dict[str, Any]) -> list[str]:
    ev = rep["eval_speed"]
    out = ["", "## 4. Evaluation speed (fp32, eval mode)", ""]
    if not ev or not ev.get("rows"):
        return out + ["not run (see skipped items)"]
    out += [f"Model: {ev['model']}.", "", "| attack | images | s per 1,000 images | accuracy % | note |",
            "|---|---:|---:|---:|---|"]
    for name, r in ev["rows"].items():
        note = r.get("protocol", "")
        if "ours_over_theirs" in r:
            note = f"ours / torchattacks time = {r['ours_over_theirs']:.2f}"
        out.append(f"| {name} | {r['n']} | {r['s_per_1000']:.2f} | {pct(r['accuracy'])} | {note} |")
    return out
