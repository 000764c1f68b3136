"""Re-running the papers' tables: ``robustrain reproduce TABLE``.

* :mod:`~robustrain.reproduce.paper`: the UIAT paper's numbers (``paper_tables.json``);
* :mod:`~robustrain.reproduce.tables`: the ``TABLES`` registry (rows, configs, columns);
* :mod:`~robustrain.reproduce.scale`: ``full`` (the paper's setting) and ``mini`` (CPU-sized);
* :mod:`~robustrain.reproduce.summary`: mean ± std, differences, the markdown table;
* :mod:`~robustrain.reproduce.plan`: resolve and validate every run (:func:`build_plan`), nothing written;
* :mod:`~robustrain.reproduce.execute`: check, train (resumably), evaluate, write (:func:`run_plan`);
* :mod:`~robustrain.reproduce.results`: evaluations of finished runs, ``results.json`` (:func:`collect_results`).

Example:
    >>> from robustrain.reproduce import TABLES
    >>> TABLES.names()
    ['lrat', 'table1', 'table2', 'table3', 'table4', 'table5', 'table6']
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
    format_plan,
    format_tables,
    parse_extra_data,
)
from robustrain.reproduce.results import collect_results
from robustrain.reproduce.scale import MINI_EPOCHS, MINI_OVERRIDES, SCALES, Scale
from robustrain.reproduce.summary import cell, mean_std, ratio_cell, render_markdown, write_atomic
from robustrain.reproduce.tables import TABLES, Column, Row, Table
from robustrain.utils.errors import ReproduceError

__all__ = [
    "CONFIG_DIR",
    "EXTRA_DATA_ENV",
    "MINI_EPOCHS",
    "MINI_OVERRIDES",
    "SCALES",
    "TABLES",
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
    "format_plan",
    "format_tables",
    "load_paper_tables",
    "mean_std",
    "paper_row",
    "parse_extra_data",
    "ratio_cell",
    "render_markdown",
    "run_plan",
    "write_atomic",
]
