import json
import subprocess
import sys

from pathlib import Path

import pytest

from robustrain.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "eval", "list"):
        assert cmd in out


@pytest.mark.parametrize("what", ["datasets", "models", "attacks", "methods", "schedules", "configs"])
def test_list(what, capsys):
    assert main(["list", what]) == 0
    out = capsys.readouterr().out
    assert out.strip()


def test_list_shows_registry_entries(capsys):
    from robustrain.methods import method_names

    main(["list", "methods"])
    out = capsys.readouterr().out
    for name in method_names():
        assert name in out


def test_list_methods_names_unchanged_by_the_redesign(capsys):
    # the method names `robustrain list methods` printed before the layering redesign
    pinned = [line.split()[0] for line in (Path(__file__).parent / "data" / "list_methods.txt").read_text().splitlines()]
    main(["list", "methods"])
    # + the trainer-level AWP suffix, listed since issue 22
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == pinned + ["<method>+awp"]


def test_list_writes_only_eps_like_values_as_fractions(capsys):
    main(["list", "methods"])
    out = capsys.readouterr().out
    assert "rho=0.2," in out and "oneoff_epoch=0.8" in out and "cos_lambda=0.2" in out
    assert "eps=8/255" in out and "alpha_universal=4/255" in out and "/255" not in out.split("rho=")[1].split(",")[0]


@pytest.mark.parametrize("override", ["train.epoch=3", "method.eps=abc", "data.name=nope"])
def test_bad_config_exit_2_one_line_nothing_written(override, tmp_path, capsys):
    code = main(["train", f"out_dir={tmp_path / 'runs'}", override])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robustrain: error:") and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_print_config(capsys):
    assert main(["train", "--print-config", "train.epochs=3"]) == 0
    assert "epochs: 3" in capsys.readouterr().out


def test_train_then_eval(tiny_overrides, tmp_path, capsys):
    assert main(["train", *tiny_overrides, "train.epochs=1", "name=smoke", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "final evaluation" in out and "pgd20" in out and "cw30" in out
    run = tmp_path / "runs" / "smoke"
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["final"]) == {"natural", "pgd20", "cw30"}

    assert main(["eval", str(run / "best.pt"), "--n", "32", "--attacks", "natural,pgd20", "--eps", "4/255",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "eps=4/255" in out
    result = json.loads((run / "best-eval-natural+pgd20-linf4_255-n32.json").read_text())
    assert result["n"] == 32 and set(result["accuracy"]) == {"natural", "pgd20"}
    assert result["eps"] == pytest.approx(4 / 255)
    # a stronger attack never beats clean accuracy on the same images
    assert result["accuracy"]["pgd20"] <= result["accuracy"]["natural"]

    # same run name again: refused with a one-line hint, nothing lost
    before = (run / "last.pt").read_bytes()
    assert main(["train", *tiny_overrides, "train.epochs=1", "name=smoke"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == before


def test_eval_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    assert main(["eval", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert "corrupt" in err and "\n" not in err


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "robustrain", "list", "datasets"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cifar10-mini" in proc.stdout


def test_missing_dataset_one_line_nothing_written(tmp_path, capsys):
    code = main(["train", f"out_dir={tmp_path / 'runs'}", "data.name=cifar10", f"data.root={tmp_path / 'nodata'}"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("robustrain: error:") and "\n" not in err
    assert "data_batch_1" in err and "c99cafc152244af753f735de768cd75f" in err
    assert not (tmp_path / "runs").exists()


def test_tensorboard_missing_is_a_config_error(tmp_path, capsys, monkeypatch):
    import importlib

    real_import = importlib.import_module

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_tensorboard)
    code = main(["train", f"out_dir={tmp_path / 'runs'}", "train.tensorboard=true", "data.name=synthetic"])
    assert code == 2
    assert "pip install tensorboard" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_download_flag_without_network_fails_cleanly(tmp_path, capsys, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code = main(["train", f"out_dir={tmp_path / 'runs'}", "data.name=cifar10", f"data.root={tmp_path / 'd'}",
                 "--download"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("robustrain: error:") and "\n" not in err
    assert not (tmp_path / "runs").exists()
    leftovers = [p for p in (tmp_path / "d").rglob("*") if p.is_file()] if (tmp_path / "d").exists() else []
    assert leftovers == []


def test_config_named_as_in_a_checkout_resolves_from_any_folder(tmp_path, monkeypatch):
    # issue 23: the README's `--config configs/mini/hat_small_cnn.yaml` from outside a source checkout
    from robustrain.cli.train import resolve_config_path
    from robustrain.config import CONFIG_DIR

    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("configs/mini/hat_small_cnn.yaml") == CONFIG_DIR / "mini" / "hat_small_cnn.yaml"
    assert resolve_config_path("configs/mini/hat_small_cnn") == CONFIG_DIR / "mini" / "hat_small_cnn.yaml"
    assert resolve_config_path("mini/hat_small_cnn") == CONFIG_DIR / "mini" / "hat_small_cnn.yaml"
    (tmp_path / "configs" / "mini").mkdir(parents=True)  # a local file of that name wins
    (tmp_path / "configs" / "mini" / "hat_small_cnn.yaml").write_text("seed: 1\n")
    assert resolve_config_path("configs/mini/hat_small_cnn.yaml") == Path("configs/mini/hat_small_cnn.yaml")
    assert resolve_config_path("configs/nope.yaml") == Path("configs/nope.yaml")  # load_config reports it
