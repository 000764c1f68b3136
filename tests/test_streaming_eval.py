"""Evaluating what was trained on a streaming dataset (issue 20 follow-up): ``eval``, ``audit``,
``analyze``, ``report``, ``export`` and the HAT helper check read the test split through the
saved config's data section (:func:`robustrain.artifacts.eval_data`,
:func:`robustrain.data.load_eval_split`), not through the in-memory registry.

One tiny run (small_cnn width 4, 32x32, one epoch) on the ImageNet-layout folder that
tests/test_streaming.py makes; its final table is on the first 8 test images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_streaming import CLASSES, SMALL_RUN, VAL_PER_CLASS, _make_folder

from robustrain.artifacts import check_dataset, eval_data, load_model
from robustrain.build import build_run
from robustrain.cli import main
from robustrain.config import load_config
from robustrain.data import EvalData, eval_data_info, load_eval_split
from robustrain.data.streaming import loader as streaming_loader
from robustrain.methods import MethodContext
from robustrain.methods.hat import load_helper
from robustrain.train import fit
from robustrain.utils.errors import CheckpointError, DatasetFileError

N = 8
RUN = [*SMALL_RUN, f"eval.final_n={N}", "eval.final_attacks=[natural,pgd20]", "name=r"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder, run folder): the folder is this module's own copy (a test moves it)."""
    base = tmp_path_factory.mktemp("streaming_eval")
    folder = _make_folder(base / "data")
    fit(load_config(None, [*RUN, f"data.root={folder}", f"out_dir={base / 'runs'}"]), progress=False, verbose=False)
    return folder, base / "runs" / "r"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_eval_data_of_the_checkpoint_is_the_run_view(trained):
    folder, run = trained
    loaded = load_model(run / "best.pt")
    data = eval_data(loaded)
    assert (data.name, data.root, data.image_size, data.resize, data.workers) == ("imagefolder", str(folder), 32, 32, 0)
    info = check_dataset(loaded, data)
    assert info.num_classes == 10 and info.image_shape == (3, 32, 32) and info.class_names == tuple(CLASSES)
    assert info.test_size == 10 * VAL_PER_CLASS and info.train_size == 0  # training images not listed


def test_eval_split_is_the_run_final_table_images_and_decodes_only_n(trained, monkeypatch):
    folder, run = trained
    decoded = []
    real = streaming_loader.decode_rgb
    monkeypatch.setattr(streaming_loader, "decode_rgb", lambda b: decoded.append(1) or real(b))
    split = load_eval_split(eval_data(load_model(run / "best.pt")), N)
    assert len(decoded) == N  # not the whole val/ folder
    assert split.x.shape == (N, 3, 32, 32) and split.x.dtype == torch.uint8
    assert split.y.tolist() == [k // VAL_PER_CLASS for k in range(N)]  # val/<class>/*, classes in order
    monkeypatch.undo()
    built = build_run(load_config(None, [*RUN, f"data.root={folder}"]))  # what the run's final table used
    assert torch.equal(built.test_x[:N], split.x) and torch.equal(built.test_y[:N], split.y)


def test_cli_eval_equals_the_run_final_table(trained, capsys):
    _, run = trained
    assert main(["eval", str(run / "best.pt"), "--attacks", "natural,pgd20", "--n", str(N), "--no-progress"]) == 0
    record = json.loads((run / f"best-eval-natural+pgd20-n{N}.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert record["n"] == N == summary["n_test"] and record["dataset"] == "imagefolder"
    assert record["accuracy"] == summary["final"]  # same images, model, seed and protocol


def test_cli_audit_and_analyze_and_report(trained, capsys):
    _, run = trained
    assert main(["audit", str(run / "best.pt"), "--n", str(N), "--quick", "--no-progress", "--no-figure"]) == 0
    assert json.loads((run / "best-audit.json").read_text())["meta"]["dataset"] == "imagefolder"
    assert main(["analyze", "curves", str(run)]) == 0
    assert main(["analyze", "strength", str(run), "--n", "4", "--points", "3", "--steps", "1"]) == 0
    assert json.loads((run / "strength.json").read_text())["models"][0]["n"] == 4
    assert main(["report", str(run)]) == 0


def test_export_then_eval_with_data_root(trained, tmp_path, capsys):
    folder, run = trained
    out = tmp_path / "model.pt"
    assert main(["export", str(run / "best.pt"), str(out)]) == 0
    capsys.readouterr()
    # the card keeps no folder of the training machine: one line saying what to pass
    assert main(["eval", str(out), "--attacks", "natural", "--n", str(N)]) != 0
    assert "--data-root" in _one_line(capsys)
    assert main(["eval", str(out), "--dataset", "imagefolder", "--data-root", str(folder), "--attacks",
                 "natural,pgd20", "--n", str(N), "--no-progress"]) == 0
    record = json.loads(out.with_name(f"model-eval-natural+pgd20-n{N}.json").read_text())
    assert record["n"] == N and record["accuracy"] == json.loads((run / "summary.json").read_text())["final"]


def test_moved_root_is_one_line_naming_data_root(trained, tmp_path, capsys):
    folder, run = trained
    moved = tmp_path / "moved"
    shutil.move(str(folder), str(moved))
    try:
        for cmd in (["eval", str(run / "best.pt"), "--attacks", "natural", "--n", "4"],
                    ["audit", str(run / "best.pt"), "--n", "4", "--quick"]):
            assert main(cmd) == 1
            err = _one_line(capsys)
            assert "--data-root" in err and str(folder) in err
        assert main(["eval", str(run / "best.pt"), "--attacks", "natural", "--n", "4", "--data-root", str(moved),
                     "--no-progress"]) == 0
    finally:
        shutil.move(str(moved), str(folder))


def test_shards_give_the_folder_test_images(trained, tmp_path):
    folder, _ = trained
    out = tmp_path / "shards"
    assert main(["data", "shard", str(folder), str(out), "--shard-size", "16", "--quiet"]) == 0
    view = dict(image_size=32, resize=32, workers=0)
    shards = EvalData("webdataset", root=str(out / "train" / "shard-{000000..000004}.tar"), **view)
    a, b = load_eval_split(shards, 5), load_eval_split(EvalData("imagefolder", root=str(folder), **view), 5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and eval_data_info(shards).num_classes == 10


def test_hat_helper_trained_on_a_folder(trained):
    _, run = trained
    ctx = MethodContext(num_classes=10, image_shape=(3, 32, 32), num_train=80, epochs=1)
    assert not load_helper(run / "best.pt", ctx).training
    with pytest.raises(CheckpointError, match="images"):
        load_helper(run / "best.pt", MethodContext(num_classes=10, image_shape=(3, 64, 64), num_train=80, epochs=1))


def test_missing_folder_without_root_is_one_line():
    with pytest.raises(DatasetFileError, match="--data-root"):
        load_eval_split(EvalData("imagefolder", root=None), 4)
