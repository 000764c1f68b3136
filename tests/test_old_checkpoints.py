"""A checkpoint written before the layering redesign (no model card, selection state at the top
level, method buffers under their old names) still evaluates, exports and resumes.

``tests/data/pre_redesign_uiat_best.pt`` was written by commit 4cca0fb (the last commit before the
redesign): ``uiat`` on ``synthetic``, ``small_cnn`` width 4, one epoch; that run's final table
said natural accuracy 0.15625 on the first 32 test images.
"""

import shutil
from pathlib import Path

import pytest
import torch

from robustrain.artifacts import export_model, load_checkpoint, load_model
from robustrain.config import config_from_dict, upgrade_saved_config
from robustrain.data import load_split
from robustrain.eval import evaluate_checkpoint
from robustrain.train import fit

OLD = Path(__file__).parent / "data" / "pre_redesign_uiat_best.pt"


def test_the_fixture_really_is_old():
    ckpt = torch.load(OLD, weights_only=True)
    assert "model_card" not in ckpt and "callbacks" not in ckpt and "best_epoch" in ckpt


def test_old_best_pt_evaluates_to_the_number_it_had():
    x, y = load_split("synthetic", "test")
    rec = evaluate_checkpoint(OLD, x[:32], y[:32], ["natural"], progress=False)
    assert rec.accuracy == {"natural": 0.15625}
    assert rec.loaded.spec.model == "small_cnn" and rec.loaded.meta["method"] == "uiat"


def test_old_best_pt_exports(tmp_path):
    weights, card = export_model(OLD, tmp_path / "m.pt")
    exported = load_model(weights)
    original = load_model(OLD)
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(exported.model(x), original.model(x))


def test_old_checkpoint_resumes_with_its_selection_and_method_state(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(OLD, run / "last.pt")
    cfg = config_from_dict(load_checkpoint(OLD)["config"])
    # resume restores model, optimiser, method buffers (old names), RNG and the selection state,
    # then (1 epoch done of 1) recomputes the final table
    summary = fit(cfg, run_dir=run, resume=True, progress=False, verbose=False)
    assert summary["best_epoch"] == load_checkpoint(OLD)["best_epoch"]
    assert summary["final"] == {"natural": pytest.approx(0.15625)}


def test_old_uiat_run_resumes_with_the_bn_mode_it_was_trained_with(tmp_path):
    """Issue 19 changed the target's BatchNorm mode; a run saved before it says nothing about the
    mode, so it continues with the old one (eval, and F(x^) from the training forward)."""
    saved = load_checkpoint(OLD)["config"]
    assert "target_bn_mode" not in saved["method"] and "adv_features" not in saved["method"]
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(OLD, run / "last.pt")
    summary = fit(config_from_dict(saved), run_dir=run, resume=True, progress=False, verbose=False)
    method = summary["config"]["method"]
    assert (method["target_bn_mode"], method["adv_features"]) == ("eval", "training_forward")
    # a new run writes the new keys, and the upgrade never overrides a value a config states
    assert config_from_dict({"method": "uiat"}).method.params.target_bn_mode == "train_frozen_stats"
    stated = {"method": {**saved["method"], "target_bn_mode": "train"}}
    assert upgrade_saved_config(stated)["method"]["target_bn_mode"] == "train"
