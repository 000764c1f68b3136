"""timm backbones, ``model.name=timm:<name>`` (issue 20, part 4).

The tests that build timm models need timm importable. timm imports torchvision at module top,
and pip's torchvision wheels are CUDA builds: with this project's CPU torch pin none imports
(0.28.0: "operator torchvision::nms does not exist"; 0.29.x pulls a CUDA torch 2.14.1), so timm
is not in the ``test`` extra and these tests are SKIPPED there, with the reason shown by
``pytest -ra``. They run wherever timm imports (a GPU machine's CUDA torch, or a CPU torch with the
matching CPU torchvision). What needs no timm (the missing-package line, ``list models``, the
config keys) runs everywhere.
"""

import json
import sys

import pytest
import torch

from robustrain.artifacts import load_model
from robustrain.artifacts.export import export_model
from robustrain.cli import main
from robustrain.config import load_config
from robustrain.data import get_dataset_info
from robustrain.models import create_model
from robustrain.models.timm_backbone import TimmClassifier, require_timm
from robustrain.utils.errors import ConfigError, MissingExtraError

try:
    require_timm()
    TIMM_REASON = ""
except MissingExtraError as e:
    TIMM_REASON = str(e)

needs_timm = pytest.mark.skipif(bool(TIMM_REASON), reason=f"timm backbones not testable here: {TIMM_REASON}")

#: a tiny timm ResNet (0.37M parameters, 96 features)
ARCH = "test_resnet"
MINI = get_dataset_info("cifar10-mini")


def tiny_run(tmp_path, method, *extra):
    """Overrides for one epoch of ``method`` on 64 cifar10-mini images (2 steps) with the tiny timm model."""
    return ["data.name=cifar10-mini", "data.val_n=5021", "data.batch_size=32", f"model.name=timm:{ARCH}",
            f"method={method}", "method.steps=1", "train.epochs=1", "eval.n=16", "eval.final_n=16", "guard.n=16",
            "eval.attack=fgsm", "guard.enabled=false", "eval.final_attacks=natural", f"out_dir={tmp_path}",
            f"name={method}", *extra]


