"""``robustrain list WHAT``: the registered datasets, models, attacks, methods, schedules, experiment
trackers, or the packaged configs. Parameter defaults are written as a user writes them
(:func:`robustrain.utils.units.format_value`: ``eps=8/255``, ``rho=0.2``)."""

from __future__ import annotations

import argparse
import re
from typing import Callable

from robustrain.utils.units import format_value

__all__ = ["add_parser", "run"]


def _entries(registry) -> list[tuple[str, str]]:
    return [(e.name, e.help) for e in registry]


def _datasets() -> list[tuple[str, str]]:
    from robustrain.data import DATASETS, get_dataset_info

    rows = []
    for e in DATASETS:
        info = get_dataset_info(e.name)
        c, h, w = info.image_shape
        rows.append((e.name, f"{info.num_classes} classes, {c}x{h}x{w}, "
                             f"{info.train_size}/{info.test_size} train/test"))
    from robustrain.data.streaming import STREAMING_DATASETS

    # streaming datasets: classes and sizes come from data.root, so the row says how to point at it
    rows.extend((e.name, e.help) for e in STREAMING_DATASETS)
    return rows


def _models() -> list[tuple[str, str]]:
    from robustrain.models import MODELS, model_params
    from robustrain.models.registry import MODEL_FAMILIES

    def params(name: str) -> str:
        return ", ".join(f"{k}={format_value(k, v)}" for k, v in model_params(name).items())

    # a family's parameters are read from its factory, so any architecture name stands for them
    return ([(e.name, f"{e.help}  params: {params(e.name)}") for e in MODELS]
            + [(f"{e.name}:<name>", f"{e.help}  params: {params(e.name + ':_')}") for e in MODEL_FAMILIES])


def _attacks() -> list[tuple[str, str]]:
    from robustrain.attacks import ATTACKS

    return _entries(ATTACKS)


def _methods() -> list[tuple[str, str]]:
    """Every method name (bases and ``<base>+<plugin>`` composites) with its help and parameters."""
    from robustrain.methods.registry import method_entries

    rows = [(e.name, f"{e.help}  params: " + ", ".join(f"{f.name}={format_value(f.name, f.default)}"
                                                       for f in e.fields))
            for e in method_entries()]
    # a trainer-level suffix, not a registered method: say it exists (issue 22)
    rows.append(("<method>+awp", "any method above + adversarial weight perturbation (Wu et al. 2020; official gamma "
                                 "and warm-up of the base, or an awp: {gamma, warmup} section), e.g. pgd_at+awp, "
                                 "trades+awp, pgd_at+uiat+awp"))
    return rows


def _schedules() -> list[tuple[str, str]]:
    from robustrain.schedules import SCHEDULES

    return _entries(SCHEDULES)


def _trackers() -> list[tuple[str, str]]:
    """The experiment trackers of ``train.loggers`` with the extra each needs."""
    from robustrain.train.trackers import TRACKERS

    return [(e.name, f"{e.help}  install: pip install -e .[{e.obj.extra}]") for e in TRACKERS]


LISTERS: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "datasets": _datasets,
    "models": _models,
    "attacks": _attacks,
    "methods": _methods,
    "schedules": _schedules,
    "trackers": _trackers,
}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ls = sub.add_parser("list", help="list registered datasets, models, attacks, methods, schedules, trackers or "
                                     "configs")
    ls.add_argument("what", choices=[*LISTERS, "configs"])
    ls.set_defaults(func=run)
    return ls


def _configs() -> None:
    from robustrain.config import CONFIG_DIR

    files = sorted(CONFIG_DIR.rglob("*.yaml")) if CONFIG_DIR.is_dir() else []
    if not files:
        print(f"no configs found in {CONFIG_DIR}")
    for f in files:
        print(f"{str(f.relative_to(CONFIG_DIR)):<40} {config_summary(f.read_text())}")


def config_summary(text: str) -> str:
    """The first sentence of a config's leading comment block, joined across its lines (a
    description is never cut mid-sentence; issue 23).

    Example:
        >>> config_summary("# PGD-AT on full CIFAR-10 (100 epochs,\\n# batch 128). More.\\nseed: 0\\n")
        'PGD-AT on full CIFAR-10 (100 epochs, batch 128).'
    """
    lines = []
    for ln in text.splitlines():
        if not ln.startswith("#"):
            break
        body = ln[1:].strip()
        if body.startswith("Command:"):
            break
        lines.append(body)
    joined = " ".join(lines)
    end = re.search(r"\.(\s|$)(?![^(]*\))", joined)  # a sentence end outside parentheses
    return joined[: end.start() + 1] if end else joined


def run(args: argparse.Namespace) -> int:
    if args.what == "configs":
        _configs()
        return 0
    rows = LISTERS[args.what]()
    width = max(len(n) for n, _ in rows) if rows else 0
    for name, help_ in rows:
        print(f"{name:<{width}}  {help_}")
    return 0
