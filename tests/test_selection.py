"""Issue 13, part 2: ``best.pt`` is selected on a validation split held out of the TRAINING data
(never on test images), and both ``best.pt`` and ``last.pt`` are reported on the test split.

Checked here: the split's default size and its validation; that it is disjoint from the test
split (by image content) and from every training batch (by id), the guard batch included; that
it is the same for two seeds and two methods; that per-sample method buffers (UIAT momentum,
the one-off targets) stay indexed by ids into the original training split; and that the
summary and the printed table state the protocol and give best and last."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from robustrain.build import build_run
from robustrain.config import config_to_dict, load_config
from robustrain.utils.errors import ConfigError
from robustrain.data import get_dataset_info, load_split, validation_split
from robustrain.data.split import SPLIT_SEED, default_val_n
from robustrain.train import fit
from robustrain.train.callbacks import BestCheckpoint, OverfitGuard

SYN = ["data.name=synthetic", "model.width=4", "train.device=cpu"]


def _hashes(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in images]


def _epoch_ids(run, epoch: int = 0) -> torch.Tensor:
    run.loader.set_epoch(epoch)
    return torch.cat([b.idx for b in run.loader])


# ------------------------------------------------------------------------------ config key
def test_val_n_default_and_range():
    # N-FGSM's valid_size = 1000 on a full dataset; at most 10% of a small split
    assert default_val_n(50_000) == 1000 and default_val_n(73_257) == 1000
    assert default_val_n(5085) == 508 and default_val_n(512) == 51  # cifar10-mini (the main job), synthetic
    # unset = the default of whichever dataset the run uses, resolved when the run is built
    assert load_config(None, []).data.val_n is None
    assert config_to_dict(load_config(None, ["data.name=cifar10"]))["data"]["val_n"] is None
    assert load_config(None, ["data.val_n=100"]).data.val_n == 100
    assert build_run(load_config(None, SYN + ["method=standard"])).selection["n_held_out"] == 51
    assert build_run(load_config(None, SYN + ["method=standard", "data.val_n=100"])).selection["n_held_out"] == 100
    with pytest.raises(ConfigError, match="data.val_n must be an integer >= 1"):
        load_config(None, ["data.val_n=0"])  # no "select on the test set" setting
    with pytest.raises(ConfigError, match="data.val_n=5085 leaves no training image"):
        load_config(None, ["data.val_n=5085"])


def test_split_helper_is_class_balanced_disjoint_and_seeded():
    labels = load_split("cifar10-mini", "train").labels
    split = validation_split(labels, 508)
    assert split.seed == SPLIT_SEED
    train, val = set(split.train_ids.tolist()), set(split.val_ids.tolist())
    assert len(val) == 508 and train.isdisjoint(val) and train | val == set(range(len(labels)))
    counts = torch.bincount(torch.as_tensor(labels)[split.val_ids], minlength=10)
    assert int(counts.max() - counts.min()) <= 1  # class-balanced
    assert torch.equal(validation_split(labels, 508).val_ids, split.val_ids)  # a fixed seed
    assert not torch.equal(validation_split(labels, 508, seed=SPLIT_SEED + 1).val_ids, split.val_ids)


# ------------------------------------------------------------------------------ disjointness
def test_validation_images_are_training_images_never_test_images():
    cfg = load_config(None, ["method=standard", "eval.n=508", "train.device=cpu"])  # cifar10-mini
    run = build_run(cfg)
    train_x, _ = load_split("cifar10-mini", "train")
    assert run.selection["n_held_out"] == 508 and run.eval_x.shape[0] == 508
    assert torch.equal(run.eval_x, train_x[run.val_ids])
    # by content: no validation image is a test image (cifar10-mini's test split = official test images)
    assert set(_hashes(run.eval_x)).isdisjoint(_hashes(run.test_x))


@pytest.mark.parametrize("drop_last", [False, True])
def test_training_batches_and_guard_never_see_validation_ids(drop_last):
    cfg = load_config(None, SYN + ["method=standard", "data.batch_size=64", "guard.n=128",
                                   f"data.drop_last={str(drop_last).lower()}"])
    run = build_run(cfg)
    val = set(run.val_ids.tolist())
    for epoch in (0, 1):
        ids = _epoch_ids(run, epoch)
        assert val.isdisjoint(ids.tolist())
        assert len(set(ids.tolist())) == len(ids)  # each training image at most once an epoch
        if not drop_last:
            assert sorted(ids.tolist()) == run.train_ids.tolist()  # ... and all of them
    n_split = get_dataset_info("synthetic").train_size
    assert run.loader.num_ids == n_split  # Batch.idx: ids into the ORIGINAL training split
    x, y = load_split("synthetic", "train")
    assert torch.equal(run.guard_x, x[run.train_ids[:128]]) and torch.equal(run.guard_y, y[run.train_ids[:128]])
    assert set(run.train_ids[:128].tolist()).isdisjoint(val)


# ------------------------------------------------------------------------------ same split everywhere
def test_same_validation_split_for_two_seeds_and_two_methods():
    runs = [build_run(load_config(None, SYN + [f"seed={s}", f"method={m}"])) for s, m in
            [(0, "pgd_at"), (1, "pgd_at"), (0, "trades"), (5, "uiat_oneoff")]]
    for run in runs[1:]:
        assert torch.equal(run.val_ids, runs[0].val_ids) and torch.equal(run.eval_x, runs[0].eval_x)
        assert run.selection == runs[0].selection
    # the run seed still changes the training order (only the split is fixed)
    assert not torch.equal(_epoch_ids(runs[0]), _epoch_ids(runs[1]))


# ------------------------------------------------------------------------------ per-sample buffers
def _train(run, epochs: int) -> None:
    for epoch in range(epochs):
        run.method.set_epoch(epoch)
        run.loader.set_epoch(epoch)
        run.model.train()
        for batch in run.loader:
            out = run.method(run.model, batch)
            run.optimizer.zero_grad()
            out.loss.backward()
            run.optimizer.step()


@pytest.mark.parametrize("method, buffers", [
    ("uiat", ("targets.momentum_p", "targets.momentum_seen")),
    ("uiat_oneoff", ("targets.oneoff_p", "targets.oneoff_seen")),
])
def test_per_sample_buffers_are_indexed_by_original_training_ids(method, buffers):
    cfg = load_config(None, SYN + [f"method={method}", "method.steps=1", "train.epochs=2", "data.batch_size=128"])
    run = build_run(cfg)
    n_split = get_dataset_info("synthetic").train_size
    state = dict(run.method.named_buffers())
    p, seen = state[buffers[0]], state[buffers[1]]
    assert p.shape[0] == seen.shape[0] == n_split == run.method.ctx.num_train
    _train(run, 2)  # uiat stores its momentum every epoch, uiat_oneoff at T' = epoch 1
    assert bool(seen[run.train_ids].all())  # every training image has its row ...
    assert not bool(seen[run.val_ids].any())  # ... no validation image ever does
    assert float(p[run.val_ids].abs().sum()) == 0.0
    torch.testing.assert_close(p[run.train_ids].sum(1), torch.ones(len(run.train_ids)))  # stored distributions


# ------------------------------------------------------------------------------ best and last
class _ScriptedBest(BestCheckpoint):
    """Selection with scripted validation accuracies (the evaluation itself runs)."""

    def __init__(self, values, **kwargs):
        super().__init__(**kwargs)
        self.values = iter(values)

    def update(self, acc, epoch):
        return super().update(next(self.values), epoch)


def test_summary_and_table_report_best_and_last_with_the_protocol(tmp_path, capsys):
    cfg = load_config(None, SYN + ["method=pgd_at", "method.steps=1", "train.epochs=2", "eval.n=32",
                                   "eval.final_n=64", "guard.n=32", f"out_dir={tmp_path}"])
    callbacks = [OverfitGuard.from_config(cfg), _ScriptedBest([0.5, 0.1], monitor="pgd20", epochs=2)]
    summary = fit(cfg, progress=False, verbose=True, callbacks=callbacks)
    out = capsys.readouterr().out
    assert (summary["checkpoint"], summary["checkpoint_epoch"], summary["best_epoch"]) == ("best.pt", 1, 1)
    assert summary["last_epoch"] == 2
    assert set(summary["final"]) == set(summary["final_last"]) == {"natural", "pgd20", "cw30"}
    on_disk = json.loads((Path(summary["run_dir"]) / "summary.json").read_text())
    assert on_disk["final"] == summary["final"] and on_disk["final_last"] == summary["final_last"]
    split = summary["selection_split"]
    assert split["split"] == "validation" and split["seed"] == SPLIT_SEED
    assert (split["n_held_out"], split["n_evaluated"]) == (51, 32) and split["best_epoch"] == 1
    assert summary["selection"] == (f"best pgd20 on 32 of the 51 validation images held out of the synthetic "
                                    f"training split (split seed {SPLIT_SEED}); never on test images")
    # the printed table: both checkpoints, which images selected, small-scale note (issue 13, part 5)
    assert "best.pt (epoch 1)" in out and "last.pt (epoch 2)" in out
    assert f"selection: {summary['selection']}" in out
    assert "val pgd20" in out and "not a paper number" in out
    assert summary["small_scale"] is True and "not a paper number" in summary["scale_note"]


def test_scale_note_only_for_small_scale_configs():
    from robustrain.eval.final import scale_note

    assert "cifar10-mini" in scale_note(load_config(None, []))
    assert scale_note(load_config(None, ["data.name=cifar10", "model=resnet18"])) is None
