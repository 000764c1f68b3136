"""The ImageNet presets (issue 20): the threat model and recipe they state, and ``eval.eps``, the
evaluation radius they need (4/255 for the per-epoch selection attack and the final table)."""

import math

import pytest

from robustrain.config import CONFIG_DIR, load_config
from robustrain.train import fit

PRESETS = ["imagenet/pgd_at_resnet50.yaml", "imagenet/trades_resnet50.yaml"]


@pytest.mark.parametrize("preset", PRESETS)
def test_imagenet_preset_states_the_4_255_recipe(preset):
    cfg = load_config(CONFIG_DIR / preset)
    p = cfg.method.params
    assert cfg.data.name == "imagefolder" and cfg.model.name == "resnet50"
    assert math.isclose(p.eps, 4 / 255) and math.isclose(p.alpha, 2 * p.eps / 3) and p.steps == 3
    assert cfg.train.bf16 and cfg.train.channels_last and cfg.train.ema and cfg.train.epochs == 90
    # RobustBench's ImageNet protocol: the first 5,000 validation images, AutoAttack at 4/255
    assert cfg.eval.final_n == 5000 and cfg.eval.final_attacks == ("natural", "aa")
    assert math.isclose(cfg.eval.eps, 4 / 255)
    assert cfg.schedule.name == "piecewise" and cfg.schedule.gamma == 0.1


def test_eval_eps_sets_the_radius_of_selection_and_final_table(tmp_path):
    over = [f"out_dir={tmp_path}", "data.name=synthetic", "model.width=4", "train.epochs=1", "eval.n=16",
            "eval.final_n=16", "eval.final_attacks=natural,pgd20", "guard.enabled=false", "train.device=cpu"]
    summary = fit(load_config(None, over + ["eval.eps=4/255"]), progress=False, verbose=False)
    assert summary["protocol"].startswith("Linf eps=4/255; PGD-20: step 2/255")
    default = fit(load_config(None, over + ["name=default"]), progress=False, verbose=False)
    assert default["protocol"].startswith("Linf eps=8/255; PGD-20: step 2/255")


@pytest.mark.parametrize("bad", ["0", "2", "-1/255"])
def test_eval_eps_out_of_range_is_one_line(bad):
    with pytest.raises(ValueError, match=r"eval\.eps must be in \(0, 1\]"):
        load_config(None, [f"eval.eps={bad}"])
