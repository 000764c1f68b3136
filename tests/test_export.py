"""`robustrain export`: plain weights + model card, and reading them back."""

import hashlib
import json

import pytest
import torch

from robustrain.cli import main
from robustrain.config import config_to_dict, load_config
from robustrain.eval import evaluate_robustness
from robustrain.artifacts import load_model
from robustrain.artifacts.export import export_model, read_export_info
from robustrain.artifacts.checkpoint import FORMAT, CheckpointError, save_checkpoint
from robustrain.build import build_model


def make_checkpoint(path, *, ema=True, epoch=3):
    """A robustrain checkpoint of a narrow small CNN on synthetic data; the EMA weights differ
    from the raw ones (the normalisation buffers, constant in training, are equal in both)."""
    cfg = load_config(None, ["data.name=synthetic", "model.name=small_cnn", "model.width=4", "method=pgd_at"])
    torch.manual_seed(0)
    net = build_model(cfg)
    raw = net.state_dict()
    shifted = {k: v + 0.05 * torch.randn_like(v) if k.startswith("backbone.") and v.is_floating_point() else v
               for k, v in raw.items()}
    save_checkpoint({"format": FORMAT, "config": config_to_dict(cfg), "model": raw,
                     "ema": shifted if ema else None, "epoch": epoch}, path)
    return path


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "run" / "last.pt")


def test_export_writes_plain_weights_and_card(ckpt, tmp_path):
    weights, card_path = export_model(ckpt, tmp_path / "out" / "model.pt")
    assert card_path == tmp_path / "out" / "model.json"
    state = torch.load(weights, weights_only=True)
    saved = torch.load(ckpt, weights_only=True)
    assert set(state) == set(saved["ema"]) and all(torch.equal(state[k], saved["ema"][k]) for k in state)
    card = json.loads(card_path.read_text())
    assert (card["architecture"], card["dataset"], card["num_classes"], card["threat_model"], card["eps"]) == (
        "small_cnn", "synthetic", 10, "Linf", "8/255")
    # the model card spells out the resolved parameters (defaults included)
    assert card["model"]["name"] == "small_cnn" and card["model"]["params"]["width"] == 4
    assert card["model"]["params"]["activation"] == "relu"
    assert (card["method"], card["epoch"], card["weights"], card["normalization"]) == ("pgd_at", 3, "ema", "inside")
    assert card["mean"] == pytest.approx(state["normalize.mean"].flatten().tolist())
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    # RobustBench's model_info fields are all there
    for key in ("name", "link", "authors", "venue", "additional_data", "number_forward_passes", "clean_acc",
                "reported", "autoattack_acc", "footnote"):
        assert key in card
    assert card["clean_acc"] is None and card["autoattack_acc"] is None
    assert not list(weights.parent.glob(".*.tmp"))


def test_no_ema_exports_raw_weights(ckpt, tmp_path):
    weights, card_path = export_model(ckpt, tmp_path / "raw.pt", ema=False)
    raw = torch.load(ckpt, weights_only=True)["model"]
    assert all(torch.equal(v, raw[k]) for k, v in torch.load(weights, weights_only=True).items())
    assert json.loads(card_path.read_text())["weights"] == "model"


def test_round_trip_same_model_same_accuracy(ckpt, tmp_path, capsys):
    weights, _ = export_model(ckpt, tmp_path / "model.pt")
    a, b = load_model(ckpt), load_model(weights)
    assert (b.dataset, b.num_classes, b.weights, b.epoch, b.meta["source"]) == ("synthetic", 10, "ema", 3, "export")
    x = torch.rand(8, 3, 16, 16)
    assert torch.equal(a.model(x), b.model(x))
    y = torch.randint(0, 10, (8,))
    assert evaluate_robustness(a.model, x, y, ["natural", "fgsm"], progress=False).accuracy == \
        evaluate_robustness(b.model, x, y, ["natural", "fgsm"], progress=False).accuracy
    # and through the command line
    args = ["--attacks", "natural,fgsm", "--n", "24", "--no-progress", "--device", "cpu"]
    assert main(["eval", str(ckpt), *args, "--out", str(tmp_path / "a.json")]) == 0
    assert main(["eval", str(weights), *args, "--out", str(tmp_path / "b.json")]) == 0
    ra, rb = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert ra["accuracy"] == rb["accuracy"] and (ra["source"], rb["source"]) == ("checkpoint", "export")
    assert "(epoch 3, ema weights)" in capsys.readouterr().out


