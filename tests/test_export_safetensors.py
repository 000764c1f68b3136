"""`robustrain export --format safetensors` (issue 21, part 3): the same tensors and the same JSON
card as the pickle-free .pt export, read back by `load_model` and so by eval, audit and analyze."""

import json
import sys

import pytest
import safetensors.torch
import torch

from robustrain.artifacts import load_model
from robustrain.artifacts.export import export_model
from robustrain.artifacts.weights_file import weights_format
from robustrain.cli import main
from robustrain.eval import evaluate_robustness
from robustrain.utils.errors import CheckpointError, MissingExtraError, UsageError
from test_export import make_checkpoint


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "run" / "last.pt")


def test_both_formats_same_weights_same_card_same_accuracy(ckpt, tmp_path):
    pt, pt_card = export_model(ckpt, tmp_path / "a" / "model.pt")
    st, st_card = export_model(ckpt, tmp_path / "b" / "model", fmt="safetensors")
    assert st == tmp_path / "b" / "model.safetensors" and st_card == tmp_path / "b" / "model.json"
    # the file is plain safetensors, readable without robustrain, and holds exactly the .pt's tensors
    a, b = torch.load(pt, weights_only=True), safetensors.torch.load_file(st)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    # one card: only the format and the file's digest differ
    ca, cb = json.loads(pt_card.read_text()), json.loads(st_card.read_text())
    assert (ca.pop("weights_format"), cb.pop("weights_format")) == ("pt", "safetensors")
    assert ca.pop("sha256") != cb.pop("sha256")
    assert ca == cb
    # loaded back: identical models, identical accuracies
    la, lb = load_model(pt), load_model(st)
    assert (lb.dataset, lb.num_classes, lb.weights, lb.epoch, lb.meta["source"]) == (
        "synthetic", 10, "ema", 3, "export")
    sa, sb = la.model.state_dict(), lb.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.manual_seed(0)
    x, y = torch.rand(16, 3, 16, 16), torch.randint(0, 10, (16,))
    acc = [evaluate_robustness(m.model, x, y, ["natural", "fgsm"], progress=False).accuracy for m in (la, lb)]
    assert acc[0] == acc[1]


def test_suffix_gives_the_format_and_a_mismatch_is_refused(ckpt, tmp_path):
    st, _ = export_model(ckpt, tmp_path / "m.safetensors")
    assert weights_format(st) == "safetensors"
    assert json.loads((tmp_path / "m.json").read_text())["weights_format"] == "safetensors"
    with pytest.raises(UsageError, match=r"ends in \.pt but the format is safetensors; name it .*x\.safetensors"):
        export_model(ckpt, tmp_path / "x.pt", fmt="safetensors")
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_safetensors_is_one_line(ckpt, tmp_path, damage, capsys):
    st, _ = export_model(ckpt, tmp_path / "model.safetensors")
    data = st.read_bytes()
    st.write_bytes({"garbage": b"not a safetensors file at all", "truncated": data[: len(data) // 2],
                    "empty": b""}[damage])
    with pytest.raises(CheckpointError) as e:
        load_model(st)
    msg = str(e.value)
    assert "\n" not in msg and str(st) in msg and "robustrain export" in msg
    assert main(["eval", str(st), "--attacks", "natural", "--n", "8", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_card_or_file(ckpt, tmp_path):
    st, card = export_model(ckpt, tmp_path / "model.safetensors")
    card.unlink()
    with pytest.raises(CheckpointError, match="model card .*model.json, which is missing"):
        load_model(st)
    with pytest.raises(CheckpointError, match="do not exist"):
        load_model(tmp_path / "nothing.safetensors")


def test_cli_export_and_eval(ckpt, tmp_path, capsys):
    out = tmp_path / "models" / "m"
    assert main(["export", str(ckpt), str(out), "--format", "safetensors"]) == 0
    printed = capsys.readouterr().out
    assert "m.safetensors" in printed and "safetensors.torch.load_file" in printed
    st = out.with_suffix(".safetensors")
    args = ["--attacks", "natural,fgsm", "--n", "24", "--no-progress", "--device", "cpu"]
    assert main(["eval", str(ckpt), *args, "--out", str(tmp_path / "a.json")]) == 0
    assert main(["eval", str(st), *args, "--out", str(tmp_path / "b.json")]) == 0
    ra, rb = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert ra["accuracy"] == rb["accuracy"] and rb["weights"] == "ema"


def test_missing_package_is_one_line_before_any_work(ckpt, tmp_path, monkeypatch, capsys):
    st, _ = export_model(ckpt, tmp_path / "have.safetensors")
    for name in ("safetensors", "safetensors.torch"):
        monkeypatch.setitem(sys.modules, name, None)  # what an environment without the package sees
    with pytest.raises(MissingExtraError, match=r"install it with `pip install -e \.\[safetensors\]`"):
        export_model(ckpt, tmp_path / "new.safetensors")
    assert not (tmp_path / "new.safetensors").exists() and not (tmp_path / "new.json").exists()
    assert main(["eval", str(st), "--attacks", "natural", "--n", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e .[safetensors]" in err
