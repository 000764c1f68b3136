import numpy as np
import pytest
import torch

from robustrain.cli import main
from robustrain.config import load_config
from robustrain.data import load_split
from robustrain.eval.figures import ANALYSES
from robustrain.eval.images import image_grid, read_png, rescale_symmetric, write_png
from robustrain.artifacts import load_checkpoint
from robustrain.train import fit


def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((3, 5, 7)).astype(np.float32)
    write_png(img, tmp_path / "a.png", scale=2)
    back = read_png(tmp_path / "a.png")
    assert back.shape == (3, 10, 14)
    expected = (img * 255 + 0.5).astype(np.uint8).repeat(2, 1).repeat(2, 2)
    assert np.array_equal(back, expected)


def test_grid_layout_and_rescale():
    tiles = np.stack([np.full((1, 2, 2), v, np.float32) for v in (0.0, 0.25, 0.5)])
    grid = image_grid(tiles, ncols=2, pad=1, fill=1.0)
    assert grid.shape == (1, 7, 7)
    assert grid[0, 1, 1] == 0.0 and grid[0, 1, 4] == 0.25 and grid[0, 4, 1] == 0.5
    assert grid[0, 0, 0] == 1.0  # padding
    z = np.array([-2.0, 0.0, 1.0])
    assert rescale_symmetric(z).tolist() == [0.0, 0.5, 0.75]


def test_registry_has_perturbations():
    assert "perturbations" in ANALYSES


def test_perturbation_figure_shows_z_and_x_plus_z(tmp_path, tiny_overrides, monkeypatch):
    import json

    from robustrain.data import get_dataset_info
    from robustrain.eval import plots

    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: figures.append(fig) or save(fig, path, dpi))
    cfg = load_config(None, tiny_overrides + ["train.epochs=1", "method=uiat", "method.steps=2", "name=u"])
    fit(cfg, progress=False, verbose=False)
    run = tmp_path / "runs" / "u"
    assert main(["analyze", "perturbations", str(run)]) == 0
    assert (run / "perturbations.png").read_bytes()[:4] == b"\x89PNG"
    (fig,) = figures
    z = load_checkpoint(run / "last.pt")["method"]["targets.z"].numpy()
    ncols = z.shape[0]
    axes = fig.axes
    assert len(axes) == 3 * ncols
    # issue 23: every column is titled with its class, every row says what it shows
    info = get_dataset_info("synthetic")
    names = list(info.class_names) if info.class_names else [f"class {c}" for c in range(ncols)]
    assert [ax.get_title() for ax in axes[:ncols]] == names
    assert [axes[r * ncols].get_ylabel() for r in range(3)] == ["z_c (grey = 0)", "test image x", "x + z_c"]
    assert "u" in fig.get_suptitle() and "max|z|" in fig.get_suptitle()
    series = json.loads((run / "perturbations.json").read_text())
    assert series["class_names"] == names and series["rows"][0] == "z_c (grey = 0)"
    images, labels = load_split("synthetic", "test")

    def tile(row, col):  # the plotted pixels, (C, H, W)
        return np.asarray(axes[row * ncols + col].get_images()[0].get_array()).transpose(2, 0, 1)

    for cls in (0, ncols - 1):
        x = images[int((labels == cls).nonzero()[0])].float().numpy() / 255
        np.testing.assert_allclose(tile(0, cls), rescale_symmetric(z)[cls], atol=1e-6)
        np.testing.assert_allclose(tile(1, cls), x, atol=1e-6)
        np.testing.assert_allclose(tile(2, cls), np.clip(x + z[cls], 0, 1), atol=1e-6)
    assert torch.as_tensor(z).abs().max() <= 4 / 255 + 1e-6  # eps' ball


