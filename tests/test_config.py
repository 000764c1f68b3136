import dataclasses
from pathlib import Path

import pytest

import robustrain
from robustrain.config import CONFIG_DIR, Config, config_from_dict, config_to_dict, load_config
from robustrain.config.load import parse_float
from robustrain.utils.errors import ConfigError
from robustrain.config import MethodConfig, PluginConfig
from robustrain.methods import method_params
from robustrain.methods.inverse import UIATPluginParams
from robustrain.methods.registry import PluggedParams

CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))


def test_presets_ship_in_the_package_and_the_checkout_links_them():
    # configs/ at the repository root is a link to the package's presets, so the README's
    # `--config configs/...` and an installed package's `--config mini/...` read the same files
    assert CONFIG_DIR.parent == Path(robustrain.__file__).resolve().parent
    assert len(CONFIGS) > 100
    root = Path(__file__).resolve().parents[1] / "configs"
    assert root.resolve() == CONFIG_DIR


def test_defaults_are_the_main_job():
    cfg = load_config()
    assert cfg.data.name == "cifar10-mini"
    assert cfg.model.name == "small_cnn"
    assert cfg.optim.nesterov and cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 5e-4


def test_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.method.params.eps = 1.0
    with pytest.raises(TypeError):
        cfg.model.params["width"] = 1


@pytest.mark.parametrize("text,value", [("8/255", 8 / 255), ("0.5", 0.5), (2, 2.0), (" 1 / 4 ", 0.25)])
def test_parse_float(text, value):
    assert parse_float(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["eight", "8/0", True, None, [1]])
def test_parse_float_rejects(bad):
    with pytest.raises(ConfigError):
        parse_float(bad)


def test_overrides_and_fraction():
    cfg = load_config(None, ["method=trades", "method.beta=3", "method.eps=8/255", "train.epochs=4", "seed=7"])
    assert cfg.method.name == "trades"
    assert cfg.method.params.beta == 3.0
    assert cfg.method.params.eps == pytest.approx(8 / 255)
    assert cfg.train.epochs == 4 and cfg.seed == 7
    assert cfg.run_name == "trades-small_cnn-cifar10-mini-s7"


def test_method_name_override_drops_previous_params():
    cfg = load_config(None, ["method.steps=3", "method=standard"])
    assert cfg.method.name == "standard" and dataclasses.asdict(cfg.method.params) == {}
    cfg = load_config(None, ["method.steps=3", "method=pgd_at"])
    assert cfg.method.params == method_params("pgd_at")()


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("train.epoch=3", "unknown key train.epoch"),
        ("bogus=1", "unknown key bogus"),
        ("train.epochs=0", "train.epochs must be an integer >= 1"),
        ("train.epochs=two", "expected an integer"),
        ("train.ema=maybe", "expected true or false"),
        ("method.nope=1", "unknown key method.nope"),
        ("method=nonexistent", "unknown method"),
        ("model=nonexistent", "unknown model"),
        ("model.width=wide", "model.width"),
        ("data.name=imagenet", "unknown dataset"),
        ("schedule.name=linear", "unknown schedule"),
        ("eval.attack=pgd99", "unknown attack"),
        ("optim.momentum=1.5", "optim.momentum"),
        ("schedule.milestones=[0.8,0.2]", "increasing"),
        ("method.eps=-1", "eps"),
        ("noequals", "key=value"),
    ],
)
def test_rejections(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    msg = str(info.value)
    assert fragment in msg
    assert "\n" not in msg


def test_round_trip():
    cfg = load_config(None, ["method=trades", "schedule.milestones=[0.3,0.6]", "eval.final_attacks=natural,pgd20"])
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg
    assert again.eval.final_attacks == ("natural", "pgd20")


def test_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 3\nmethod:\n  name: trades\n  beta: 2\ntrain:\n  epochs: 5\n")
    cfg = load_config(p, ["train.epochs=6"])
    assert (cfg.seed, cfg.method.name, cfg.method.params.beta, cfg.train.epochs) == (3, "trades", 2.0, 6)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("trian:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="unknown key trian"):
        load_config(bad)


def test_default_config_is_a_config():
    assert isinstance(load_config(), Config)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    header = path.read_text().splitlines()[0]
    assert header.startswith("#") and "robustrain train" in path.read_text()


def test_final_attacks_accept_autoattack_names():
    cfg = load_config(None, ["eval.final_attacks=natural,pgd20,aa,aa:apgd-ce+apgd-t"])
    assert cfg.eval.final_attacks == ("natural", "pgd20", "aa", "aa:apgd-ce+apgd-t")
    with pytest.raises(ConfigError, match="unknown AutoAttack name 'aa-foo'"):
        load_config(None, ["eval.final_attacks=natural,aa-foo"])


def test_method_section_keeps_the_typed_params():
    cfg = load_config(None, ["method=trades", "method.beta=3"])
    assert cfg.method == MethodConfig("trades", method_params("trades")(beta=3.0))
    assert Config() == load_config()  # the schema's defaults are the resolved ones
    plug = load_config(None, ["method=trades+uiat", "method.beta=2", "method.lam=1", "method.oneoff=false"])
    assert plug.method == PluginConfig(
        "trades+uiat", MethodConfig("trades", method_params("trades")(beta=2.0)), UIATPluginParams(lam=1.0, oneoff=False)
    )
    assert plug.method.params == PluggedParams(plug.method.base.params, plug.method.plugin)
    assert plug.method.params.beta == 2.0 and plug.method.params.lam == 1.0
    with pytest.raises(ConfigError, match="unknown key method.nope for method 'trades\\+uiat'"):
        load_config(None, ["method=trades+uiat", "method.nope=1"])
    with pytest.raises(ConfigError, match="method.lam must be a finite number >= 0, got -1.0 \\(method 'trades\\+uiat'\\)"):
        load_config(None, ["method=trades+uiat", "method.lam=-1"])
    with pytest.raises(ConfigError, match="unknown method 'hat\\+uiat'"):
        load_config(None, ["method=hat+uiat"])


def test_config_to_dict_spells_out_every_default():
    d = config_to_dict(load_config(None, ["method=pgd_at+uiat", "method.steps=5", "model=resnet18"]))
    assert d["method"] == {"name": "pgd_at+uiat", **dataclasses.asdict(method_params("pgd_at")(steps=5)),
                           **dataclasses.asdict(UIATPluginParams())}
    assert d["model"] == {"name": "resnet18", "activation": "relu"}
    assert config_to_dict(load_config(None, ["model.activation=silu"]))["model"] == {
        "name": "small_cnn", "activation": "silu", "width": 32}
    for overrides in ([], ["method=trades+uiat", "method.lam=2"], ["method=hat", "method.helper=x.pt"]):
        cfg = load_config(None, overrides)
        assert config_from_dict(config_to_dict(cfg)) == cfg
