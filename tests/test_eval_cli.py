"""`robustrain eval`: the table, the JSON, AutoAttack, eps parsing and dataset checks."""

import json
import sys

import pytest
import torch

from robustrain.cli import main
from robustrain.config import config_to_dict, load_config
from robustrain.attacks.autoattack import AutoAttackResult, AutoAttackSpec
from robustrain.artifacts.checkpoint import FORMAT, save_checkpoint
from robustrain.build import build_model


@pytest.fixture
def ckpt(tmp_path):
    """An untrained narrow small CNN on the synthetic dataset (10 classes, 3x16x16)."""
    cfg = load_config(None, ["data.name=synthetic", "model.name=small_cnn", "model.width=4", "method=pgd_at"])
    torch.manual_seed(0)
    path = tmp_path / "run" / "best.pt"
    save_checkpoint({"format": FORMAT, "config": config_to_dict(cfg), "model": build_model(cfg).state_dict(),
                     "ema": None, "epoch": 2}, path)
    return path


def _eval(ckpt, *args):
    return main(["eval", str(ckpt), "--no-progress", "--device", "cpu", *args])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("robustrain: error:") and "\n" not in err, err
    return err


def test_eval_with_autoattack_table_and_json(ckpt, capsys):
    assert _eval(ckpt, "--attacks", "natural,pgd20,aa:apgd-ce", "--n", "16") == 0
    out = capsys.readouterr().out
    assert "| model | natural | pgd20 | aa:apgd-ce |" in out and "| pgd_at / small_cnn |" in out
    assert "(epoch 2, model weights), 16 synthetic test images" in out
    assert "protocol: Linf eps=8/255; PGD-20: step 2/255" in out and "AutoAttack custom (apgd-ce" in out
    assert "AutoAttack flags (aa:apgd-ce): " in out
    result = json.loads((ckpt.parent / "best-eval-natural+pgd20+aa_apgd-ce-n16.json").read_text())
    assert set(result["accuracy"]) == {"natural", "pgd20", "aa:apgd-ce"}
    assert (result["n"], result["norm"], result["eps"], result["epoch"], result["weights"]) == (
        16, "Linf", pytest.approx(8 / 255), 2, "model")
    assert result["autoattack"]["aa:apgd-ce"]["settings"]["attacks"] == ["apgd-ce"]
    assert result["autoattack_flags"] == {"aa:apgd-ce": result["autoattack"]["aa:apgd-ce"]["flags"]}
    acc = result["accuracy"]
    assert acc["aa:apgd-ce"] <= acc["natural"] and acc["pgd20"] <= acc["natural"]
    # the default resume state is gone once finished; AutoAttack's log stays beside the JSON
    stem = "best-eval-natural+pgd20+aa_apgd-ce-n16"
    assert not (ckpt.parent / f"{stem}.aa-state").exists()
    assert (ckpt.parent / f"{stem}-autoattack.log").is_file()


def test_default_is_the_design_protocol():
    from robustrain.cli import build_parser

    args = build_parser().parse_args(["eval", "x.pt"])
    assert (args.attacks, args.norm, args.eps, args.aa_version) == ("natural,pgd20,cw30,aa", "Linf", None, "standard")


@pytest.mark.parametrize("eps", ["4/255", "0.01568627450980392", " 4 / 255 "])
def test_eps_as_fraction_or_float(ckpt, tmp_path, capsys, eps):
    out = tmp_path / "e.json"
    assert _eval(ckpt, "--attacks", "natural,fgsm", "--n", "8", "--eps", eps, "--out", str(out)) == 0
    assert "eps=4/255" in capsys.readouterr().out
    assert json.loads(out.read_text())["eps"] == pytest.approx(4 / 255)


@pytest.mark.parametrize("args, match", [
    (["--eps", "abc"], "8/255"),
    (["--eps=-1/255"], "positive"),
    (["--eps", "0"], "positive"),
    (["--n", "0"], "--n"),
    (["--attacks", "natural,nope"], "unknown attack"),
    (["--attacks", "natural,aa-foo"], "AutoAttack"),
    (["--attacks", "natural,cw30", "--norm", "L2"], "Linf-only"),
    (["--attacks", "natural,pgd20", "--aa-version", "plus"], "--aa-version"),
])
def test_bad_arguments_exit_2_one_line(ckpt, capsys, args, match):
    assert _eval(ckpt, *args) == 2
    assert match in _one_line_error(capsys)
    assert not list(ckpt.parent.glob("best-eval*.json"))


