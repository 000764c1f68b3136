"""Every bad config-level input is refused in one line, before anything is written (issue 12).

At the command line (`robustrain train ...`, where a user meets them): exit code 2, stderr is
ONE line starting ``robustrain: error:`` that names the key and the allowed values, and no run
folder appears under ``out_dir``. Below that, the checks themselves: ``parse_number`` refuses
non-finite numbers, the Params / section dataclasses their ranges, the model families their
architecture rules, and ``load_config`` unreadable, non-UTF-8 and alias-bomb files.
"""

from __future__ import annotations

import math

import pytest
import torch

import robustrain.config.load as load_module
from robustrain.cli import main
from robustrain.config import config_from_dict, config_to_dict, load_config
from robustrain.config.load import parse_float
from robustrain.utils.errors import ConfigError
from robustrain.methods import method_params
from robustrain.models.registry import check_model_params
from robustrain.utils.checks import MESSAGE_LIMIT, one_line, short_repr
from robustrain.utils.runtime import check_device_name, resolve_device

NO_CUDA = not torch.cuda.is_available()


def refused(tmp_path, capsys, *args: str, config: str | None = None) -> str:
    """Run ``robustrain train`` with ``args``: it must exit 2 with one error line and leave no
    run folder under out_dir. Returns the line."""
    out = tmp_path / "runs"
    argv = ["train", *(["--config", config] if config else []), f"out_dir={out}", "train.epochs=1", *args]
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (code, captured.err[-500:])
    assert len(lines) == 1, captured.err[:1000]
    assert lines[0].startswith("robustrain: error: ")
    assert len(lines[0]) <= MESSAGE_LIMIT + len("robustrain: error: ")
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))  # not even out_dir
    return lines[0]


# ------------------------------------------------------------------------------- non-finite numbers
NON_FINITE = ["nan", ".nan", "NaN", "inf", ".inf", "-inf", "-.inf", "1e999", "-1e999", "'nan'", "'1e999'"]


@pytest.mark.parametrize("value", NON_FINITE)
def test_learning_rate_must_be_finite(tmp_path, capsys, value):
    line = refused(tmp_path, capsys, f"optim.lr={value}")
    assert "optim.lr must be a finite number" in line


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["optim.weight_decay=nan"], "optim.weight_decay"),
        (["optim.momentum=nan"], "optim.momentum"),
        (["schedule.div_factor=nan"], "schedule.div_factor"),
        (["schedule.final_div_factor=inf"], "schedule.final_div_factor"),
        (["schedule.gamma=nan"], "schedule.gamma"),
        (["schedule.milestones=[0.5,nan]"], "schedule.milestones[1]"),
        (["method.eps=nan"], "method.eps"),
        (["method.eps_inv=inf"], "method.eps_inv"),
        (["method.lam=1e999"], "method.lam"),
        (["method=trades", "method.beta=inf"], "method.beta"),
        (["method=gairat", "method.gair_lambda=-inf"], "method.gair_lambda"),
        (["method=n_fgsm", "method.k=nan"], "method.k"),
        (["method=pgd_at+uiat", "method.gamma=nan"], "method.gamma"),
        (["model=wrn28_10", "model.dropout=nan"], "model.dropout"),
        (["train.ema_decay=nan"], "train.ema_decay"),
        (["guard.drop=inf"], "guard.drop"),
        (["data.extra.ratio=nan"], "data.extra.ratio"),
    ],
)
def test_every_float_must_be_finite(tmp_path, capsys, overrides, key):
    line = refused(tmp_path, capsys, *overrides)
    assert f"{key} must be a finite number" in line


def test_parse_number_refuses_non_finite_and_names_the_key():
    for bad in [math.nan, math.inf, -math.inf, "nan", "inf", "-inf", "1e999", 10**400, "1/0"]:
        with pytest.raises(ConfigError, match="^--eps"):
            parse_float(bad, "--eps")
    assert parse_float("1e308") == 1e308 and parse_float("-8/255") == -8 / 255


def test_params_built_directly_refuse_non_finite():
    for name, field in [("pgd_at", "eps"), ("trades", "alpha"), ("uiat", "lam"), ("rs_fgsm", "alpha")]:
        with pytest.raises(ValueError, match=f"^{field} must"):
            method_params(name)(**{field: math.nan})


