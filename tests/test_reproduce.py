"""robustrain reproduce: paper data, table specs and their configs, the table math, the plan
(scales, shared runs, helpers, generated data, checks) and one mini row end to end."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from robustrain.cli import main
from robustrain.config import CONFIG_DIR, dump_config, load_config
from robustrain.reproduce import (
    SCALES,
    TABLES,
    ReproduceOptions,
    build_plan,
    check_ready,
    collect_results,
    format_plan,
    load_paper_tables,
    parse_extra_data,
    render_markdown,
)
from robustrain.reproduce.plan import config_fingerprint
from robustrain.reproduce.stats import mean_std
from robustrain.reproduce.summary import cell, ratio_cell
from robustrain.utils.errors import ConfigError, DatasetFileError, ReproduceError
from robustrain.reproduce import results as results_mod
from robustrain.reproduce.paper import PAPER_FILE
from robustrain.reproduce.results import EVAL_FILE, _eval_key, decode_mask, encode_mask, worst_case
from robustrain.reproduce.stats import T975, paired_difference, t_quantile_975
from robustrain.reproduce.summary import format_diff, format_mean_std, format_paired, paired_cell, write_atomic
from robustrain.eval import RobustEvaluation

ROOT = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = Path("/work/shared/reference/uiat-paper-tables.json")
#: sha256 of the project's reference file uiat-paper-tables.json (the packaged copy must be exact)
REFERENCE_SHA256 = "1c669844899a93ef4746f37f92e12f6f689c0aff820bd61170fef291a435ac88"
ROWS = [(t.name, r) for t in (e.obj for e in TABLES) for r in t.rows]


# ------------------------------------------------------------------------ paper data
def test_paper_file_is_the_reference_copy():
    assert hashlib.sha256(PAPER_FILE.read_bytes()).hexdigest() == REFERENCE_SHA256
    if SHARED_REFERENCE.is_file():  # in the project's workspace: compare with the source itself
        assert json.loads(SHARED_REFERENCE.read_text()) == load_paper_tables()


@pytest.mark.parametrize("table", [f"table{k}" for k in range(1, 7)])
def test_every_paper_row_is_reproduced_once_with_its_numbers(table):
    paper_rows = load_paper_tables()[table]["rows"]
    spec = TABLES.get(table)
    keys = [c.key for c in spec.columns if c.source != "ratio"]
    expected = sorted(json.dumps([r.get(k) for k in keys if k in r]) for r in paper_rows)
    if table == "table2":  # rows are (method, model) cells of the paper's (method) rows
        expected = sorted(json.dumps([r[m]]) for r in paper_rows for m in ("resnet18", "wrn28", "wrn34"))
    got = sorted(json.dumps([row.paper[k] for k in keys if k in row.paper]) for row in spec.rows)
    assert got == expected
    assert len({r.id for r in spec.rows}) == len(spec.rows)


def test_paper_numbers_spot_check():
    t1, t6 = TABLES.get("table1"), TABLES.get("table6")
    assert dict(t1.row("uiat-cifar100").paper) == {"natural": 59.55, "pgd20": 30.81, "cw": 28.05, "aa": 25.73}
    assert t6.row("row1").paper["aa"] == 48.33
    assert TABLES.get("table2").row("hat-wrn34_10").paper["min_per_epoch"] == 18.95
    assert TABLES.get("table5").row("rs_fgsm-eps10").paper["aa"] == 0.0
    assert dict(TABLES.get("lrat").row("lrat").paper) == {}


# ------------------------------------------------------------------- row configs
@pytest.mark.parametrize("table,row", ROWS, ids=[f"{t}-{r.id}" for t, r in ROWS])
def test_row_config_trains_what_the_row_claims(table, row):
    cfg = load_config(CONFIG_DIR / row.config)
    assert (cfg.method.name, cfg.data.name, cfg.model.name) == (row.method, row.dataset, row.model)
    params = cfg.method.params  # typed, defaults filled in (reads fall through a composite's parts)
    if hasattr(params, "eps"):
        assert params.eps == pytest.approx(row.eps)
    if row.helper is not None:
        helper = load_config(CONFIG_DIR / row.helper)
        assert helper.method.name == "standard"
        assert (helper.data.name, helper.model.name, helper.train.epochs) == (
            cfg.data.name, cfg.model.name, cfg.train.epochs)
    if row.extra_ratio is not None:  # Table 4: SiLU, EMA 0.995, batch 512, lr 0.2, 400 epochs
        assert (cfg.model.params["activation"], cfg.train.ema, cfg.train.ema_decay) == ("silu", True, 0.995)
        assert (cfg.data.batch_size, cfg.optim.lr, cfg.train.epochs) == (512, 0.2, 400)
    if row.ref is not None:
        assert TABLES.get(table).row(row.ref).method == "standard"
    text = (CONFIG_DIR / row.config).read_text()
    if row.config.split("/")[0] in ("table1", "table2", "table3", "table4", "table5", "lrat"):
        assert f"robustrain reproduce {table} --only {row.id}" in text
        assert f"robustrain train --config configs/{row.config}" in text


def test_every_reproduction_config_belongs_to_a_row():
    used = {r.config for _, r in ROWS} | {r.helper for _, r in ROWS if r.helper}
    own = {str(p.relative_to(CONFIG_DIR)) for d in ("table1", "table2", "table3", "table4", "table5", "lrat")
           for p in (CONFIG_DIR / d).glob("*.yaml")}
    assert own and own <= used
    assert all((CONFIG_DIR / c).is_file() for c in used)


def test_paper_settings_in_the_configs():
    t1 = TABLES.get("table1")
    svhn = load_config(CONFIG_DIR / t1.row("uiat-svhn").config)
    assert (svhn.train.epochs, svhn.method.params.alpha, svhn.method.params.lam) == (30, 1 / 255, 3.0)
    t3 = load_config(CONFIG_DIR / TABLES.get("table3").row("uiat_oneoff-eps12").config)
    assert (t3.method.params.eps, t3.method.params.alpha) == (12 / 255, 3 / 255)
    ga = load_config(CONFIG_DIR / TABLES.get("table5").row("grad_align-eps10").config)
    assert ga.method.params.cos_lambda == 0.356 and ga.model.name == "preact_resnet18"
    uiat4 = load_config(CONFIG_DIR / TABLES.get("table4").row("uiat-wrn28-cifar10").config)
    assert uiat4.method.params.momentum_start == 350 / 400


# ---------------------------------------------------------------------- table math
def test_mean_std_hand_made():
    mean, std = mean_std([50.0, 52.0, 54.0])
    assert mean == 52.0 and std == pytest.approx(2.0)  # sample std: sqrt((4 + 0 + 4) / 2)
    assert mean_std([7.5]) == (7.5, None)
    with pytest.raises(ValueError):
        mean_std([])


def test_cell_difference_and_formatting():
    c = cell([84.0, 86.0], paper=85.01)
    assert c["mean"] == 85.0 and c["diff"] == pytest.approx(-0.01) and c["n"] == 2
    assert format_mean_std(c["mean"], c["std"]) == "85.00 ± 1.41"
    assert format_diff(c["diff"]) == "-0.01" and format_diff(1.5) == "+1.50" and format_diff(None) == "—"
    empty = cell([], paper=49.11)
    assert (empty["mean"], empty["diff"], empty["paper"]) == (None, None, 49.11)
    assert cell([40.0], None)["diff"] is None


def test_ratio_cell():
    r = ratio_cell(cell([2.0, 4.0], 2.57), cell([1.0], 0.35))
    assert r["mean"] == 3.0 and r["paper"] == pytest.approx(2.57 / 0.35)
    assert r["diff"] == pytest.approx(3.0 - 2.57 / 0.35) and r["n"] == 1
    assert ratio_cell(cell([], 1.0), cell([1.0], 1.0))["mean"] is None


def test_render_markdown_rows_and_columns():
    res = {"table": "t", "title": "T", "scale": "mini", "notes": ["a note"], "protocol": ["p"],
           "columns": [{"key": "natural", "label": "natural", "unit": "%"},
                       {"key": "t", "label": "min/epoch", "unit": "min"}],
           "rows": [{"label": "A|B", "seeds": 3, "note": "n",
                     "cells": {"natural": cell([80.0, 82.0, 84.0], 83.8), "t": cell([0.5], 0.35)}},
                    {"label": "C", "seeds": 0, "note": "skipped: x", "cells": {}}]}
    lines = render_markdown(res).splitlines()
    assert "- a note" in lines and "- protocol: p" in lines
    assert lines[-2] == "| A\\|B | 82.00 ± 2.00 | 83.80 | -1.80 | 0.50 | 0.35 | +0.15 | 3 | n |"
    assert lines[-1] == "| C | — | — | — | — | — | — | 0 | skipped: x |"
    header = next(ln for ln in lines if ln.startswith("| row"))
    assert header.count("|") == len(lines[-1].split("|")) - 1 - lines[-1].count("\\|")


# -------------------------------------------------------------------- statistics
def test_paired_difference_hand_made():
    # differences 2, 4, 3: mean 3, sample sd 1, t_{0.975, 2} = 4.302652730, half-width 4.302652730 / sqrt(3)
    mean, half, n = paired_difference([52.0, 55.0, 54.0], [50.0, 51.0, 51.0])
    assert (mean, n) == (3.0, 3) and half == pytest.approx(4.302652730 / 3 ** 0.5, abs=1e-12)
    assert half == pytest.approx(2.48413, abs=1e-5)
    # differences -1, 1 (n=2): mean 0, sd sqrt(2), half-width 12.706204736 * sqrt(2) / sqrt(2)
    assert paired_difference([1.0, 3.0], [2.0, 2.0]) == pytest.approx((0.0, 12.706204736, 2))
    # identical differences: no spread, a zero-width interval
    assert paired_difference([5.0, 6.0, 7.0], [4.0, 5.0, 6.0]) == pytest.approx((1.0, 0.0, 3))
    assert paired_difference([40.0], [38.5]) == (1.5, None, 1)  # one pair: no interval
    with pytest.raises(ValueError, match="pairs"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_difference([], [])


def test_t_quantiles():
    assert len(T975) == 30 and t_quantile_975(1) == 12.706204736 and t_quantile_975(30) == 2.042272456
    assert t_quantile_975(9) == 2.262157163  # the textbook 2.262 for 10 pairs
    assert all(a > b for a, b in zip(T975, T975[1:]))  # decreasing towards the normal quantile
    assert 1.96 < t_quantile_975(10_000) < t_quantile_975(31) < t_quantile_975(30)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError):
            t_quantile_975(bad)
    stats = pytest.importorskip("scipy.stats")  # scipy is an optional extra: the table stands alone
    for df in list(range(1, 31)) + [31, 40, 60, 120, 1000]:
        assert t_quantile_975(df) == pytest.approx(float(stats.t.ppf(0.975, df)), abs=1e-5)


def test_paired_cell_and_its_formatting():
    p = paired_cell([52.0, 55.0, 54.0], [50.0, 51.0, 51.0], baseline="sat-cifar10", seeds=[0, 1, 2])
    assert (p["baseline"], p["seeds"], p["n"], p["mean"]) == ("sat-cifar10", [0, 1, 2], 3, 3.0)
    assert p["low"] == pytest.approx(3.0 - p["half_width"]) and p["high"] == pytest.approx(3.0 + p["half_width"])
    assert format_paired(p) == "+3.00 ± 2.48"
    one = paired_cell([52.0], [50.0])
    assert (one["half_width"], one["low"]) == (None, None) and format_paired(one) == "+2.00 (n=1: no interval)"
    assert format_paired(paired_cell([], [])) == "—"


def test_masks_round_trip_and_worst_case():
    mask = torch.tensor([i % 3 == 0 or i == 10 for i in range(21)])
    text = encode_mask(mask)
    assert len(text) == 6 and torch.equal(decode_mask(text, 21), mask)  # 21 images: 3 bytes
    assert encode_mask([]) == "" and decode_mask("", 0).shape == (0,)
    with pytest.raises(ValueError):
        decode_mask(text, 30)  # another number of images
    with pytest.raises(ValueError):
        decode_mask("ff", 3)  # bits set past the last image
    a, b = torch.tensor([True, True, False, True]), torch.tensor([True, False, True, True])
    assert worst_case({"a": a, "b": b}).tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="same images"):
        worst_case({"a": a, "b": b[:3]})


def test_write_atomic_replaces_whole(tmp_path):
    p = write_atomic(tmp_path / "a" / "r.md", "one")
    write_atomic(p, "two")
    assert p.read_text() == "two" and [f.name for f in p.parent.iterdir()] == ["r.md"]


# --------------------------------------------------------------------------- plan
def test_mini_plan_maps_rows_and_shares_identical_runs(tmp_path):
    plan = build_plan("table1", ReproduceOptions(scale="mini", out=tmp_path, seeds=2))
    by_id = {rp.row.id: rp for rp in plan.rows}
    c10, c100 = by_id["uiat-cifar10"].runs[1], by_id["uiat-cifar100"].runs[1]
    assert (c10.cfg.data.name, c10.cfg.model.name, c10.cfg.train.epochs, c10.cfg.seed) == (
        "cifar10-mini", "small_cnn", 4, 1)
    assert c10.run_dir == tmp_path / "table1" / "uiat-cifar10" / "seed1"
    assert c100.owner is c10 and c100.train_dir == c10.run_dir  # same config at mini: trained once
    assert by_id["uiat-cifar100"].note == "mini analogue of cifar100 / resnet18"
    svhn = by_id["uiat-svhn"].runs[0]
    assert svhn.owner is None and svhn.cfg.method.params.lam == 3.0
    hat = by_id["hat-cifar10"].runs[0]
    assert hat.helper.cfg.method.name == "standard" and hat.helper.cfg.model.name == "small_cnn"
    assert hat.cfg.method.params.helper == str(hat.helper.train_dir / "last.pt")
    assert by_id["hat-svhn"].runs[0].helper.owner is hat.helper  # one helper for every mini HAT row
    # one image set for every column, AutoAttack included: the whole mini test split by default
    assert tuple(plan.attacks) == ("natural", "pgd20", "cw30", "aa") and plan.eval_n == 0
    assert not hasattr(plan, "aa_n")
    text = format_plan(plan)
    assert "natural, pgd20, cw30, aa on all test images (every column on the same images)" in text
    assert "robustrain train --config configs/cifar10/uiat_resnet18.yaml" in text
    assert f"out_dir={tmp_path}/table1/uiat-cifar10 name=seed0" in text


def test_study_plan_trains_longer_selects_on_all_held_out_images_and_scales_awp_warmup(tmp_path):
    from robustrain.reproduce.tables import STUDY_EPOCHS
    plan = build_plan("study", ReproduceOptions(scale="mini", out=tmp_path, seeds=3))
    by_id = {rp.row.id: rp for rp in plan.rows}
    assert list(by_id) == ["pgd_at", "trades", "uiat", "uiat_oneoff", "pgd_at+awp", "trades+awp"]
    for rp in plan.rows:
        assert [r.cfg.seed for r in rp.runs] == [0, 1, 2]
        cfg = rp.runs[0].cfg
        assert (cfg.data.name, cfg.model.name, cfg.train.epochs, cfg.eval.n) == (
            "cifar10-mini", "small_cnn", STUDY_EPOCHS, 1000)
        assert rp.row.baseline == (None if rp.row.id == "pgd_at" else "pgd_at")
    awp_pgd, awp_trades = by_id["pgd_at+awp"].runs[0].cfg.awp, by_id["trades+awp"].runs[0].cfg.awp
    assert (awp_pgd.gamma, awp_pgd.warmup) == (0.01, 0)
    # official TRADES+AWP: 9 of 100 epochs without AWP; at 12 epochs round(9 * 12 / 100) = 1 epoch without
    assert (awp_trades.gamma, awp_trades.warmup) == (0.005, round(9 * STUDY_EPOCHS / 100) + 1)
    # other tables keep the default mini length
    assert build_plan("table6", ReproduceOptions(out=tmp_path, only=("row1",))).rows[0].runs[0].cfg.train.epochs == 4
    text = format_plan(plan)
    assert f"train.epochs=min(E,{STUDY_EPOCHS}) eval.n=1000" in text


def test_full_plan_keeps_the_paper_setting(tmp_path):
    plan = build_plan("table5", ReproduceOptions(scale="full", out=tmp_path, only=("n_fgsm*-eps8",),
                                                 data_root="/data"))
    assert [rp.row.id for rp in plan.rows] == ["n_fgsm-eps8", "n_fgsm+uiat-eps8"]
    cfg = plan.rows[1].runs[0].cfg
    assert (cfg.model.name, cfg.train.epochs, cfg.data.root, cfg.eval.final_attacks) == (
        "preact_resnet18", 30, "/data", ("natural",))
    assert plan.eval_n == 0


def test_scales_registry():
    assert SCALES.names() == ["full", "mini"]
    cfg = load_config(CONFIG_DIR / "table4/uiat-prn18-cifar10.yaml")
    over = SCALES.get("mini").overrides(cfg)
    assert "model.activation=silu" in over and "train.epochs=4" in over and SCALES.get("full").overrides(cfg) == []


def test_generated_data_rows(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBUSTRAIN_EXTRA_DATA", raising=False)
    mini = build_plan("table4", ReproduceOptions(scale="mini", out=tmp_path))
    assert all(rp.skip and "none exist offline" in rp.skip for rp in mini.rows)
    with pytest.raises(ReproduceError, match="--extra-data cifar10=FILE"):
        build_plan("table4", ReproduceOptions(scale="full", out=tmp_path))
    with pytest.raises(ReproduceError, match="does not exist"):
        build_plan("table4", ReproduceOptions(scale="full", out=tmp_path, extra_data={"cifar10": "/nope.npz"}))
    files = {ds: tmp_path / f"{ds}_ddpm.npz" for ds in ("cifar10", "cifar100")}
    for f in files.values():
        f.write_bytes(b"")  # contents are read (and checked) by the trainer, not the plan
    full = build_plan("table4", ReproduceOptions(scale="full", out=tmp_path, only=("hat-prn18-*",),
                                                 extra_data={k: str(v) for k, v in files.items()}))
    for rp, ds, ratio in zip(full.rows, ("cifar10", "cifar100"), (0.3, 0.4)):
        for spec in (rp.runs[0], rp.runs[0].helper):  # HAT's helper trains on the same mixture
            assert (spec.cfg.data.extra.path, spec.cfg.data.extra.ratio) == (str(files[ds].resolve()), ratio)
    assert parse_extra_data(["cifar10=/a.npz", "cifar100=/b.npz"]) == {"cifar10": "/a.npz", "cifar100": "/b.npz"}
    with pytest.raises(ReproduceError, match="DATASET=PATH"):
        parse_extra_data("cifar10")


def test_plan_rejections(tmp_path):
    with pytest.raises(ReproduceError, match="unknown table"):
        build_plan("table7", ReproduceOptions(out=tmp_path))
    with pytest.raises(ReproduceError, match="matches no row"):
        build_plan("table6", ReproduceOptions(out=tmp_path, only=("row9",)))
    with pytest.raises(ReproduceError, match="not a column"):
        build_plan("table6", ReproduceOptions(out=tmp_path, attacks=("cw30",)))
    with pytest.raises(ConfigError, match="unknown key train.epoch"):
        build_plan("table6", ReproduceOptions(out=tmp_path, sets=("train.epoch=2",)))
    with pytest.raises(ReproduceError, match="--seeds"):
        ReproduceOptions(seeds=0)
    # a run folder holding another config is never reused silently
    other = tmp_path / "table6" / "row1" / "seed0"
    other.mkdir(parents=True)
    (other / "config.yaml").write_text("seed: 5\n")
    with pytest.raises(ReproduceError, match="another config"):
        build_plan("table6", ReproduceOptions(out=tmp_path, only=("row1",)))


def test_timing_table_reads_epoch_times_and_divides_by_natural(tmp_path):
    plan = build_plan("table2", ReproduceOptions(out=tmp_path, only=("natural-resnet18", "trades-resnet18")))
    for rp, times in zip(plan.rows, ([10.0, 6.0], [30.0, 24.0, 24.0])):  # the first (warm-up) epoch is left out
        run = rp.runs[0].train_dir
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"checkpoint": "best.pt", "checkpoint_epoch": 2}))
        (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "epoch_time_s": t}) + "\n"
                                                   for i, t in enumerate(times)))
    res = collect_results(plan)
    nat, trades = res["rows"]
    assert nat["cells"]["min_per_epoch"]["mean"] == pytest.approx(0.1)
    assert trades["cells"]["min_per_epoch"]["mean"] == pytest.approx(0.4) and trades["status"] == "done"
    ratio = trades["cells"]["x_natural"]
    assert ratio["mean"] == pytest.approx(4.0) and ratio["paper"] == pytest.approx(2.57 / 0.35)
    assert nat["cells"]["x_natural"]["mean"] == pytest.approx(1.0)
    assert "| 0.40 | 2.57 | -2.17 | 4.00 | 7.34 | -3.34 | 1 |" in render_markdown(res)


def _masks(n, **sets):
    """attack -> bool mask over n images, True at the listed indices."""
    return {a: torch.tensor([i in idx for i in range(n)]) for a, idx in sets.items()}


def _finished(spec, selection="best pgd20 on the first 256 test images", epoch=4):
    spec.train_dir.mkdir(parents=True, exist_ok=True)
    (spec.train_dir / "summary.json").write_text(json.dumps(
        {"checkpoint": "best.pt", "checkpoint_epoch": epoch, "selection": selection}))


def test_worst_case_column_from_a_tiny_fake_cache(tmp_path):
    """A run's cache as written by an interrupted-then-resumed evaluation: the worst column is
    computed from the stored per-image results and is at most every other column."""
    plan = build_plan("table6", ReproduceOptions(out=tmp_path, only=("row1",)))
    assert [c.key for c in plan.table.columns] == ["natural", "pgd20", "aa", "worst"]
    spec = plan.rows[0].runs[0]
    _finished(spec)
    masks = _masks(8, natural={0, 1, 2, 3, 4, 5}, pgd20={0, 1, 2, 5}, aa={0, 1, 3})
    entries = {_eval_key(a, 8 / 255, plan.eval_n, "best.pt", 4): {
        "attack": a, "accuracy": m.float().mean().item(), "n": 8, "correct": encode_mask(m)} for a, m in masks.items()}
    (spec.train_dir / EVAL_FILE).write_text(json.dumps({"entries": entries}))
    res = collect_results(plan)
    cells = res["rows"][0]["cells"]
    # by hand: natural 6/8, PGD-20 4/8, AA 3/8; correct under all three: images 0 and 1 -> 2/8
    assert [cells[k]["mean"] for k in ("natural", "pgd20", "aa")] == [75.0, 50.0, 37.5]
    assert cells["worst"]["mean"] == 25.0 and cells["worst"]["paper"] is None
    assert all(cells["worst"]["mean"] <= cells[k]["mean"] for k in ("natural", "pgd20", "aa"))
    assert res["rows"][0]["status"] == "done"
    notes = "\n".join(res["notes"])
    assert ("image set: every accuracy column (natural, pgd20, aa, worst) is measured on the same images: "
            "all 8 test images") in notes
    assert "worst: per image, correct under every one of natural, pgd20, aa" in notes
    assert "selected by best pgd20 on the first 256 test images" in notes  # summary.json's own statement
    assert "| worst | paper | Δ |" in render_markdown(res)


def test_every_column_on_the_same_images_worst_and_paired_differences(tmp_path, monkeypatch):
    """The harness evaluates every attack of a run on the same images (all of the split, or
    the first --eval-n for every column), stores per-image results, and reports the worst case
    and the paired difference to the SAT row over the same seeds."""
    n_split = 10
    x = torch.arange(n_split * 3 * 4 * 4, dtype=torch.uint8).reshape(n_split, 3, 4, 4)
    y = torch.arange(n_split) % 10
    # (row, seed) -> per-image correct flags of each attack, on image indices 0..9
    fake = {
        ("sat-cifar10", 0): dict(natural=set(range(8)), pgd20=set(range(5)), cw30={0, 1, 2, 5, 6}, aa={0, 1, 3, 4}),
        ("sat-cifar10", 1): dict(natural=set(range(9)), pgd20=set(range(6)), cw30=set(range(5)), aa=set(range(4))),
        ("uiat-cifar10", 0): dict(natural=set(range(7)), pgd20=set(range(6)), cw30=set(range(6)), aa=set(range(5))),
        ("uiat-cifar10", 1): dict(natural=set(range(8)), pgd20=set(range(6)), cw30=set(range(5)), aa={0, 1, 2, 7}),
    }
    calls = []

    def fake_evaluate(path, images, labels, attacks, **kw):
        run = Path(path).parent
        (attack,) = attacks
        calls.append((run.parent.name, int(run.name[4:]), attack, images.clone(), kw))
        flags = fake[(run.parent.name, int(run.name[4:]))][attack]
        mask = torch.tensor([i in flags for i in range(images.shape[0])])
        result = RobustEvaluation({attack: mask.sum().item() / images.shape[0]}, "protocol", images.shape[0],
                                  correct={attack: mask} if kw.get("per_image") else {})
        loaded = type("Loaded", (), {"epoch": 4, "weights": "raw"})()
        return type("Record", (), {"loaded": loaded, "result": result})()

    loads = []
    monkeypatch.setattr(results_mod, "evaluate_checkpoint", fake_evaluate)
    monkeypatch.setattr(results_mod, "load_model", lambda path, device=None: loads.append(Path(path)))
    monkeypatch.setattr(results_mod, "load_split", lambda name, split, root=None: (x, y))
    selection = {"split": "validation", "n": 500, "text": "best PGD-20 on 500 held-out training images"}
    plan = build_plan("table1", ReproduceOptions(out=tmp_path, only=("sat-cifar10", "uiat-cifar10"), seeds=2))
    for rp in plan.rows:
        for spec in rp.runs:
            _finished(spec, selection)
    res = collect_results(plan, compute=True)
    assert len(calls) == 16  # 2 rows x 2 seeds x 4 attacks, one evaluation each
    assert len(loads) == 4 and len(set(loads)) == 4  # each run's checkpoint read once, for all its attacks
    for row_id, seed in fake:  # every column of a run saw the very same images: the whole split
        seen = [c for c in calls if c[:2] == (row_id, seed)]
        assert [c[2] for c in seen] == ["natural", "pgd20", "cw30", "aa"]
        assert all(c[4]["per_image"] for c in seen)
        assert all(torch.equal(c[3], x) for c in seen)
    sat, uiat = res["rows"]
    # worst by hand: sat seed 0 {0, 1} = 20%, seed 1 {0..3} = 40%; uiat seed 0 {0..4} = 50%, seed 1 {0, 1, 2} = 30%
    assert sat["cells"]["worst"]["values"] == [20.0, 40.0] and uiat["cells"]["worst"]["values"] == [50.0, 30.0]
    for row in (sat, uiat):
        for k in ("natural", "pgd20", "cw", "aa"):
            assert all(w <= v for w, v in zip(row["cells"]["worst"]["values"], row["cells"][k]["values"]))
    # paired differences uiat - sat over seeds 0, 1 (t_{0.975, 1} = 12.706204736; half-width = t * sd / sqrt(2))
    assert sat["baseline"] is None and sat["paired"] == {} and uiat["baseline"] == "sat-cifar10"
    p = uiat["paired"]
    assert set(p) == {"natural", "pgd20", "cw", "aa", "worst"} and p["aa"]["seeds"] == [0, 1]
    assert (p["natural"]["mean"], p["natural"]["half_width"]) == pytest.approx((-10.0, 0.0))  # -10, -10
    assert (p["aa"]["mean"], p["aa"]["half_width"]) == pytest.approx((5.0, 12.706204736 * 5))  # +10, 0
    assert (p["worst"]["mean"], p["worst"]["half_width"]) == pytest.approx((10.0, 12.706204736 * 20))  # +30, -10
    assert p["aa"]["n"] == 2 and p["aa"]["low"] == pytest.approx(5.0 - 12.706204736 * 5)
    md = render_markdown(res)
    assert "| UIAT (CIFAR-10) | SAT (CIFAR-10) | -10.00 ± 0.00 |" in md
    assert "+5.00 ± 63.53 | +10.00 ± 254.12 | 2 |" in md
    notes = "\n".join(res["notes"])
    assert "selected by best PGD-20 on 500 held-out training images" in notes
    assert "on the same images: all 10 test images" in notes and res["image_set"] == "all 10 test images"
    assert "paired difference to the baseline row" in notes
    json.dumps(res)  # results.json stays plain JSON

    # resumed: the cache holds every per-image result, nothing is evaluated again, same table
    calls.clear()
    again = collect_results(plan, compute=True)
    assert calls == [] and again["rows"] == res["rows"]
    # an entry of an older version (no per-image results) is evaluated again, alone
    cache_file = plan.rows[0].runs[0].train_dir / EVAL_FILE
    cache = json.loads(cache_file.read_text())
    (key,) = [k for k in cache["entries"] if k.startswith("pgd20|")]
    del cache["entries"][key]["correct"]
    cache_file.write_text(json.dumps(cache))
    pending = collect_results(plan)  # without evaluating: the worst case of that seed is not known
    assert pending["rows"][0]["seeds"] == 1 and pending["rows"][0]["cells"]["pgd20"]["n"] == 1
    assert collect_results(plan, compute=True)["rows"] == res["rows"]
    assert [c[:3] for c in calls] == [("sat-cifar10", 0, "pgd20")]

    # --eval-n: a subset, the same for every column, named in the table
    calls.clear()
    sub = build_plan("table1", ReproduceOptions(out=tmp_path, only=("sat-cifar10",), eval_n=6))
    res6 = collect_results(sub, compute=True)
    assert [c[2] for c in calls] == ["natural", "pgd20", "cw30", "aa"]
    assert all(torch.equal(c[3], x[:6]) for c in calls)
    assert res6["rows"][0]["cells"]["worst"]["values"] == [pytest.approx(100 * 2 / 6)]  # {0, 1} of 6
    assert "the first 6 test images (a subset, the same for every column)" in "\n".join(res6["notes"])


def test_paired_difference_with_one_seed_and_without_the_baseline(tmp_path):
    plan = build_plan("lrat", ReproduceOptions(out=tmp_path, attacks=("natural",)))
    for rp, flags in zip(plan.rows, ({0, 1, 2}, {0, 1, 2, 3}, {0})):
        spec = rp.runs[0]
        _finished(spec)
        m = _masks(4, natural=flags)["natural"]
        (spec.train_dir / EVAL_FILE).write_text(json.dumps({"entries": {
            _eval_key("natural", 8 / 255, 0, "best.pt", 4): {
                "attack": "natural", "accuracy": m.float().mean().item(), "n": 4, "correct": encode_mask(m)}}}))
    res = collect_results(plan)
    pgd_at, gairat, lrat = res["rows"]
    assert gairat["paired"]["natural"]["mean"] == 25.0 and gairat["paired"]["natural"]["half_width"] is None
    assert lrat["paired"]["natural"]["mean"] == -50.0 and set(lrat["paired"]) == {"natural", "worst"}
    assert "| GAIRAT (global reweighting) | PGD-AT | +25.00 (n=1: no interval) |" in render_markdown(res)
    only = collect_results(build_plan("lrat", ReproduceOptions(out=tmp_path, attacks=("natural",), only=("lrat",))))
    assert only["rows"][0]["paired"] == {} and "baseline pgd_at not in this run" in only["rows"][0]["note"]


def test_aa_n_is_a_deprecated_alias_of_eval_n(tmp_path, capsys):
    with pytest.warns(FutureWarning, match="aa_n / --aa-n is deprecated"):
        opts = ReproduceOptions(aa_n=256)
    assert (opts.eval_n, opts.aa_n) == (256, None)
    assert build_plan("table6", ReproduceOptions(out=tmp_path, eval_n=100)).eval_n == 100
    with pytest.raises(ReproduceError, match="one size"):
        ReproduceOptions(aa_n=256, eval_n=100)
    assert main(["reproduce", "table6", "--dry-run", "--out", str(tmp_path), "--aa-n", "256"]) == 0
    out, err = capsys.readouterr()
    assert "--aa-n is deprecated" in err and "on the first 256 test images (every column on the same images)" in out
    assert main(["reproduce", "table6", "--dry-run", "--out", str(tmp_path), "--aa-n", "256", "--eval-n", "9"]) == 2
    assert "one size" in capsys.readouterr().err


def test_fingerprint_ignores_where_not_what():
    a = load_config(None, ["out_dir=/x", "name=a"])
    assert config_fingerprint(a) == config_fingerprint(load_config(None, ["out_dir=/y", "name=b"]))
    assert config_fingerprint(a) != config_fingerprint(load_config(None, ["seed=1"]))
    # Table 6 row 5 spells out UIAT's defaults: at any scale it is the run of Table 1's UIAT row
    row5, uiat = (load_config(CONFIG_DIR / p) for p in ("cifar10/uiat_ablation_row5_resnet18.yaml",
                                                         "cifar10/uiat_resnet18.yaml"))
    assert config_fingerprint(row5) == config_fingerprint(uiat)
    row4 = load_config(CONFIG_DIR / "cifar10/uiat_ablation_row4_resnet18.yaml")
    assert config_fingerprint(row5) != config_fingerprint(row4)


def test_a_later_table_reuses_an_identical_run_on_disk(tmp_path):
    first = build_plan("table1", ReproduceOptions(out=tmp_path, only=("uiat-cifar10",))).rows[0].runs[0]
    first.run_dir.mkdir(parents=True)
    (first.run_dir / "config.yaml").write_text(dump_config(first.cfg))
    (first.run_dir / "summary.json").write_text("{}")
    later = build_plan("table6", ReproduceOptions(out=tmp_path, only=("row5",))).rows[0].runs[0]
    assert later.found == first.run_dir and later.train_dir == first.run_dir
    assert "an identical run found under OUT" in format_plan(build_plan("table6", ReproduceOptions(out=tmp_path)))


def test_a_uiat_run_from_before_issue_19_is_not_reused(tmp_path):
    """Its config.yaml has no target_bn_mode: it was trained with the eval-mode target, so it is
    not the run today's preset asks for (found elsewhere: not reused; in the row's own folder:
    refused with one line)."""
    import yaml

    first = build_plan("table1", ReproduceOptions(out=tmp_path, only=("uiat-cifar10",))).rows[0].runs[0]
    old = yaml.safe_load(dump_config(first.cfg))
    del old["method"]["target_bn_mode"], old["method"]["adv_features"]
    elsewhere = tmp_path / "older" / "uiat-run"
    elsewhere.mkdir(parents=True)
    (elsewhere / "config.yaml").write_text(yaml.safe_dump(old))
    (elsewhere / "summary.json").write_text("{}")
    later = build_plan("table6", ReproduceOptions(out=tmp_path, only=("row5",))).rows[0].runs[0]
    assert later.found is None and later.train_dir == later.run_dir
    first.run_dir.mkdir(parents=True)
    (first.run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(ReproduceError, match="holds a run of another config"):
        build_plan("table1", ReproduceOptions(out=tmp_path, only=("uiat-cifar10",)))


def test_full_scale_checks_gpu_and_data_before_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plan = build_plan("table6", ReproduceOptions(scale="full", out=tmp_path / "o", only=("row1",)))
    with pytest.raises(ReproduceError, match="needs a CUDA GPU"):
        check_ready(plan)
    plan = build_plan("table6", ReproduceOptions(scale="full", out=tmp_path / "o", only=("row1",),
                                                 data_root=str(tmp_path / "empty"),
                                                 sets=("train.device=cpu",)))
    with pytest.raises(DatasetFileError):
        check_ready(plan)
    assert not (tmp_path / "o").exists()


def test_cli_list_and_dry_run(tmp_path, capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}:" in out for name in TABLES.names()) and "uiat_oneoff-svhn" in out
    assert main(["reproduce", "table6", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "configs/cifar10/uiat_ablation_row3_resnet18.yaml" in out and "5 to start" in out
    assert not any(tmp_path.iterdir())
    assert main(["reproduce"]) == 2
    assert main(["reproduce", "table4", "--scale", "full", "--out", str(tmp_path)]) == 2


# --------------------------------------------------------------------- end to end
#: one mini row shrunk to seconds: synthetic data, one epoch, a narrow CNN, 1-step attacks
FAST = ["--set", "data.name=synthetic", "--set", "data.batch_size=256", "--set", "train.epochs=1",
        "--set", "model.width=8", "--set", "method.steps=1", "--set", "method.alpha=8/255",
        "--set", "eval.n=16", "--set", "eval.attack=fgsm", "--set", "guard.enabled=false",
        "--eval-n", "16", "--attacks", "natural,pgd20"]


def test_one_mini_row_end_to_end_then_reused_and_resumed(tmp_path, capsys):
    # tensors this small gain nothing from a second thread, and on a busy 2-core machine the
    # OpenMP hand-off between two threads costs 10-50x (conftest restores the thread count)
    torch.set_num_threads(1)
    args = ["reproduce", "table1", "--only", "hat-cifar10", "--out", str(tmp_path), "--no-progress", *FAST]
    assert main(args) == 0
    out = capsys.readouterr().out
    run = tmp_path / "table1" / "hat-cifar10" / "seed0"
    helper = tmp_path / "helpers" / "standard_resnet18" / "seed0"
    assert "helper standard_resnet18 seed 0: training" in out and "table1 hat-cifar10 seed 0: training" in out
    assert (helper / "summary.json").exists() and (run / "summary.json").exists()
    assert load_config(run / "config.yaml").method.params.helper == str(helper / "last.pt")
    res = json.loads((tmp_path / "table1" / "results.json").read_text())
    (row,) = res["rows"]
    assert (row["id"], row["status"], row["seeds"]) == ("hat-cifar10", "done", 1)
    nat = row["cells"]["natural"]
    assert 0 <= nat["mean"] <= 100 and nat["paper"] == 84.86 and nat["diff"] == pytest.approx(nat["mean"] - 84.86)
    assert row["cells"]["aa"]["mean"] is None and row["cells"]["aa"]["paper"] == 48.85
    md = (tmp_path / "table1" / "results.md").read_text()
    assert "| HAT (CIFAR-10) |" in md and "not evaluated in this run (--attacks): cw30, aa" in md
    cached = json.loads((run / "reproduce-eval.json").read_text())["entries"]
    assert sorted(e["attack"] for e in cached.values()) == ["natural", "pgd20"]

    # a second invocation reuses the finished runs and cached evaluations
    stamp = (run / "last.pt").stat().st_mtime_ns
    assert main(args) == 0
    out = capsys.readouterr().out
    assert ": training in" not in out and ": evaluating" not in out  # the log lines (the notes may say "training")
    assert (run / "last.pt").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "table1" / "results.json").read_text())["rows"][0]["cells"] == row["cells"]

    # an interrupted run (no summary.json yet) is resumed from last.pt, not retrained
    (run / "summary.json").unlink()
    assert main(args) == 0
    assert "table1 hat-cifar10 seed 0: resuming" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("table", TABLES.names())
def test_whole_mini_table(table, tmp_path):
    """Every mini row of a table with the default mini settings (minutes to an hour per table)."""
    assert main(["reproduce", table, "--out", str(tmp_path), "--no-progress"]) == 0
    res = json.loads((tmp_path / table / "results.json").read_text())
    for row in res["rows"]:
        assert row["status"] in ("done", "skipped"), row
        if row["status"] == "done":
            assert all(c["mean"] is not None for c in row["cells"].values()), row