def test_class_count_mismatch_names_both(ckpt, capsys):
    assert _eval(ckpt, "--attacks", "natural", "--dataset", "cifar100") == 2
    err = _one_line_error(capsys)
    assert "10 classes" in err and "synthetic" in err and "cifar100 has 100" in err


def test_image_shape_mismatch(ckpt, capsys):
    assert _eval(ckpt, "--attacks", "natural", "--dataset", "cifar10-mini") == 2
    err = _one_line_error(capsys)
    assert "3x16x16" in err and "3x32x32" in err


def test_other_dataset_same_shape_is_allowed(ckpt, tmp_path, capsys):
    # the normalisation is inside the model, so another 10-class 3x16x16 dataset would be fine;
    # the synthetic dataset against itself through --dataset exercises the path
    assert _eval(ckpt, "--attacks", "natural", "--n", "4", "--dataset", "synthetic") == 0


def test_l2_threat_model(ckpt, tmp_path, capsys):
    out = tmp_path / "l2.json"
    assert _eval(ckpt, "--attacks", "natural,pgd20", "--norm", "L2", "--n", "8", "--out", str(out)) == 0
    assert "protocol: L2 eps=0.5; PGD-20: step 0.125" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert (result["norm"], result["eps"]) == ("L2", 0.5)


def test_aa_version_flag_and_kept_state(ckpt, tmp_path, capsys, monkeypatch):
    seen = {}

    def fake(self, model, images, labels, **kw):
        seen.update(version=self.version, norm=self.norm, eps=self.eps, state=kw["state_dir"])
        return AutoAttackResult(0.25, 0.5, int(images.shape[0]), ("a flag",), {"version": self.version})

    monkeypatch.setattr(AutoAttackSpec, "evaluate", fake)
    state = tmp_path / "aa-state"
    assert _eval(ckpt, "--attacks", "natural,aa", "--aa-version", "plus", "--n", "4", "--eps", "2/255",
                 "--aa-state", str(state)) == 0
    out = capsys.readouterr().out
    assert seen == {"version": "plus", "norm": "Linf", "eps": 2 / 255, "state": state}
    assert "| aa-plus |" in out and "AutoAttack flags (aa-plus): a flag" in out
    result = json.loads((ckpt.parent / "best-eval-natural+aa-plus-linf2_255-n4.json").read_text())
    assert result["accuracy"]["aa-plus"] == 0.25 and result["autoattack_flags"] == {"aa-plus": ["a flag"]}


def test_missing_pyautoattack_exit_1_with_install_hint(ckpt, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    assert _eval(ckpt, "--attacks", "natural,aa") == 1
    assert "pip install 'pyautoattack>=0.2'" in _one_line_error(capsys)
    # without AutoAttack the package is not needed
    assert _eval(ckpt, "--attacks", "natural", "--n", "4") == 0


def test_evaluations_of_different_protocols_do_not_overwrite_each_other(ckpt, capsys):
    """Issue 23: the README's eval lines in turn left only the last result."""
    assert _eval(ckpt, "--attacks", "natural,pgd20", "--n", "8") == 0
    assert _eval(ckpt, "--attacks", "natural,pgd20", "--n", "8", "--eps", "4/255") == 0
    assert _eval(ckpt, "--attacks", "natural,pgd20", "--n", "8", "--norm", "L2") == 0
    names = sorted(p.name for p in ckpt.parent.glob("best-eval*.json"))
    assert names == ["best-eval-natural+pgd20-l2-n8.json", "best-eval-natural+pgd20-linf4_255-n8.json",
                     "best-eval-natural+pgd20-n8.json"]
    assert json.loads((ckpt.parent / names[1]).read_text())["eps"] == pytest.approx(4 / 255)
