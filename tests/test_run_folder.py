"""The run folder as a transaction (issue 12): an epoch's files are committed together, one writer
at a time, damaged checkpoints are refused, unusable folders are refused before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY

from robustrain.artifacts import RunDir, load_checkpoint, save_checkpoint
from robustrain.cli import main
from robustrain.config import load_config
from robustrain.train import fit
from robustrain.utils.errors import CheckpointError, NonFiniteLossError, RunFolderError, RunLockedError

FAST = TINY + ["guard.enabled=false"]  # 2 epochs; the second is selected


def _strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.endswith("time_s")}


def _run(tmp_path: Path, name: str, extra=()) -> tuple:
    cfg = load_config(None, FAST + list(extra) + [f"out_dir={tmp_path}", f"name={name}"])
    return cfg, RunDir(tmp_path / name)


def _files(rd: RunDir) -> dict:
    last, best = load_checkpoint(rd.last), load_checkpoint(rd.best)
    return {"metrics": [_strip(r) for r in rd.read_metrics()], "last_epoch": last["epoch"],
            "best_epoch": best["epoch"], "best_weights": best["model"], "last_weights": last["model"],
            "final": rd.read_summary()["final"], "selected": rd.read_summary()["best_epoch"]}


def _same(a: dict, b: dict) -> None:
    assert a["metrics"] == b["metrics"]
    assert (a["last_epoch"], a["best_epoch"], a["final"], a["selected"]) == (
        b["last_epoch"], b["best_epoch"], b["final"], b["selected"])
    for key in ("best_weights", "last_weights"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    # a module fixture runs before the suite's per-test thread setting: use the same 2 threads, or
    # CPU reductions of a short last batch differ in the last digits
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tmp = tmp_path_factory.mktemp("full")
        cfg, rd = _run(tmp, "full")
        fit(cfg, progress=False, verbose=False)
    finally:
        torch.set_num_threads(before)
    files = _files(rd)
    assert files["selected"] == 2  # the interrupted commits below involve best.pt
    return files


@pytest.mark.parametrize("step", ["after_last", "after_best", "in_metrics_write", "before_summary"])
def test_an_interrupted_epoch_commit_resumes_to_the_uninterrupted_files(step, tmp_path, monkeypatch, uninterrupted,
                                                                         capsys):
    cfg, rd = _run(tmp_path, "cut")
    real_copy, real_metrics, real_summary = RunDir.copy_last_to_best, RunDir.write_metrics, RunDir.write_summary
    calls = {"n": 0}

    def in_epoch_2(history):
        return len(history) == 2

    def copy(self):
        if step == "after_last" and load_checkpoint(self.last)["epoch"] == 2:
            raise KeyboardInterrupt
        real_copy(self)

    def metrics(self, history):
        if step == "after_best" and in_epoch_2(history):
            raise KeyboardInterrupt
        if step == "in_metrics_write" and in_epoch_2(history):
            self.metrics.write_text(self.metrics.read_text() + '{"epoch": 2, "tr')  # a torn non-atomic write
            raise KeyboardInterrupt
        real_metrics(self, history)

    def summary(self, data):
        if step == "before_summary":
            raise KeyboardInterrupt
        real_summary(self, data)

    monkeypatch.setattr(RunDir, "copy_last_to_best", copy)
    monkeypatch.setattr(RunDir, "write_metrics", metrics)
    monkeypatch.setattr(RunDir, "write_summary", summary)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, progress=False, verbose=False)
    monkeypatch.undo()
    assert not rd.summary.exists()
    fit(cfg, run_dir=rd.path, resume=True, progress=False, verbose=False)
    _same(_files(rd), uninterrupted)
    err = capsys.readouterr().err
    if step in ("after_last", "after_best", "in_metrics_write"):
        assert "robustrain: repaired" in err


def test_a_second_writer_is_refused_naming_the_pid(tmp_path, capsys):
    rd = RunDir(tmp_path / "busy")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom robustrain.artifacts import RunDir\n"
         f"with RunDir({str(rd.path)!r}).lock():\n    print('locked', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(["train", *FAST, f"out_dir={tmp_path}", "name=busy", "--overwrite"])
        err = capsys.readouterr().err.strip()
        assert code == 1 and len(err.splitlines()) == 1
        assert f"PID {holder.pid}" in err and "in use" in err
        with pytest.raises(RunLockedError):
            with rd.lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    # the lock died with its process: a new writer gets it at once
    with rd.lock():
        assert (rd.path / RunDir.LOCK).read_text() == str(os.getpid())


def test_temp_files_of_killed_writes_are_removed_on_the_next_start(tmp_path, capsys):
    cfg, rd = _run(tmp_path, "tmpfiles", ["train.epochs=1"])
    rd.path.mkdir(parents=True)
    (rd.path / ".last.pt.abc123.tmp").write_bytes(b"half")
    fit(cfg, progress=False, verbose=False)
    assert not list(rd.path.glob(".*.tmp"))
    assert "removed .last.pt.abc123.tmp" in capsys.readouterr().err


def test_a_checkpoint_with_changed_content_is_refused(tmp_path, capsys):
    cfg, rd = _run(tmp_path, "flip", ["train.epochs=1"])
    fit(cfg, progress=False, verbose=False)
    ckpt = torch.load(rd.last, weights_only=True)
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.numel() > 10)
    ckpt["model"][key] = ckpt["model"][key].contiguous()
    ckpt["model"][key].view(-1)[3] += 1e-3  # a flipped bit in the weights, the checksum kept
    torch.save(ckpt, rd.last)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(rd.last)
    assert main(["eval", str(rd.last), "--attacks", "natural", "--n", "8"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "damaged" in err and str(rd.last) in err


def test_flipped_bytes_in_the_file_never_load_silently(tmp_path):
    cfg, rd = _run(tmp_path, "bytes", ["train.epochs=1"])
    fit(cfg, progress=False, verbose=False)
    raw = bytearray(rd.best.read_bytes())
    ckpt = load_checkpoint(rd.best)
    # a 1-D tensor: its bytes lie in the file in this order
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.ndim == 1 and v.numel() >= 16
               and len(set(v.tolist())) > 4)
    pattern = ckpt["model"][key].numpy().tobytes()[:64]
    at = bytes(raw).find(pattern)
    assert at > 0  # torch.save stores tensors uncompressed
    raw[at + 5] ^= 0x10
    rd.best.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        load_checkpoint(rd.best)


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_an_unusable_out_dir_is_refused_before_any_work(where, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if where == "file" else blocker / "sub"
    code = main(["train", *FAST, f"out_dir={out}", "name=x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "out_dir" in err
    assert blocker.read_text() == "a file"


def test_a_read_only_run_folder_is_refused_before_training(tmp_path, monkeypatch, capsys):
    cfg, rd = _run(tmp_path, "ro", ["train.epochs=1"])
    fit(cfg, progress=False, verbose=False)
    stamp = rd.last.stat().st_mtime_ns
    # root ignores permission bits, so the test asks the writability check itself
    monkeypatch.setattr("robustrain.artifacts.run_dir.os.access", lambda path, mode: False)
    code = main(["train", "--resume", str(rd.path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not writable" in err and len(err.splitlines()) == 1
    assert rd.last.stat().st_mtime_ns == stamp
    with pytest.raises(RunFolderError):
        RunDir(tmp_path / "other").ensure_writable()


def test_a_failed_build_leaves_no_run_folder(tmp_path):
    cfg, rd = _run(tmp_path / "new" / "runs", "nodata", ["data.extra.path=/nonexistent/gen.npz"])
    with pytest.raises(Exception):
        fit(cfg, progress=False, verbose=False)
    assert not (tmp_path / "new").exists()  # nor the folders above it that the start created


def test_nan_advice_can_be_followed(tmp_path, monkeypatch, capsys):
    import robustrain.build as build_mod

    real = build_mod.create_method

    def poisoned(*args, **kwargs):
        method = real(*args, **kwargs)
        forward = method.forward

        def nan_in_epoch_2(model, batch):
            out = forward(model, batch)
            return out._replace(loss=out.loss * float("nan")) if method.epoch == 1 and model.training else out

        method.forward = nan_in_epoch_2
        return method

    monkeypatch.setattr(build_mod, "create_method", poisoned)
    cfg, rd = _run(tmp_path, "nan")
    with pytest.raises(NonFiniteLossError) as info:
        fit(cfg, progress=False, verbose=False)
    advice = str(info.value)
    assert f"--resume {rd.path} optim.lr=" in advice
    monkeypatch.undo()
    command = advice.split("`")[1].split()  # the command the message gives, as a user would paste it
    assert main(command[1:] + ["--no-progress"]) == 0
    summary = rd.read_summary()
    assert summary["resumed_with"] == [{"epoch": 1, "overrides": ["optim.lr=0.05"]}]
    assert rd.read_metrics()[1]["resumed_with"] == ["optim.lr=0.05"]
    assert load_checkpoint(rd.last)["config"]["optim"]["lr"] == 0.05

    # no epoch completed: the advice says to start again, not to resume
    cfg1, rd1 = _run(tmp_path, "nan1")

    def poisoned_now(*args, **kwargs):
        method = real(*args, **kwargs)
        forward = method.forward
        method.forward = lambda model, batch: (lambda out: out._replace(loss=out.loss * float("nan")))(
            forward(model, batch))
        return method

    monkeypatch.setattr(build_mod, "create_method", poisoned_now)
    with pytest.raises(NonFiniteLossError, match="start again") as info:
        fit(cfg1, progress=False, verbose=False)
    assert "--resume" not in str(info.value)


@pytest.mark.parametrize("args, message", [
    (["--overwrite"], "contradict"),
    (["model.width=8"], "accepts only"),
    (["--config", "x.yaml"], "drop --config"),
])
def test_resume_refuses_what_would_change_the_run(args, message, tmp_path, capsys):
    cfg, rd = _run(tmp_path, "res", ["train.epochs=1"])
    fit(cfg, progress=False, verbose=False)
    assert main(["train", "--resume", str(rd.path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_resume_from_a_checkpoint_without_optimizer_state_is_one_line(tmp_path, capsys):
    cfg, rd = _run(tmp_path, "noopt", ["train.epochs=1"])
    fit(cfg, progress=False, verbose=False)
    ckpt = load_checkpoint(rd.last)
    del ckpt["optimizer"], ckpt["checksum"]
    save_checkpoint(ckpt, rd.last)
    assert main(["train", "--resume", str(rd.path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "lacks optimizer" in err and len(err.splitlines()) == 1
