"""What each reproducible table is: its rows, their configs, columns and published numbers.

Registry ``TABLES`` (``robustrain reproduce --list``): ``table1`` ... ``table6`` are Tables 1-6
of the UIAT paper (Dong et al., CVPR 2023, arXiv:2211.00525); ``lrat`` is the cross-attack
study of LRAT (Gao et al. 2021, arXiv:2106.15776): PGD-AT, GAIRAT and LRAT each evaluated
under PGD-20, CW∞ and AutoAttack; ``study`` is this project's small-scale comparison (PGD-AT,
TRADES, UIAT, UIAT-one-off and AWP on top of PGD-AT / TRADES, several seeds, long enough that
held-out accuracy has stopped climbing; ``robustrain reproduce study --seeds 3``).

A :class:`Row` names one YAML file under ``configs/`` holding the row's paper-scale setting
(rows that equal an existing preset, e.g. Table 1's CIFAR-10 rows and Table 6, reuse it
rather than copy it), the method / dataset / model / radius the row claims (a test checks
the file agrees), the paper's numbers for each column (from ``paper_tables.json``) and what
the row needs besides its config: a standard-trained helper for HAT, generated data for
Table 4, a reference row for Table 2's "× natural" ratio, and the baseline row (PGD-AT / SAT)
a method row's paired difference is taken against (Table 1, the LRAT table).

Every accuracy column of a table is measured on the same test images. Tables with two or more
attacks besides ``natural`` (Table 1, Table 6, LRAT) also get the ``worst`` column: per image,
correct on the clean image and under every evaluated attack (an image counts as robust only
when every attack failed on it), so it is at most every other accuracy column.

Example:
    >>> from robustrain.reproduce.tables import TABLES
    >>> t = TABLES.get("table6")
    >>> [c.key for c in t.columns], t.row("row5").config, t.row("row5").paper["aa"]
    (['natural', 'pgd20', 'aa', 'worst'], 'cifar10/uiat_ablation_row5_resnet18.yaml', 49.11)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from robustrain.utils.registry import Registry
from robustrain.reproduce.paper import load_paper_tables, paper_row

__all__ = ["Column", "Row", "Table", "TABLES", "ATTACK_COLUMNS", "WORST"]


@dataclass(frozen=True)
class Column:
    """One reported quantity.

    Attributes:
        key: the field name in ``paper_tables.json`` (``natural``, ``pgd20``, ``cw``, ``aa``,
            ``min_per_epoch`` ...).
        label: header text.
        source: an evaluation attack (``natural``, ``pgd20``, ``cw30``, ``aa``), ``worst`` (the
            per-image worst case over the table's evaluated attacks), ``epoch_time`` (mean
            training time per epoch, from metrics.jsonl) or ``ratio``.
        unit: ``%`` (accuracy x 100), ``min`` / ``s`` (time per epoch) or ``x`` (ratio).
        ratio_of: for ``source="ratio"``: the column divided by the reference row's value.
    """

    key: str
    label: str
    source: str
    unit: str = "%"
    ratio_of: str | None = None

    @property
    def is_attack(self) -> bool:
        """An evaluation attack of its own (not ``worst``, a time or a ratio)."""
        return self.source not in ("epoch_time", "ratio", "worst")

    @property
    def is_accuracy(self) -> bool:
        """An accuracy measured on the test images: an attack or the worst case."""
        return self.is_attack or self.source == "worst"


@dataclass(frozen=True)
class Row:
    """One row of a table (one training setting, run once per seed).

    Attributes:
        id: short name used by ``--only`` and in run folders (``sat-cifar10``).
        label: how the paper prints it.
        config: YAML file relative to ``configs/`` with the paper-scale setting.
        method, dataset, model: what the config trains (checked by the tests).
        paper: column key -> published number (empty: none published / none stored).
        eps: training and evaluation radius (Linf).
        helper: config (relative to ``configs/``) of the standard-trained helper (HAT).
        extra_ratio: original-to-generated ratio; the row needs generated data (Table 4).
        ref: row whose values ratio columns divide by (Table 2: natural training).
        baseline: row this row's paired difference (same seeds, 95% t-interval) is taken
            against: the table's PGD-AT / SAT row of the same dataset; None for that row itself
            and for tables without one.
        note: remark printed in the table's note column.
    """

    id: str
    label: str
    config: str
    method: str
    dataset: str
    model: str
    paper: Mapping[str, float] = field(default_factory=dict)
    eps: float = 8 / 255
    helper: str | None = None
    extra_ratio: float | None = None
    ref: str | None = None
    baseline: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "paper", MappingProxyType(dict(self.paper)))


@dataclass(frozen=True)
class Table:
    """A reproducible table: its rows in the paper's order and its columns.

    Attributes:
        name, title, columns, rows, note: as printed.
        mini_epochs: the most epochs a run trains at mini scale (None: the scale's default, 4).
        mini_eval_n: held-out validation images evaluated per epoch at mini scale (None: the scale's, 256).
    """

    name: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    note: str = ""
    mini_epochs: int | None = None
    mini_eval_n: int | None = None

    def row(self, row_id: str) -> Row:
        for r in self.rows:
            if r.id == row_id:
                return r
        raise KeyError(f"table {self.name} has no row {row_id!r}; rows: {', '.join(r.id for r in self.rows)}")


TABLES: Registry[Table] = Registry("table")

NATURAL = Column("natural", "natural", "natural")
PGD20 = Column("pgd20", "PGD-20", "pgd20")
CW = Column("cw", "CW∞", "cw30")
AA = Column("aa", "AA", "aa")
#: per image: correct under every evaluated attack (no published number: the papers do not report it)
WORST = Column("worst", "worst", "worst")
#: the accuracy columns, by paper key
ATTACK_COLUMNS = {c.key: c for c in (NATURAL, PGD20, CW, AA)}

_DATASET_LABEL = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN"}
_HELPER = "its standard-trained helper is trained first, at the same scale and seed"


def _paper(table: str, columns: tuple[Column, ...], **match) -> dict[str, float]:
    row = paper_row(table, **match)
    return {c.key: float(row[c.key]) for c in columns if c.key in row}


def _table1() -> Table:
    cols = (NATURAL, PGD20, CW, AA, WORST)
    presets = {"sat": "cifar10/pgd_at_resnet18.yaml", "trades": "cifar10/trades_resnet18.yaml",
               "mart": "cifar10/mart_resnet18.yaml", "hat": "cifar10/hat_resnet18.yaml",
               "uiat": "cifar10/uiat_resnet18.yaml",
               "uiat_oneoff": "cifar10/uiat_oneoff_resnet18.yaml"}
    helpers = {"cifar10": "cifar10/standard_resnet18.yaml", "cifar100": "table1/standard-cifar100.yaml",
               "svhn": "table1/standard-svhn.yaml"}
    methods = [("sat", "SAT", "pgd_at"), ("trades", "TRADES", "trades"), ("mart", "MART", "mart"),
               ("hat", "HAT", "hat"), ("uiat", "UIAT", "uiat"), ("uiat_oneoff", "UIAT-one-off", "uiat_oneoff")]
    rows = []
    for ds in ("cifar10", "cifar100", "svhn"):
        for rid, label, method in methods:
            config = presets[rid] if ds == "cifar10" else f"table1/{rid}-{ds}.yaml"
            rows.append(Row(f"{rid}-{ds}", f"{label} ({_DATASET_LABEL[ds]})", config, method, ds, "resnet18",
                            _paper("table1", cols, method=label, dataset=ds),
                            helper=helpers[ds] if method == "hat" else None,
                            baseline=None if rid == "sat" else f"sat-{ds}"))
    return Table("table1", "UIAT paper Table 1: ResNet-18 on CIFAR-10 / CIFAR-100 / SVHN, Linf eps 8/255, "
                 "accuracy (%)", cols, tuple(rows),
                 "CIFAR-10/100: 100 epochs; SVHN: 30 epochs, PGD step 1/255, UIAT lam 3.0. HAT: " + _HELPER + ".")


def _table2() -> Table:
    time_col = Column("min_per_epoch", "min/epoch", "epoch_time", unit="min")
    cols = (time_col, Column("x_natural", "× natural", "ratio", unit="x", ratio_of="min_per_epoch"))
    methods = [("natural", "natural", "standard"), ("trades", "TRADES", "trades"), ("hat", "HAT", "hat"),
               ("iat", "IAT", "iat"), ("uiat", "UIAT", "uiat"), ("uiat_oneoff", "UIAT-one-off", "uiat_oneoff")]
    models = [("resnet18", "resnet18", "ResNet-18"), ("wrn28_10", "wrn28", "WRN-28-10"),
              ("wrn34_10", "wrn34", "WRN-34-10")]
    rows = []
    for model, paper_key, model_label in models:
        for rid, label, method in methods:
            value = float(paper_row("table2", method=label)[paper_key])
            rows.append(Row(f"{rid}-{model}", f"{label} ({model_label})", f"table2/{rid}-{model}.yaml", method,
                            "cifar10", model, {"min_per_epoch": value},
                            helper=f"table2/natural-{model}.yaml" if method == "hat" else None,
                            ref=f"natural-{model}"))
    return Table("table2", "UIAT paper Table 2: training time per epoch on CIFAR-10 (batch 128; the paper: one "
                 "NVIDIA A100)", cols, tuple(rows),
                 "Timing runs of 2 epochs; min/epoch is the mean over the epochs after the first (warm-up) and "
                 "excludes evaluation. Absolute times depend on the hardware; '× natural' (time over natural "
                 "training's, same model) is the comparable number.")


def _table3() -> Table:
    cols = (NATURAL, AA)
    methods = [("trades", "TRADES", "trades"), ("hat", "HAT", "hat"), ("uiat", "UIAT", "uiat"),
               ("uiat_oneoff", "UIAT-one-off", "uiat_oneoff")]
    rows = []
    for e in (10, 12, 16):
        for rid, label, method in methods:
            rows.append(Row(f"{rid}-eps{e}", f"{label} (eps {e}/255)", f"table3/{rid}-eps{e}.yaml", method,
                            "cifar10", "resnet18", _paper("table3", cols, method=label, eps_255=e), eps=e / 255,
                            helper="cifar10/standard_resnet18.yaml" if method == "hat" else None))
    return Table("table3", "UIAT paper Table 3: ResNet-18 on CIFAR-10 trained and evaluated at larger Linf radii, "
                 "accuracy (%)", cols, tuple(rows),
                 "Training PGD-10 step eps/4 (not stated in the paper); AutoAttack at the row's eps.")


def _table4() -> Table:
    cols = (NATURAL, AA)
    ratios = load_paper_tables()["hyperparameters"]["extra_data"]["original_to_generated_ratio"]
    methods = [("rebuffi", "Rebuffi2021", "trades"), ("hat", "HAT", "hat"), ("uiat", "UIAT", "uiat"),
               ("uiat_oneoff", "UIAT-one-off", "uiat_oneoff")]
    models = [("preact_resnet18", "prn18", "PRN-18"), ("wrn28_10", "wrn28", "WRN-28-10")]
    rows = []
    for ds in ("cifar10", "cifar100"):
        for model, short, model_label in models:
            for rid, label, method in methods:
                shown = "Rebuffi et al. 2021 (TRADES)" if rid == "rebuffi" else label
                rows.append(Row(f"{rid}-{short}-{ds}", f"{shown} ({model_label}, {_DATASET_LABEL[ds]})",
                                f"table4/{rid}-{short}-{ds}.yaml", method, ds, model,
                                _paper("table4", cols, method=label, dataset=ds, model=model),
                                helper=f"table4/standard-{short}-{ds}.yaml" if method == "hat" else None,
                                extra_ratio=float(ratios[ds])))
    return Table("table4", "UIAT paper Table 4: with 1M DDPM-generated images (SiLU, EMA 0.995, 400 "
                 "CIFAR-10-equivalent epochs, batch 512, lr 0.2), accuracy (%)", cols, tuple(rows),
                 "Needs the generated-data file of each dataset (--extra-data DATASET=PATH); none exists offline.")


def _table5() -> Table:
    cols = (NATURAL, AA, Column("time_s_per_epoch", "s/epoch", "epoch_time", unit="s"))
    labels = {"n_fgsm": "N-FGSM", "rs_fgsm": "RS-FGSM", "grad_align": "GradAlign"}
    rows = []
    for base in ("n_fgsm", "rs_fgsm", "grad_align"):
        for method, label in ((base, labels[base]), (f"{base}+uiat", f"{labels[base]}+UIAT")):
            for e in (6, 8, 10):
                rows.append(Row(f"{method}-eps{e}", f"{label} (eps {e}/255)", f"table5/{method}-eps{e}.yaml",
                                method, "cifar10", "preact_resnet18",
                                _paper("table5", cols, method=label, eps_255=e), eps=e / 255))
    return Table("table5", "UIAT paper Table 5: single-step AT with the one-off UIAT plug-in on CIFAR-10, "
                 "accuracy (%) and training time per epoch", cols, tuple(rows),
                 "The paper does not state Table 5's training setting; N-FGSM's is used (de Jorge et al. 2022: "
                 "PreAct ResNet-18, 30 epochs, triangular lr peak 0.2). AutoAttack at the row's eps. Times depend "
                 "on the hardware.")


def _table6() -> Table:
    cols = (NATURAL, PGD20, AA, WORST)
    combos = [(1, False, False, False, "IAT (none)"), (2, True, False, False, "UAG"),
              (3, True, True, False, "UAG + FR"), (4, True, False, True, "UAG + IAM"),
              (5, True, True, True, "UAG + FR + IAM (= UIAT)")]
    rows = tuple(
        Row(f"row{k}", f"{k}: {label}", f"cifar10/uiat_ablation_row{k}_resnet18.yaml", "uiat", "cifar10", "resnet18",
            _paper("table6", cols, uag=uag, fr=fr, iam=iam))
        for k, uag, fr, iam, label in combos
    )
    return Table("table6", "UIAT paper Table 6: ablation on ResNet-18 / CIFAR-10 (UAG universal generation, FR "
                 "feature regulariser, IAM inverse momentum), accuracy (%)", cols, rows)


def _lrat() -> Table:
    cols = (NATURAL, PGD20, CW, AA, WORST)
    rows = (
        Row("pgd_at", "PGD-AT", "cifar10/pgd_at_resnet18.yaml", "pgd_at", "cifar10", "resnet18"),
        Row("gairat", "GAIRAT (global reweighting)", "lrat/gairat-resnet18.yaml", "gairat", "cifar10", "resnet18",
            baseline="pgd_at"),
        Row("lrat", "LRAT (local reweighting)", "lrat/lrat-resnet18.yaml", "lrat", "cifar10", "resnet18",
            baseline="pgd_at"),
    )
    return Table("lrat", "LRAT cross-attack study: PGD-AT vs GAIRAT vs LRAT on ResNet-18 / CIFAR-10, accuracy (%) "
                 "under attacks seen and unseen in training", cols, rows,
                 "No published numbers are stored for this table (the LRAT paper's tables are not in the project's "
                 "reference data): it compares the three methods under one protocol, the UIAT training setting.")


#: epochs of the study's runs: held-out PGD-20 accuracy of pgd_at levels off by epoch 8 (pilot of 8 vs
#: 16 one-cycle epochs, seed 0: docs/results.md, "How long to train the study"); 10 is past that and
#: fits 6 rows x 3 seeds in about 1.5 hours of 2 CPU cores
STUDY_EPOCHS = 10


def _study() -> Table:
    cols = (NATURAL, PGD20, CW, WORST)
    rows = (
        Row("pgd_at", "PGD-AT", "cifar10/pgd_at_resnet18.yaml", "pgd_at", "cifar10", "resnet18"),
        Row("trades", "TRADES", "cifar10/trades_resnet18.yaml", "trades", "cifar10", "resnet18", baseline="pgd_at"),
        Row("uiat", "UIAT", "cifar10/uiat_resnet18.yaml", "uiat", "cifar10", "resnet18", baseline="pgd_at"),
        Row("uiat_oneoff", "UIAT-one-off", "cifar10/uiat_oneoff_resnet18.yaml", "uiat_oneoff", "cifar10",
            "resnet18", baseline="pgd_at"),
        Row("pgd_at+awp", "PGD-AT + AWP", "awp/pgd_at_awp_resnet18.yaml", "pgd_at", "cifar10", "resnet18",
            baseline="pgd_at"),
        Row("trades+awp", "TRADES + AWP", "awp/trades_awp_resnet18.yaml", "trades", "cifar10", "resnet18",
            baseline="pgd_at"),
    )
    return Table("study", f"Small-scale study: small_cnn on cifar10-mini, {STUDY_EPOCHS} epochs, Linf eps 8/255, "
                 "accuracy (%) on the 1,017 test images", cols, rows,
                 f"Each row's CIFAR-10 / ResNet-18 preset mapped to mini scale with {STUDY_EPOCHS} epochs (not 4) and "
                 "every held-out validation image (508) evaluated per epoch; the methods' own defaults, not tuned "
                 "to this study. A CPU-sized study: it ranks methods at this scale only.",
                 mini_epochs=STUDY_EPOCHS, mini_eval_n=1000)


for _build in (_table1, _table2, _table3, _table4, _table5, _table6, _lrat, _study):
    _t = _build()
    TABLES.add(_t.name, _t, help=_t.title)
