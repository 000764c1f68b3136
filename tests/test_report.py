import json
import re
import sys

import yaml
from conftest import TINY

from robustrain.cli import main
from robustrain.config import dump_config, load_config
from robustrain.eval.report import metrics_table
from robustrain.train import fit

EPOCHS = [
    {"epoch": 1, "step": 8, "lr": 0.1, "train": {"loss": 2.25, "acc": 0.2}, "epoch_time_s": 30.0,
     "eval": {"natural": 0.35, "pgd20": 0.2}, "eval_time_s": 1.0, "best": {"epoch": 1, "pgd20": 0.2}},
    {"epoch": 2, "step": 16, "lr": 0.05, "train": {"loss": 2.0, "acc": 0.3}, "epoch_time_s": 10.0,
     "best": {"epoch": 1, "pgd20": 0.2}},
]


def links(text):
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def yaml_block(text):
    return yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])


def test_report_of_a_finished_uiat_run(tmp_path, tiny_overrides, capsys):
    cfg = load_config(None, tiny_overrides + ["train.epochs=1", "method=uiat", "method.steps=2", "name=u"])
    fit(cfg, progress=False, verbose=False)
    run = tmp_path / "runs" / "u"
    assert main(["report", str(run)]) == 0
    assert "report.md" in capsys.readouterr().out
    text = (run / "report.md").read_text()
    assert text.startswith("# Run report: u")
    # the resolved config, as saved with the run
    assert yaml_block(text) == yaml.safe_load((run / "config.yaml").read_text())
    # the final table of summary.json, in percent
    summary = json.loads((run / "summary.json").read_text())
    cells = " | ".join(f"{100 * v:.2f}" for v in summary["final"].values())
    assert f"| uiat / small_cnn | {cells} |" in text
    assert summary["protocol"] in text
    # the per-epoch table: one row per logged epoch
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert f"| 1 | {record['lr']:.4g} | {record['train']['loss']:.4f} |" in text
    # both figures, linked relative to the report, exist
    assert links(text) == ["curves.png", "perturbations.png"]
    for link in links(text):
        assert (run / link).read_bytes()[:4] == b"\x89PNG"
    assert not list(run.glob(".*.tmp"))


def make_run(root, name, overrides=(), metrics=EPOCHS):
    cfg = load_config(None, TINY + list(overrides) + [f"name={name}", f"out_dir={root}"])
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return run


def test_report_of_an_unfinished_run_elsewhere(tmp_path):
    run = make_run(tmp_path, "r")
    out = tmp_path / "docs" / "r.md"
    assert main(["report", str(run), "--out", str(out)]) == 0
    text = out.read_text()
    assert "has not finished" in text and "epochs logged: 2 of 2" in text
    assert links(text) == ["curves.png"] and (tmp_path / "docs" / "curves.png").is_file()
    assert not (run / "report.md").exists() and not (run / "curves.png").exists()
    rows = [ln for ln in text.splitlines() if re.match(r"\| [12] \|", ln)]
    assert rows == ["| 1 | 0.1 | 2.2500 | 20.00 | 30.0 | 35.00 | 20.00 |",
                    "| 2 | 0.05 | 2.0000 | 30.00 | 10.0 |  |  |"]


def test_report_without_figures_needs_no_matplotlib(tmp_path, monkeypatch):
    run = make_run(tmp_path, "r")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(run), "--no-figures"]) == 0
    text = (run / "report.md").read_text()
    assert not links(text) and "## Per-epoch metrics" in text
    assert not list(run.glob("*.png"))


def test_report_errors(tmp_path, monkeypatch, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    run = make_run(tmp_path, "r")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err
    assert "pip install -e '.[plot]'" in err and "--no-figures" in err and err.count("\n") == 1
    assert not (run / "report.md").exists()


def test_metrics_table_columns_follow_the_records():
    table = metrics_table(EPOCHS).splitlines()
    assert table[0] == "| epoch | lr | train loss | train acc | s | val natural | val pgd20 |"
    assert len(table) == 2 + len(EPOCHS)