def test_perturbation_figure_names_cifar_classes(tmp_path, monkeypatch):
    from robustrain.data import get_dataset_info
    from robustrain.eval import plots

    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: figures.append(fig) or save(fig, path, dpi))
    cfg = load_config(None, ["data.name=cifar10-mini", "data.val_n=4957", "model.width=4", "method=uiat",
                             "method.steps=1", "train.epochs=1", "eval.n=16", "eval.final_n=16", "guard.n=16",
                             "eval.final_attacks=natural", f"out_dir={tmp_path}", "name=u"])
    fit(cfg, progress=False, verbose=False)
    assert main(["analyze", "perturbations", str(tmp_path / "u")]) == 0
    titles = [ax.get_title() for ax in figures[0].axes[:10]]
    assert titles == list(get_dataset_info("cifar10-mini").class_names)
    assert titles[:2] == ["airplane", "automobile"]


def test_perturbations_of_a_non_universal_method_is_a_clear_error(tmp_path, tiny_overrides, capsys):
    cfg = load_config(None, tiny_overrides + ["train.epochs=1", "name=p"])
    fit(cfg, progress=False, verbose=False)
    assert main(["analyze", "perturbations", str(tmp_path / "runs" / "p")]) == 2
    assert "no universal inverse perturbations" in capsys.readouterr().err


# ---------------------------------------------------------------- UIAT figures 1-5, 7, table 2
import json
import sys

import torch.nn.functional as F
from conftest import TINY

from robustrain.config import config_to_dict, dump_config
from robustrain.eval import evaluate_robustness
from robustrain.eval.figures import analysis_description
from robustrain.eval.figures._common import eps_grid
from robustrain.eval.runs import swept_params, load_runs
from robustrain.artifacts import FORMAT, load_model, save_checkpoint
from robustrain.build import build_model


def make_checkpoint(path, seed):
    """A randomly initialised small CNN for synthetic data as a checkpoint: an imperfect model
    (about 10% natural accuracy) without the cost of training; no method state."""
    cfg = load_config(None, TINY)
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"format": FORMAT, "config": config_to_dict(cfg), "model": build_model(cfg).state_dict(),
                     "ema": None, "epoch": 1}, path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "pgd" / "best.pt", seed=0).parent


def make_run(root, name, overrides=(), final=None, metrics=()):
    """A run folder written by hand: config.yaml (resolved), metrics.jsonl, summary.json."""
    cfg = load_config(None, TINY + list(overrides) + [f"name={name}", f"out_dir={root}"])
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if final is not None:
        (run / "summary.json").write_text(json.dumps({"final": final, "checkpoint": "best.pt",
                                                      "config": config_to_dict(cfg)}))
    return run


def read_json(path):
    return json.loads(path.read_text())


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eps_grid_is_symmetric_with_zero_in_the_middle():
    grid = eps_grid(8 / 255, 9)
    assert len(grid) == 9 and grid[4] == 0.0 and grid[-1] == 8 / 255
    assert grid == [-e for e in reversed(grid)]
    assert [round(e * 255, 9) for e in grid] == [-8, -6, -4, -2, 0, 2, 4, 6, 8]
    for bad in (8, 1, 0):
        with pytest.raises(ValueError, match="odd"):
            eps_grid(8 / 255, bad)