# ------------------------------------------------------------------------------- ranges
@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["method.eps=2"], ["method.eps must lie in [0, 1]", "pixel budget", "got 2.0", "method 'uiat'"]),
        (["method.eps=300/255"], ["method.eps must lie in [0, 1]"]),
        (["method.eps=-1"], ["method.eps must lie in [0, 1]"]),
        (["method.alpha=0"], ["method.alpha must lie in (0, 1]", "step size"]),
        (["method.alpha=2"], ["method.alpha must lie in (0, 1]"]),
        (["method.eps_inv=2"], ["method.eps_inv must lie in [0, 1]"]),
        (["method=iat", "method.alpha_inv=0"], ["method.alpha_inv must lie in (0, 1]"]),
        (["method.alpha_universal=0"], ["method.alpha_universal must lie in (0, 1]"]),
        (["method=uiat_oneoff", "method.alpha_universal=3"], ["method.alpha_universal must lie in (0, 1]"]),
        (["method=trades", "method.eps=2"], ["method.eps must lie in [0, 1]", "method 'trades'"]),
        (["method=mart", "method.alpha=0"], ["method.alpha must lie in (0, 1]"]),
        (["method=lrat", "method.eps=1.5"], ["method.eps must lie in [0, 1]"]),
        (["method=gairat", "method.alpha=0"], ["method.alpha must lie in (0, 1]"]),
        (["method=fgsm", "method.eps=2"], ["method.eps must lie in [0, 1]"]),
        (["method=rs_fgsm", "method.alpha=0"], ["method.alpha must lie in (0, 1]"]),
        (["method=n_fgsm", "method.alpha=0"], ["method.alpha must lie in (0, 1]"]),
        (["method=grad_align", "method.eps=2"], ["method.eps must lie in [0, 1]"]),
        (["method=pgd_at+uiat", "method.eps_inv=3"], ["method.eps_inv must lie in [0, 1]", "pgd_at+uiat"]),
        (["method=fgsm+uiat", "method.alpha_universal=0"], ["method.alpha_universal must lie in (0, 1]"]),
        (["method=pgd_at", "method.norm=l2", "method.alpha=0"], ["method.alpha must be a finite number > 0"]),
        (["optim.lr=0"], ["optim.lr must be a finite number > 0", "e.g. 0.1"]),
        (["optim.lr=-0.1"], ["optim.lr must be a finite number > 0"]),
        (["optim.weight_decay=-1"], ["optim.weight_decay must be a finite number >= 0"]),
        (["optim.momentum=1"], ["optim.momentum must lie in [0, 1)"]),
        (["schedule.gamma=0"], ["schedule.gamma must lie in (0, 1]"]),
        (["schedule.gamma=2"], ["schedule.gamma must lie in (0, 1]"]),
        (["schedule.div_factor=0"], ["schedule.div_factor must be a finite number > 0"]),
        (["schedule.pct_start=1"], ["schedule.pct_start must lie in (0, 1)"]),
        (["data.batch_size=0"], ["data.batch_size must be an integer >= 1"]),
        (["data.eval_batch_size=-3"], ["data.eval_batch_size must be an integer >= 1"]),
        (["train.epochs=0"], ["train.epochs must be an integer >= 1"]),
        (["train.ema_decay=1"], ["train.ema_decay must lie in (0, 1)"]),
        (["eval.n=0"], ["eval.n must be an integer >= 1"]),
        (["eval.every=0"], ["eval.every must be an integer >= 1"]),
        (["eval.final_n=-1"], ["eval.final_n must be an integer >= 0"]),
        (["guard.n=0"], ["guard.n must be an integer >= 1"]),
    ],
)
def test_values_outside_their_meaning(tmp_path, capsys, overrides, fragments):
    line = refused(tmp_path, capsys, *overrides)
    for fragment in fragments:
        assert fragment in line


@pytest.mark.parametrize(
    "overrides",
    [
        ["method=pgd_at", "method.eps=0"],  # eps 0: natural training through the PGD code path
        ["method=fgsm", "method.eps=0"],
        ["method.eps=1", "method.alpha=1"],
        ["method=pgd_at", "method.norm=l2", "method.eps=2.5", "method.alpha=0.5"],  # an L2 radius may exceed 1
        ["method=rs_fgsm", "method.eps=8/255", "method.alpha=10/255"],
        ["method=standard"],
        ["optim.weight_decay=0", "optim.momentum=0", "optim.nesterov=false"],
        ["seed=0"],
        [f"seed={2**63 - 1}"],
        ["model=wrn28_10", "model.depth=10", "model.width=1"],
        ["model=wrn34_10", "model.depth=70", "model.width=16"],  # WRN-70-16, the largest robust WRN
        ["model.activation=silu", "model.width=1"],
        ["train.device=cpu"],
        ["train.device=auto"],
        ["name=my-run_2.v1"],
        ["schedule.gamma=1"],
    ],
)
def test_legal_values_still_load(overrides):
    load_config(None, overrides)