def test_card_reports_evaluations_of_these_weights(ckpt, tmp_path):
    run = ckpt.parent
    (run / "summary.json").write_text(json.dumps({
        "checkpoint": "last.pt", "checkpoint_epoch": 3, "weights": "ema", "n_test": 64,
        "protocol": "p", "final": {"natural": 0.5, "pgd20": 0.3}}))
    (run / "last-eval.json").write_text(json.dumps({
        "epoch": 3, "weights": "ema", "n": 100, "dataset": "synthetic", "eps": 8 / 255, "norm": "Linf",
        "protocol": "p", "accuracy": {"natural": 0.6, "aa": 0.25}, "autoattack_flags": {"aa": []}}))
    (run / "last-eval-old.json").write_text(json.dumps({  # other weights: ignored
        "epoch": 2, "weights": "ema", "n": 1000, "accuracy": {"natural": 0.9, "aa": 0.8}}))
    (run / "last-eval-l2.json").write_text(json.dumps({  # another threat model: not the AutoAttack headline
        "epoch": 3, "weights": "ema", "n": 1000, "dataset": "synthetic", "eps": 0.5, "norm": "L2",
        "accuracy": {"aa": 0.7}}))
    _, card_path = export_model(ckpt, tmp_path / "m.pt")
    card = json.loads(card_path.read_text())
    assert (card["clean_acc"], card["autoattack_acc"]) == ("60.00", "25.00")
    assert sorted(e["source"] for e in card["evaluations"]) == ["last-eval-l2.json", "last-eval.json", "summary.json"]
    assert card["footnote"] is None


def _exported(ckpt, tmp_path):
    weights, card_path = export_model(ckpt, tmp_path / "model.pt")
    return weights, card_path, json.loads(card_path.read_text())


@pytest.mark.parametrize("damage, match", [
    (lambda p, c: p.unlink(), "missing"),
    (lambda p, c: p.write_text("{not json"), "not valid JSON"),
    (lambda p, c: p.write_text(json.dumps({**c, "format": "other"})), "not a robustrain model card"),
    (lambda p, c: p.write_text(json.dumps({k: v for k, v in c.items() if k != "num_classes"})), "lacks num_classes"),
    (lambda p, c: p.write_text(json.dumps({**c, "mean": [0.0, 0.0, 0.0]})), "mean/std"),
    (lambda p, c: p.write_text(json.dumps({**c, "model": {"name": "small_cnn", "params": {"width": 8}}})),
     "does not match"),
])
def test_missing_or_corrupt_card(ckpt, tmp_path, damage, match):
    weights, card_path, card = _exported(ckpt, tmp_path)
    damage(card_path, card)
    with pytest.raises(CheckpointError, match=match):
        load_model(weights)


def test_read_export_info_names_the_fix(ckpt, tmp_path):
    weights, card_path, _ = _exported(ckpt, tmp_path)
    card_path.unlink()
    with pytest.raises(CheckpointError, match=r"robustrain export CHECKPOINT"):
        read_export_info(weights)


def test_cli_export_and_errors(ckpt, tmp_path, capsys):
    out = tmp_path / "exp" / "m.pt"
    assert main(["export", str(ckpt), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weights_only=True" in printed and str(out.with_suffix(".json")) in printed
    # eval of exported weights whose card went missing: one line, exit 1
    out.with_suffix(".json").unlink()
    assert main(["eval", str(out), "--attacks", "natural", "--n", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("robustrain: error:") and "m.json" in err and "\n" not in err
    # never over the checkpoint itself; missing checkpoint
    assert main(["export", str(ckpt), str(ckpt)]) == 2
    assert main(["export", str(tmp_path / "nope.pt"), str(tmp_path / "x.pt")]) == 1
    assert not (tmp_path / "x.pt").exists()