def test_strength_series(trained, tmp_path, capsys):
    n = 64
    assert main(["analyze", "strength", str(trained / "best.pt"), "--n", str(n), "--points", "3", "--steps", "2",
                 "--out", str(tmp_path / "fig"), "--no-progress"]) == 0
    assert "strength.json" in capsys.readouterr().out
    assert is_png(tmp_path / "fig" / "strength.png")
    data = read_json(tmp_path / "fig" / "strength.json")
    eps = data["eps"]
    assert eps == [-e for e in reversed(eps)] and eps[1] == 0.0 and eps[-1] == pytest.approx(8 / 255)
    (m,) = data["models"]
    acc = m["accuracy"]

    # eps = 0 is natural accuracy, computed here directly; the halves are the n/2 smallest losses
    loaded = load_model(trained / "best.pt")
    x, y = load_split("synthetic", "test")
    x, y = x[:n].float() / 255, y[:n]
    with torch.no_grad():
        logits = loaded.model(x)
    correct = (logits.argmax(1) == y).float()
    order = F.cross_entropy(logits, y, reduction="none").argsort(stable=True)
    assert acc["all"][1] == pytest.approx(correct.mean().item())
    assert acc["small_loss"][1] == pytest.approx(correct[order[: n // 2]].mean().item())
    assert acc["large_loss"][1] == pytest.approx(correct[order[n // 2 :]].mean().item())
    assert acc["small_loss"][1] > acc["large_loss"][1]
    # inverse perturbations help, adversarial ones hurt
    assert acc["all"][0] >= acc["all"][1] >= acc["all"][-1]
    assert acc["all"][0] > acc["all"][-1]
    # "all" is the size-weighted mean of the halves at every radius
    for a, s, l in zip(acc["all"], acc["small_loss"], acc["large_loss"]):
        assert a == pytest.approx((m["n_small"] * s + m["n_large"] * l) / n)
    assert m["gap_at_eps_max"] == pytest.approx(acc["small_loss"][-1] - acc["large_loss"][-1])


def test_strength_bad_grid_is_a_usage_error(trained, tmp_path, capsys):
    assert main(["analyze", "strength", str(trained), "--points", "4", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "odd" in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_aa_diff_series_equals_direct_evaluation(trained, tmp_path, capsys):
    other = make_checkpoint(tmp_path / "other" / "best.pt", seed=1).parent
    out = tmp_path / "diff.png"
    # fgsm: the cheapest attack; the analysis takes any name of `robustrain eval --attacks`
    assert main(["analyze", "aa-diff", str(trained), str(other / "best.pt"), "--attack", "fgsm",
                 "--eps", "2/255,8/255", "--n", "16", "--out", str(out), "--no-progress"]) == 0
    data = read_json(tmp_path / "diff.json")
    assert is_png(out)
    assert data["eps"] == pytest.approx([2 / 255, 8 / 255]) and data["attack"] == "fgsm"
    stages = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("aa-diff: fgsm on ")]
    assert len(stages) == 4 and "on B (" in stages[-1] and "at eps 8/255, 16 images" in stages[-1]  # no terminal
    x, y = load_split("synthetic", "test")
    for side, path in (("a", trained / "best.pt"), ("b", other / "best.pt")):
        model = load_model(path).model
        want = [evaluate_robustness(model, x[:16], y[:16], ["fgsm"], eps=e, progress=False).accuracy["fgsm"]
                for e in data["eps"]]
        assert data[side]["acc"] == pytest.approx(want)
    assert data["diff"] == pytest.approx([a - b for a, b in zip(data["a"]["acc"], data["b"]["acc"])])


def test_aa_diff_of_a_model_with_itself_is_zero(trained, tmp_path):
    assert main(["analyze", "aa-diff", str(trained), str(trained), "--attack", "fgsm", "--eps", "4/255",
                 "--n", "16", "--out", str(tmp_path)]) == 0
    assert read_json(tmp_path / "aa-diff.json")["diff"] == [0.0]


def test_aa_diff_unknown_attack_is_a_usage_error(trained, tmp_path, capsys):
    assert main(["analyze", "aa-diff", str(trained), str(trained), "--attack", "nope", "--n", "8",
                 "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err


EPOCHS = [
    {"epoch": 1, "step": 8, "lr": 0.1, "train": {"loss": 2.2, "acc": 0.2, "acc_adv": 0.2, "acc_nat": 0.3},
     "epoch_time_s": 30.0, "guard": {"pgd": 0.15, "best": 0.15},
     "eval": {"natural": 0.35, "pgd20": 0.2}, "best": {"epoch": 1, "pgd20": 0.2}},
    {"epoch": 2, "step": 16, "lr": 0.05, "train": {"loss": 2.0, "acc": 0.3, "acc_adv": 0.3, "acc_nat": 0.45},
     "epoch_time_s": 10.0, "guard": {"pgd": 0.25, "best": 0.25}, "best": {"epoch": 1, "pgd20": 0.2}},
    {"epoch": 3, "step": 24, "lr": 0.01, "train": {"loss": 1.8, "acc": 0.5, "acc_adv": 0.5, "acc_nat": 0.6},
     "epoch_time_s": 14.0, "guard": {"pgd": 0.3, "best": 0.3},
     "eval": {"natural": 0.5, "pgd20": 0.3}, "best": {"epoch": 3, "pgd20": 0.3}},
    {"epoch": 4, "step": 32, "lr": 0.001, "train": {"loss": 1.5, "acc": 0.7, "acc_adv": 0.7, "acc_nat": 0.8},
     "epoch_time_s": 12.0, "guard": {"pgd": 0.45, "best": 0.45},
     "eval": {"natural": 0.55, "pgd20": 0.25}, "best": {"epoch": 3, "pgd20": 0.3}},
]


def test_curves_series_equal_the_metrics(tmp_path):
    run = make_run(tmp_path, "r", metrics=EPOCHS)
    assert main(["analyze", "curves", str(run)]) == 0
    assert is_png(run / "curves.png")
    (data,) = read_json(run / "curves.json")["runs"]
    s = data["series"]
    assert "train.acc" not in s  # the same series as train.acc_adv
    assert s["train.acc_adv"] == {"label": "train: adversarial (training attack)", "epoch": [1, 2, 3, 4],
                                  "acc": [0.2, 0.3, 0.5, 0.7]}
    assert s["train.acc_nat"]["acc"] == [0.3, 0.45, 0.6, 0.8]
    assert s["guard.pgd"]["acc"] == [0.15, 0.25, 0.3, 0.45]
    # evaluation every other epoch: its own epochs; the best epoch marks robust overfitting
    assert s["eval.pgd20"] == {"label": "validation: pgd20", "epoch": [1, 3, 4], "acc": [0.2, 0.3, 0.25]}
    assert s["eval.natural"]["acc"] == [0.35, 0.5, 0.55]
    assert data["best_epoch"] == 3


def test_curves_of_several_runs_and_a_resumed_epoch(tmp_path):
    a = make_run(tmp_path, "a", metrics=EPOCHS[:2])
    redo = {**EPOCHS[1], "train": {"loss": 1.0, "acc": 0.9}}  # epoch 2 again after a resume
    b = make_run(tmp_path, "b", ["method=trades"], metrics=EPOCHS[:2] + [redo])
    out = tmp_path / "figs" / "c.png"
    assert main(["analyze", "curves", str(a), str(b), "--out", str(out)]) == 0
    runs = read_json(tmp_path / "figs" / "c.json")["runs"]
    assert [r["label"] for r in runs] == ["pgd_at (a)", "trades (b)"]
    assert runs[1]["series"]["train.acc"]["acc"] == [0.2, 0.9]


def sweep(tmp_path, values, key="method.lam", method="uiat"):
    return [make_run(tmp_path, f"{key}-{v}", [f"method={method}", f"{key}={v}"],
                     final={"natural": 0.9 - 0.1 * i, "pgd20": 0.3 + 0.05 * i, "cw30": 0.2})
            for i, v in enumerate(values)]


def test_tradeoff_detects_the_swept_key(tmp_path):
    runs = sweep(tmp_path, [3.5, 1.0, 6.0])
    assert swept_params(load_runs(runs)) == ["method.lam"]
    assert main(["analyze", "tradeoff", *map(str, runs)]) == 0  # default: figures/ in the runs' parent folder
    data = read_json(tmp_path / "figures" / "tradeoff.json")
    assert data["params"] == ["method.lam"] and data["metric"] == "pgd20"
    got = {p["params"]["method.lam"]: (p["natural"], p["robust"]) for p in data["points"]}
    assert got == {3.5: (0.9, 0.3), 1.0: (pytest.approx(0.8), pytest.approx(0.35)), 6.0: (0.7, 0.4)}
    assert is_png(tmp_path / "figures" / "tradeoff.png")


def test_tradeoff_glob_param_and_metric_options(tmp_path, capsys):
    sweep(tmp_path / "s", [1.0, 2.0])
    assert main(["analyze", "tradeoff", str(tmp_path / "s" / "*"), "--param", "method.beta", "--metric", "cw30",
                 "--out", str(tmp_path / "o")]) == 0
    data = read_json(tmp_path / "o" / "tradeoff.json")
    assert data["params"] == ["method.beta"] and data["metric"] == "cw30"
    assert [p["params"]["method.beta"] for p in data["points"]] == [1.0, 1.0]  # the default, filled in
    assert main(["analyze", "tradeoff", str(tmp_path / "s" / "*"), "--metric", "aa", "--out", str(tmp_path)]) == 2
    assert "--metric aa" in capsys.readouterr().err


def test_tradeoff_prefers_autoattack_from_a_later_eval(tmp_path):
    runs = sweep(tmp_path, [1.0, 2.0])
    for i, run in enumerate(runs):
        (run / "best-eval.json").write_text(json.dumps({"norm": "Linf", "eps": 8 / 255,
                                                        "accuracy": {"natural": 0.0, "aa": 0.1 * (i + 1)}}))
    (runs[0] / "last-eval.json").write_text(json.dumps({"eps": 8 / 255, "accuracy": {"aa": 0.9}}))  # not best.pt
    assert main(["analyze", "tradeoff", *map(str, runs)]) == 0
    data = read_json(tmp_path / "figures" / "tradeoff.json")
    assert data["metric"] == "aa"
    assert [(p["natural"], p["robust"]) for p in data["points"]] == [(0.9, 0.1), (0.8, 0.2)]  # summary's natural wins
    (runs[1] / "best-eval.json").write_text(json.dumps({"eps": 4 / 255, "accuracy": {"aa": 0.5}}))  # other eps
    assert main(["analyze", "tradeoff", *map(str, runs)]) == 0
    assert read_json(tmp_path / "figures" / "tradeoff.json")["metric"] == "pgd20"


def test_tradeoff_errors(tmp_path, capsys):
    same = [make_run(tmp_path, n, final={"natural": 0.5, "pgd20": 0.2}) for n in ("a", "b")]
    assert main(["analyze", "tradeoff", *map(str, same)]) == 2
    assert "--param" in capsys.readouterr().err
    unfinished = make_run(tmp_path, "c", ["method.steps=3"], metrics=EPOCHS[:1])
    assert main(["analyze", "tradeoff", str(same[0]), str(unfinished)]) == 2
    assert "summary.json" in capsys.readouterr().err
    assert main(["analyze", "tradeoff", str(tmp_path / "nothing*")]) == 2
    assert not list(tmp_path.glob("tradeoff*")) and not (tmp_path / "figures").exists()


def test_sensitivity_one_panel_per_swept_key(tmp_path):
    centre = make_run(tmp_path, "centre", ["method=uiat"], final={"natural": 0.8, "pgd20": 0.4})
    lam = [make_run(tmp_path, f"lam{v}", ["method=uiat", f"method.lam={v}"], final={"natural": v / 10, "pgd20": v / 20})
           for v in (1.0, 6.0)]
    beta = [make_run(tmp_path, f"beta{v}", ["method=uiat", f"method.beta={v}"], final={"natural": v / 4, "pgd20": v / 8})
            for v in (0.5, 2.0)]
    assert main(["analyze", "sensitivity", *map(str, [centre, *lam, *beta]), "--out", str(tmp_path / "s.png")]) == 0
    data = read_json(tmp_path / "s.json")
    assert set(data["params"]) == {"method.lam", "method.beta"}
    lam_s, beta_s = data["params"]["method.lam"], data["params"]["method.beta"]
    default_lam = load_runs([centre])[0].config["method.lam"]
    assert lam_s["values"] == sorted([1.0, 6.0, default_lam])
    want = {1.0: (0.1, 0.05), 6.0: (0.6, 0.3), default_lam: (0.8, 0.4)}
    # flat sequences: pytest >= 9.2's approx rejects nested tuples
    assert lam_s["natural"] == pytest.approx([want[v][0] for v in lam_s["values"]])
    assert lam_s["robust"] == pytest.approx([want[v][1] for v in lam_s["values"]])
    assert beta_s["values"] == sorted([0.5, 2.0, load_runs([centre])[0].config["method.beta"]])
    assert len(beta_s["runs"]) == 3 and str(centre) in beta_s["runs"]
    assert is_png(tmp_path / "s.png")


def test_timing_means_exclude_the_first_epoch(tmp_path, capsys):
    a = make_run(tmp_path, "pgd_at", metrics=EPOCHS)
    b = make_run(tmp_path, "one", ["method=trades"], metrics=EPOCHS[:1])
    assert main(["analyze", "timing", str(a), str(b), "--out", str(tmp_path / "t")]) == 0
    rows = read_json(tmp_path / "t" / "timing.json")["runs"]
    assert rows[0]["mean_s"] == pytest.approx((10 + 14 + 12) / 3) and rows[0]["total_s"] == pytest.approx(66)
    assert rows[0]["epoch_time_s"] == [30, 10, 14, 12] and rows[0]["mean_excludes_first"]
    assert rows[1]["mean_s"] == 30 and not rows[1]["mean_excludes_first"]
    md = (tmp_path / "t" / "timing.md").read_text()
    assert "| pgd_at | small_cnn | synthetic | 4 | 12.0 | 0.20 | 66.0 |" in md
    assert "| trades (one) |" in md
    assert is_png(tmp_path / "t" / "timing.png")


def test_missing_matplotlib_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path, "r", metrics=EPOCHS)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["analyze", "timing", str(run)]) == 1
    err = capsys.readouterr().err
    assert "pip install -e '.[plot]'" in err and err.count("\n") == 1
    assert not list(run.glob("timing*"))


@pytest.mark.parametrize("kind", ANALYSES.names())
def test_every_analysis_has_its_own_help(kind, capsys):
    with pytest.raises(SystemExit) as info:
        main(["analyze", kind, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and " ".join(analysis_description(kind).split()[:8]) in " ".join(out.split())


def test_analyze_needs_a_kind(capsys):
    with pytest.raises(SystemExit) as info:
        main(["analyze"])
    assert info.value.code == 2


def test_analyses_beside_runs_do_not_break_the_next_glob(tmp_path, capsys):
    """Issue 23: curves.json / tradeoff.json written into runs/compare/ made the README's next
    command (`analyze timing 'runs/compare/*'`) fail on a file that is not a run."""
    runs = sweep(tmp_path, [1.0, 2.0])
    for r in runs:
        (r / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in EPOCHS))
    assert main(["analyze", "curves", *map(str, runs)]) == 0
    assert (tmp_path / "figures" / "curves.png").is_file()
    (tmp_path / "notes.txt").write_text("a user's file")  # another non-run entry of the glob
    capsys.readouterr()
    assert main(["analyze", "tradeoff", str(tmp_path / "*")]) == 0
    err = capsys.readouterr().err
    assert f"skipped {tmp_path / 'figures'}: not a run folder" in err and "notes.txt: not a run folder" in err
    assert len(read_json(tmp_path / "figures" / "tradeoff.json")["points"]) == 2
    assert main(["analyze", "tradeoff", str(tmp_path / "notes.txt")]) == 2  # one path alone must be a run