# ------------------------------------------------------------------------------- seed
@pytest.mark.parametrize("seed", ["-1", str(2**63), "99999999999999999999", str(10**400)])
def test_seed_out_of_range(tmp_path, capsys, seed):
    line = refused(tmp_path, capsys, f"seed={seed}")
    assert "seed must be an integer in [0, 2**63-1" in line


# ------------------------------------------------------------------------------- models
@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["model.width=0"], ["model.width must be an integer >= 1", "got 0", "small_cnn"]),
        (["model.width=-4"], ["model.width must be an integer >= 1", "got -4"]),
        (["model.activation=tanhh"], ["model.activation must be one of relu, silu", "'tanhh'"]),
        (["model=resnet18", "model.activation=gelu"], ["model.activation must be one of relu, silu"]),
        (["model=wrn28_10", "model.depth=7"], ["model.depth must be 6n+4", "10, 16, 22, 28, 34", "got 7"]),
        (["model=wrn34_10", "model.depth=4"], ["model.depth must be 6n+4"]),
        (["model=wrn28_10", "model.width=0"], ["model.width must be an integer >= 1"]),
        (["model=wrn28_10", "model.dropout=1"], ["model.dropout must lie in [0, 1)"]),
        (["model.width=1000000"], ["model.width", "parameters", "at most 1e+09"]),
        (["model=wrn28_10", "model.width=1000"], ["model.width", "at most 1e+09"]),
    ],
)
def test_bad_model_params(tmp_path, capsys, overrides, fragments):
    line = refused(tmp_path, capsys, *overrides)
    for fragment in fragments:
        assert fragment in line


def test_model_check_builds_nothing_and_matches_the_factories():
    check_model_params("wrn28_10", {"depth": 28, "width": 10, "dropout": 0.0, "activation": "silu"})
    with pytest.raises(ValueError, match="^depth must be 6n\\+4"):
        check_model_params("wrn34_10", {"depth": 12})
    with pytest.raises(KeyError):
        check_model_params("nonexistent", {})
    from robustrain.models import create_model

    with pytest.raises(ValueError, match="depth must be 6n\\+4"):  # the factory runs the same check
        create_model("wrn28_10", 10, depth=7, width=1)


# ------------------------------------------------------------------------------- device
@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda(tmp_path, capsys, device):
    line = refused(tmp_path, capsys, f"train.device={device}")
    assert f"train.device={device} but CUDA is not available" in line and "train.device=cpu" in line


@pytest.mark.parametrize("device", ["cuda:x", "tpu", "cuda:1.5", "gpu", "cuda:-1", "CPU"])
def test_device_strings(tmp_path, capsys, device):
    line = refused(tmp_path, capsys, f"train.device={device}")
    assert "train.device must be auto, cpu, cuda, cuda:N or mps" in line


def test_device_helpers():
    assert resolve_device("auto").type in ("cpu", "cuda") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="^--device must be auto"):
        check_device_name("tpu", "--device")
    with pytest.raises(ConfigError, match="train.device must be auto"):
        resolve_device("cuda:x")
    if NO_CUDA:
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_a_saved_gpu_config_still_reads_on_a_cpu_machine():
    # report/eval read a run's saved config anywhere: only the form of train.device is checked there
    data = config_to_dict(load_config())
    data["train"]["device"] = "cuda:1"
    assert config_from_dict(data).train.device == "cuda:1"


# ------------------------------------------------------------------------------- batch vs split
def test_batch_larger_than_the_split_with_drop_last(tmp_path, capsys):
    line = refused(tmp_path, capsys, "data.batch_size=100000", "data.drop_last=true", "method=standard")
    assert "data.batch_size=100000 is larger than the 5085 training images of cifar10-mini" in line
    assert "data.drop_last=false" in line


def test_build_checks_the_split_it_loaded():
    # the per-rank split (torchrun) is only known when the run is built: build_run checks again
    from robustrain.build import _check_batch_fits

    cfg = load_config(None, ["data.drop_last=true", "data.batch_size=128"])
    _check_batch_fits(cfg, 128)
    with pytest.raises(ConfigError, match="data.batch_size=128 is larger than the 100 training images"):
        _check_batch_fits(cfg, 100)
    _check_batch_fits(load_config(None, ["data.batch_size=128"]), 100)  # drop_last=false: one short batch


