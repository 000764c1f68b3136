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
from robustrain.reproduce.paper import load_paper_tables
from robustrain.reproduce.plan import Plan, ReproduceOptions, build_plan, format_plan, format_tables, parse_extra_data
from robustrain.reproduce.results import collect_results
from robustrain.reproduce.scale import SCALES
from robustrain.reproduce.summary import render_markdown
from robustrain.reproduce.tables import TABLES

__all__ = [
    "SCALES",
    "TABLES",
    "Plan",
    "ReproduceOptions",
    "build_plan",
    "check_ready",
    "collect_results",
    "format_plan",
    "format_tables",
    "load_paper_tables",
    "parse_extra_data",
    "render_markdown",
    "run_plan",
]
