"""Reading run folders for the analyses and reports: metrics, summary, resolved config,
a short label, the swept hyper-parameters of a set of runs, and their final accuracies.

A run folder is what ``robustrain train`` writes: ``config.yaml``, ``metrics.jsonl`` (one
record per epoch), ``summary.json`` (final table, once the run finished), ``last.pt`` /
``best.pt``.

Example:
    >>> flat = flat_config({"seed": 0, "method": {"name": "trades", "beta": 3.0}})
    >>> flat["seed"], flat["method.name"], flat["method.beta"]
    (0, 'trades', 3.0)
    >>> "method.eps" in flat  # the method's defaults are filled in
    True
    >>> runs = [RunInfo(Path("a"), {"method.lam": 1.0, "seed": 0}, [], None),
    ...         RunInfo(Path("b"), {"method.lam": 3.5, "seed": 0}, [], None)]
    >>> swept_params(runs)
    ['method.lam']
"""

from __future__ import annotations

import dataclasses
import glob
import sys
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from robustrain.artifacts import RunDir, read_metrics
from robustrain.config import config_from_dict, config_to_dict, upgrade_saved_config
from robustrain.eval.records import eval_record_paths
from robustrain.utils.errors import CheckpointError, UsageError

__all__ = [
    "RunInfo",
    "IGNORED_KEYS",
    "expand_runs",
    "load_run",
    "load_runs",
    "read_run_metrics",
    "flat_config",
    "swept_params",
    "base_values",
    "final_accuracy",
    "robust_metric",
]

#: config keys that never count as a swept hyper-parameter (names, paths, devices, logging,
#: evaluation and monitoring settings); ``--param`` can still name them.
IGNORED_KEYS = ("name", "out_dir", "seed", "data.root", "data.download", "data.eval_batch_size",
                "data.workers", "data.test_root", "train.device", "train.tensorboard", "train.log_every",
                "train.checkpoint_every", "train.loggers", "train.log_artifacts", "train.tracker_project")
_IGNORED_PREFIXES = ("eval.", "guard.")
#: robust columns preferred for "the" robust accuracy, strongest attack first
_ROBUST_ORDER = ("aa", "aa-plus", "pgd20", "cw30")


@dataclass(frozen=True)
class RunInfo:
    """What the analyses read from one run folder.

    Attributes:
        path: the run folder.
        config: the resolved config, flattened to dotted keys (method/model defaults filled).
        metrics: the records of ``metrics.jsonl`` (one per epoch), possibly empty.
        summary: ``summary.json`` of a finished run, else None.
    """

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any] | None

    @property
    def method(self) -> str:
        return str(self.config.get("method.name", "?"))

    @property
    def label(self) -> str:
        """The method name, plus the folder name when that says more (``lrat (lrat-rho0.1)``)."""
        return self.method if self.path.name == self.method else f"{self.method} ({self.path.name})"


def expand_runs(inputs: Iterable[str | Path]) -> list[Path]:
    """Run folders from paths and glob patterns (for shells that do not expand them), in the
    given order, without duplicates.

    Raises:
        UsageError (a ValueError): a path that does not exist / a pattern that matches nothing.
    """
    out: list[Path] = []
    for item in inputs:
        item = str(item)
        matches = [item] if Path(item).exists() else sorted(glob.glob(item))
        if not matches:
            raise UsageError(f"{item}: no such run folder; pass existing run folders or a glob such as 'runs/sweep/*'")
        for m in matches:
            p = Path(m)
            if p not in out:
                out.append(p)
    return out


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A nested config (as in ``config.yaml``) as ``{dotted.key: value}``, validated when it
    still matches the schema, with the method's and model's parameter defaults filled in so
    runs that spell a default out and runs that do not compare equal. Lists become tuples."""
    try:
        # defaults spelled out; fields the run predates read as what it was trained with (issue 19)
        nested = config_to_dict(config_from_dict(upgrade_saved_config(config)))
    except ValueError:  # a run from an older schema: compare it as written
        nested = dict(config)
    return _flatten(nested)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = tuple(v) if isinstance(v, list) else v
    return out


def _damaged(path: Path, what: str, fix: str = "repair or delete that file") -> CheckpointError:
    return CheckpointError(f"{path} {what}; the run was probably killed while writing it: {fix} and rerun")


def read_run_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, each a JSON object
    (:func:`robustrain.artifacts.read_metrics`, strict).

    Raises:
        CheckpointError: a line that is not a JSON object (a half-written last line, a damaged
            file); the message names the file and the line number.
    """
    return read_metrics(path)