# ------------------------------------------------------------------------------- run names
@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "..", "a\\\\b", "x" * 300])
def test_run_name_must_be_a_plain_folder_name(tmp_path, capsys, name):
    line = refused(tmp_path, capsys, f"name={name}")
    assert "name must be a plain folder name under out_dir" in line
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


# ------------------------------------------------------------------------------- config files
def test_non_utf8_config(tmp_path, capsys):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\xe9\n".encode("latin-1"))
    line = refused(tmp_path, capsys, config=str(p))
    assert "is not UTF-8 text (byte 0xe9 at offset 9)" in line


def test_utf8_with_bom_reads(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes("\ufeffseed: 3\n".encode("utf-8"))
    assert load_config(p).seed == 3


def test_folder_as_config(tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    line = refused(tmp_path, capsys, config=str(tmp_path / "adir"))
    assert "is a folder, not a YAML file" in line


def test_missing_and_special_config(tmp_path, capsys):
    assert "does not exist" in refused(tmp_path, capsys, config=str(tmp_path / "missing.yaml"))
    assert "is not a regular file" in refused(tmp_path, capsys, config="/dev/null")


def test_unreadable_config(tmp_path, capsys, monkeypatch):
    p = tmp_path / "secret.yaml"
    p.write_text("seed: 1\n")

    def deny(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(load_module, "open", deny, raising=False)  # chmod 000 does not stop root
    line = refused(tmp_path, capsys, config=str(p))
    assert f"cannot read config file {p}: Permission denied" in line


BILLION_LAUGHS = "\n".join(
    [f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
) + "\n"


def test_alias_bomb(tmp_path, capsys):
    p = tmp_path / "bomb.yaml"
    p.write_text(BILLION_LAUGHS)
    line = refused(tmp_path, capsys, config=str(p))
    assert "expands to more than 10000 YAML values" in line


def test_recursive_alias(tmp_path, capsys):
    p = tmp_path / "rec.yaml"
    p.write_text("seed: 1\nmethod: &m {name: trades, beta: *m}\n")
    assert "recursive YAML alias" in refused(tmp_path, capsys, config=str(p))
    assert "recursive YAML alias" in refused(tmp_path, capsys, "method.beta=&a [*a]")


def test_small_aliases_still_work(tmp_path):
    p = tmp_path / "alias.yaml"
    p.write_text("method: {name: trades, eps: &e 8/255}\nguard: {drop: 0.5}\nschedule: {milestones: &m [0.5, 0.75]}\n")
    cfg = load_config(p)
    assert cfg.method.params.eps == pytest.approx(8 / 255) and cfg.schedule.milestones == (0.5, 0.75)


def test_deeply_nested_and_huge_files(tmp_path, capsys):
    deep = tmp_path / "deep.yaml"
    deep.write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in refused(tmp_path, capsys, config=str(deep))
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: " + "x" * 3_000_000 + "\n")
    assert "larger than 1 MiB" in refused(tmp_path, capsys, config=str(huge))


@pytest.mark.parametrize(
    "text",
    [
        "method: {name: trades, beta: %s}\n",  # a long value echoed in a type error
        "%s: 1\n",  # a long unknown key
        "train: {%s: 1}\n",
        "method: {name: %s}\n",  # a long unknown registry name
        "train: {device: %s}\n",
        "schedule: {milestones: [%s]}\n",
    ],
)
def test_a_huge_value_is_never_echoed(tmp_path, capsys, text):
    p = tmp_path / "long.yaml"
    p.write_text(text % ("y" * 900_000))
    refused(tmp_path, capsys, config=str(p))  # the line length is checked there


def test_a_huge_override_is_never_echoed(tmp_path, capsys):
    refused(tmp_path, capsys, "method.beta=" + "z" * 3_000_000)
    refused(tmp_path, capsys, "optim.lr=[" + "1," * 100_000 + "1]")


def test_invalid_yaml_is_one_line_with_its_position(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [1, 2\n")
    line = refused(tmp_path, capsys, config=str(p))
    assert "is not valid YAML" in line and "(line 2, column 1)" in line


# ------------------------------------------------------------------------------- helpers
def test_message_helpers():
    assert len(one_line("a\nb" * 10_000)) <= MESSAGE_LIMIT and "\n" not in one_line("a\nb")
    assert short_repr(list(range(1000))) == "<list of 1000 items>"
    loop: list = []
    loop.append(loop)
    assert short_repr(loop) == "[[...]]" and short_repr(10**5000) == "<int too large to print>"
