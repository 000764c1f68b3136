"""Re-running the papers' tables: ``robustrain reproduce TABLE``.

* :mod:`~robustrain.reproduce.paper`: the UIAT paper's numbers (``paper_tables.json``);
* :mod:`~robustrain.reproduce.tables`: the ``TABLES`` registry (rows, configs, columns; the paper tables, ``lrat`` and the ``study``);
* :mod:`~robustrain.reproduce.scale`: ``full`` (the paper's setting) and ``mini`` (CPU-sized);
* :mod:`~robustrain.reproduce.stats`: mean ± sample std, paired difference with a 95% t-interval;
* :mod:`~robustrain.reproduce.summary`: cells (mean ± std, paired difference to the baseline row), the markdown table;
* :mod:`~robustrain.reproduce.plan`: resolve and validate every run (:func:`build_plan`), nothing written;
* :mod:`~robustrain.reproduce.execute`: check, train (resumably), evaluate, write (:func:`run_plan`);
* :mod:`~robustrain.reproduce.results`: evaluations of finished runs (every column on the same
  images, per-image results cached, the per-image worst case), ``results.json`` (:func:`collect_results`).

Example:
    >>> from robustrain.reproduce import TABLES
    >>> TABLES.names()
    ['lrat', 'study', 'table1', 'table2', 'table3', 'table4', 'table5', 'table6']
"""

from robustrain.reproduce.execute import check_ready, run_plan
from robustrain.reproduce.paper import load_paper_tables, paper_row
from robustrain.reproduce.plan import (
    CONFIG_DIR,
    EXTRA_DATA_ENV,
    Plan,
    ReproduceOptions,
    RowPlan,
    RunSpec,
    build_plan,
    config_fingerprint,
    describe_images,
    format_plan,
    format_tables,
    parse_extra_data,
)
from robustrain.reproduce.results import collect_results, decode_mask, encode_mask, worst_case
from robustrain.reproduce.scale import MINI_EPOCHS, MINI_OVERRIDES, SCALES, Scale
from robustrain.reproduce.stats import mean_std, paired_difference, t_quantile_975
from robustrain.reproduce.summary import cell, paired_cell, ratio_cell, render_markdown, write_atomic
from robustrain.reproduce.tables import TABLES, WORST, Column, Row, Table
from robustrain.utils.errors import ReproduceError

__all__ = [
    "CONFIG_DIR",
    "EXTRA_DATA_ENV",
    "MINI_EPOCHS",
    "MINI_OVERRIDES",
    "SCALES",
    "TABLES",
    "WORST",
    "Column",
    "Plan",
    "ReproduceError",
    "ReproduceOptions",
    "Row",
    "RowPlan",
    "RunSpec",
    "Scale",
    "Table",
    "build_plan",
    "cell",
    "check_ready",
    "collect_results",
    "config_fingerprint",
    "decode_mask",
    "describe_images",
    "encode_mask",
    "format_plan",
    "format_tables",
    "load_paper_tables",
    "mean_std",
    "paired_cell",
    "paired_difference",
    "paper_row",
    "parse_extra_data",
    "ratio_cell",
    "render_markdown",
    "run_plan",
    "t_quantile_975",
    "worst_case",
    "write_atomic",
]