def load_run(path: str | Path) -> RunInfo:
    """Read one run folder (``config.yaml``, else the config inside ``summary.json``).

    Raises:
        UsageError (a ValueError): not a run folder (neither config.yaml nor summary.json).
        CheckpointError: a damaged ``summary.json``, ``config.yaml`` or ``metrics.jsonl`` (the
            message names the file, and the line for metrics).
    """
    path = Path(path)
    rd = RunDir(path)
    summary_file, config_file, metrics_file = rd.summary, rd.config, rd.metrics
    summary = None
    if summary_file.is_file():
        try:
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _damaged(summary_file, f"is not valid JSON ({str(e).splitlines()[0][:80]})") from None
        if not isinstance(summary, dict):
            raise _damaged(summary_file, f"is not a JSON object (a {type(summary).__name__})")
    if config_file.is_file():
        try:
            raw = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            raise _damaged(config_file, f"is not valid YAML ({' '.join(str(e).split())[:100]})") from None
        if not isinstance(raw, dict):
            raise _damaged(config_file, f"is not a YAML mapping (a {type(raw).__name__})")
    elif summary is not None and isinstance(summary.get("config"), dict):
        raw = summary["config"]
    else:
        raise UsageError(f"{path} is not a run folder (no config.yaml or summary.json); "
                         "pass folders written by `robustrain train`")
    metrics = read_run_metrics(metrics_file) if metrics_file.is_file() else []
    return RunInfo(path, flat_config(raw), metrics, summary)


def is_run_folder(path: Path) -> bool:
    """A folder ``robustrain train`` wrote: it holds ``config.yaml`` or ``summary.json``."""
    return path.is_dir() and ((path / RunDir.CONFIG).is_file() or (path / RunDir.SUMMARY).is_file())


def load_runs(inputs: Iterable[str | Path], *, finished: bool = False) -> list[RunInfo]:
    """:func:`load_run` over :func:`expand_runs`; ``finished=True`` requires ``summary.json``.

    Raises:
        UsageError (a ValueError): no runs, a folder that is not a run, or (``finished``) an
            unfinished run.
        CheckpointError: a damaged file in a run folder.
    """
    paths = expand_runs(inputs)
    # among several entries (a glob), files and folders that are not runs (an analysis' figures,
    # a log) are skipped with a note; one path given alone must be a run
    skipped = [p for p in paths if len(paths) > 1 and not is_run_folder(p)]
    for p in skipped:
        print(f"robustrain: note: skipped {p}: not a run folder (no config.yaml or summary.json)", file=sys.stderr)
    runs = [load_run(p) for p in paths if p not in skipped]
    if not runs:
        raise UsageError("no run folders given; pass one or more folders written by `robustrain train`")
    if finished:
        for r in runs:
            if r.summary is None or "final" not in r.summary:
                raise UsageError(f"{r.path} has no summary.json (unfinished run?); let it finish or leave it out")
    return runs


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def swept_params(runs: Sequence[RunInfo]) -> list[str]:
    """Config keys whose values differ between ``runs`` and that every run has (so a key of
    one method only is not "swept" against runs of other methods), minus :data:`IGNORED_KEYS`,
    evaluation and guard settings. Sorted, ``method.name`` first."""
    if len(runs) < 2:
        return []
    common = set(runs[0].config).intersection(*(r.config for r in runs[1:]))
    keys = [k for k in common
            if k not in IGNORED_KEYS and not k.startswith(_IGNORED_PREFIXES)
            and len({_hashable(r.config[k]) for r in runs}) > 1]
    return sorted(keys, key=lambda k: (k != "method.name", k))


def base_values(runs: Sequence[RunInfo], keys: Sequence[str]) -> dict[str, Any]:
    """The most common value of each key: the centre of a set of one-at-a-time sweeps."""
    return {k: Counter(_hashable(r.config.get(k)) for r in runs).most_common(1)[0][0] for k in keys}


def final_accuracy(run: RunInfo) -> dict[str, float]:
    """The final accuracies of a finished run: ``summary.json``'s table, plus the columns of
    ``robustrain eval`` results (``CHECKPOINT-eval*.json``, any of them) of the same checkpoint under the
    default threat model (Linf, eps 8/255) that the summary lacks (e.g. AutoAttack,
    evaluated afterwards)."""
    if run.summary is None:
        return {}
    acc = dict(run.summary.get("final", {}))
    checkpoint = run.path / run.summary.get("checkpoint", RunDir.BEST)
    records = []
    for path in eval_record_paths(checkpoint):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        eps, norm = data.get("eps", 8 / 255), str(data.get("norm", "Linf")).lower()
        if norm == "linf" and isinstance(eps, (int, float)) and math.isclose(eps, 8 / 255, rel_tol=1e-6):
            records.append(data)
    # the evaluation on the most images first: its columns win over a quick subset's
    for data in sorted(records, key=lambda d: -(d.get("n") or 0)):
        for k, v in data.get("accuracy", {}).items():
            acc.setdefault(k, v)
    return acc


def robust_metric(accuracies: Sequence[Mapping[str, float]], metric: str | None = None) -> str:
    """The robust column to plot: ``metric`` when every run has it, else the strongest of
    aa, aa-plus, pgd20, cw30 that every run has, else any non-natural column they share.

    Raises:
        UsageError (a ValueError): ``metric`` missing in a run, or no common robust column.
    """
    common = set(accuracies[0]).intersection(*accuracies[1:]) if accuracies else set()
    if metric is not None:
        if metric not in common:
            raise UsageError(f"--metric {metric}: not in every run's final table (common columns: "
                             f"{', '.join(sorted(common)) or 'none'}); evaluate the runs with it or pick another")
        return metric
    for name in _ROBUST_ORDER:
        if name in common:
            return name
    rest = sorted(common - {"natural"})
    if not rest:
        raise UsageError("the runs share no robust accuracy column in summary.json; "
                         "evaluate them with `robustrain eval` first")
    return rest[0]