def test_missing_timm_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)  # what an environment without timm sees
    with pytest.raises(MissingExtraError, match=r"need timm; install it with `pip install -e \.\[timm\]`"):
        load_config(None, [f"model.name=timm:{ARCH}"])
    assert main(["train", f"model.name=timm:{ARCH}", f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e .[timm]" in err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_list_models_shows_the_timm_family(capsys):
    assert main(["list", "models"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("timm:<name>"))
    assert "any timm architecture" in line and "pip install -e .[timm]" in line and "pretrained" in line


def test_unknown_family():
    with pytest.raises(ConfigError, match="unknown model family 'tim'. Did you mean 'timm'"):
        load_config(None, ["model.name=tim:resnet18"])


@needs_timm
def test_forward_features_and_normalisation_in_front():
    torch.manual_seed(0)
    net = create_model(f"timm:{ARCH}", 10, mean=MINI.mean, std=MINI.std, image_size=(32, 32))
    assert isinstance(net.backbone, TimmClassifier)
    x = torch.rand(4, 3, 32, 32)
    net.eval()
    logits, feats = net(x, return_features=True)
    assert logits.shape == (4, 10) and feats.shape == (4, net.feature_dim) == (4, 96)
    # the features are the classifier's input, and the whole is timm's own forward on normalised pixels
    timm_net = net.backbone.net
    mean, std = torch.tensor(MINI.mean).view(1, 3, 1, 1), torch.tensor(MINI.std).view(1, 3, 1, 1)
    assert torch.allclose(net.backbone.head(feats), logits)
    assert torch.allclose(timm_net((x - mean) / std), logits, atol=1e-6)
    assert net.backbone.head is timm_net.get_classifier()
    # the classifier is registered once (a state_dict without duplicate tensors, as safetensors needs)
    assert not any(k.startswith("backbone.head.") for k in net.state_dict())


@needs_timm
def test_fixed_input_size_models_get_the_dataset_size():
    net = create_model("timm:test_vit", 10, image_size=(32, 32))
    assert net(torch.rand(2, 3, 32, 32), return_features=True)[1].shape == (2, 64)


@needs_timm
def test_bad_name_lists_close_matches(tmp_path, capsys):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.name=timm:resnet1800"])
    msg = str(e.value)
    assert "\n" not in msg and "timm has no model 'resnet1800'" in msg and "close matches: timm:resnet18" in msg
    assert main(["train", "model.name=timm:convnext_tinyy", f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "timm:convnext_tiny" in err


@needs_timm
def test_bad_params_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model.drop_rate must be a number in"):
        load_config(None, [f"model.name=timm:{ARCH}", "model.drop_rate=1.5"])
    with pytest.raises(ConfigError, match="model.pretrained: no weights file"):
        load_config(None, [f"model.name=timm:{ARCH}", f"model.pretrained={tmp_path / 'none.pth'}"])
    with pytest.raises(ConfigError, match="model.activation does not apply"):
        load_config(None, [f"model.name=timm:{ARCH}", "model.activation=silu"])


@needs_timm
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_local_file(tmp_path, suffix):
    timm = require_timm()
    torch.manual_seed(1)
    src = timm.create_model(ARCH, pretrained=False)  # timm's own 1000-class weights file
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    if suffix == ".safetensors":
        import safetensors.torch
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    net = create_model(f"timm:{ARCH}", 10, image_size=(32, 32), pretrained=str(path))
    got = net.backbone.net.state_dict()
    head = {"fc.weight", "fc.bias"}
    assert all(torch.equal(got[k], v) for k, v in state.items() if k not in head)
    assert got["fc.weight"].shape == (10, 96)  # another class count: a fresh classifier
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="model.pretrained: cannot read"):
        create_model(f"timm:{ARCH}", 10, pretrained=str(tmp_path / "bad.pth"))


@needs_timm
# 25-40 s each on 2 shared CPU cores; test_rebuild_never_reads_the_pretrained_file trains in the default run
@pytest.mark.slow
@pytest.mark.parametrize("method", ["pgd_at", "uiat"])
def test_train_one_epoch_then_eval_and_export_without_the_config(tmp_path, method, capsys):
    from robustrain.train import fit

    cfg = load_config(None, tiny_run(tmp_path, method))
    fit(cfg, progress=False, verbose=False)
    best = tmp_path / method / "best.pt"
    card = torch.load(best, weights_only=True)["model_card"]
    timm = require_timm()
    assert card["model"] == f"timm:{ARCH}" and card["versions"] == {"timm": timm.__version__}
    assert card["params"] == {"activation": "relu", "pretrained": None, "drop_rate": 0.0, "drop_path_rate": 0.0}
    # rebuilt from the card alone: eval, export, and the export read back give the same model
    loaded = load_model(best)
    weights, card_path = export_model(best, tmp_path / "m.safetensors")
    again = load_model(weights)
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(loaded.model(x), again.model(x))
    exported = json.loads(card_path.read_text())
    assert exported["model"]["versions"] == {"timm": timm.__version__}
    args = ["--attacks", "natural", "--n", "16", "--no-progress", "--device", "cpu"]
    assert main(["eval", str(best), *args, "--out", str(tmp_path / "a.json")]) == 0
    assert main(["eval", str(weights), *args, "--out", str(tmp_path / "b.json")]) == 0
    ra, rb = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert ra["accuracy"] == rb["accuracy"]


@needs_timm
def test_rebuild_never_reads_the_pretrained_file(tmp_path):
    timm = require_timm()
    path = tmp_path / "init.pth"
    torch.save(timm.create_model(ARCH, pretrained=False, num_classes=10).state_dict(), path)
    from robustrain.train import fit

    fit(load_config(None, tiny_run(tmp_path, "pgd_at", f"model.pretrained={path}")), progress=False, verbose=False)
    path.unlink()  # eval elsewhere: the card names the file, the checkpoint holds the weights
    assert load_model(tmp_path / "pgd_at" / "best.pt").spec.params["pretrained"] == str(path)
