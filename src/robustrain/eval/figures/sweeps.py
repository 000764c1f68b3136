"""Figures 3 and 7 of UIAT, both from a sweep of finished runs (:func:`sweep_points`): the
natural-robust trade-off (``tradeoff``) and the accuracy against each swept hyper-parameter
(``sensitivity``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from robustrain.eval.figures._common import ANALYSES, arg, common_dir, output_base, pct, write_series
from robustrain.eval.plots import Line, Panel, line_figure, require_matplotlib
from robustrain.eval.runs import RunInfo, base_values, final_accuracy, load_runs, robust_metric, swept_params

__all__ = ["sweep_points", "sensitivity_series", "tradeoff_figure", "sensitivity_figure"]

SWEEP_ARGS = (
    arg("runs", nargs="+", metavar="RUN", help="run folders of the sweep (or a quoted glob, e.g. 'runs/lam/*')"),
    arg("--param", action="append", default=None, metavar="KEY",
        help="swept config key, e.g. method.lam (repeatable; default: every key whose value differs "
             "between the runs, ignoring names, seeds, eval and guard settings)"),
    arg("--metric", default=None,
        help="robust column of summary.json (or of a later `robustrain eval`) to plot "
             "(default: the first of aa, aa-plus, pgd20, cw30 that every run has)"),
)


def sweep_points(runs: Sequence[RunInfo], params: Sequence[str] | None = None,
                 metric: str | None = None) -> dict[str, Any]:
    """Natural and robust final accuracy of each run with its swept hyper-parameter values.

    Args:
        runs: finished runs.
        params: config keys (``method.lam``); default :func:`robustrain.eval.runs.swept_params`.
        metric: robust column; default :func:`robustrain.eval.runs.robust_metric`.

    Returns:
        ``{"params": [...], "metric": str, "points": [{"run", "label", "params": {key: value},
        "natural", "robust"}]}``.

    Raises:
        ValueError: nothing swept, a key missing in a run, or no common robust column.
    """
    params = list(params) if params else swept_params(runs)
    if not params:
        raise ValueError("the runs' configs differ in no hyper-parameter (names, seeds, eval and guard "
                         "settings are ignored); pass --param KEY, e.g. --param method.lam")
    for k in params:
        for r in runs:
            if k not in r.config:
                raise ValueError(f"--param {k}: {r.path} has no such config key (keys look like method.lam, "
                                 "train.epochs; see the run's config.yaml)")
    accs = [final_accuracy(r) for r in runs]
    for r, a in zip(runs, accs):
        if "natural" not in a:
            raise ValueError(f"{r.path}: summary.json has no natural accuracy; evaluate it with "
                             "`robustrain eval CHECKPOINT --attacks natural,...`")
    metric = robust_metric(accs, metric)
    points = [{"run": str(r.path), "label": r.label, "params": {k: r.config[k] for k in params},
               "natural": a["natural"], "robust": a[metric]} for r, a in zip(runs, accs)]
    return {"params": params, "metric": metric, "points": points}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _short(key: str) -> str:
    return key.split(".")[-1]


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def sensitivity_series(runs: Sequence[RunInfo], params: Sequence[str] | None = None,
                       metric: str | None = None) -> dict[str, Any]:
    """One series per swept key (UIAT Figure 7): the runs whose OTHER swept keys sit at their
    most common value (the centre of one-at-a-time sweeps), ordered by the key's value
    (numbers ascending; other values in the given order).

    Returns:
        ``{"metric": str, "params": {key: {"values", "labels", "runs", "natural", "robust"}}}``.
    """
    sweep = sweep_points(runs, params, metric)
    keys = sweep["params"]
    centre = base_values(runs, keys)
    out: dict[str, Any] = {}
    for k in keys:
        chosen = [(r, p) for r, p in zip(runs, sweep["points"])
                  if all(p["params"][o] == centre[o] for o in keys if o != k)]
        if all(_is_number(p["params"][k]) for _, p in chosen):
            chosen.sort(key=lambda rp: rp[1]["params"][k])
        out[k] = {"values": [p["params"][k] for _, p in chosen], "labels": [r.label for r, _ in chosen],
                  "runs": [p["run"] for _, p in chosen], "natural": [p["natural"] for _, p in chosen],
                  "robust": [p["robust"] for _, p in chosen]}
    return {"metric": sweep["metric"], "params": out}


def _infos(runs: Sequence[str | Path] | str | Path) -> list[RunInfo]:
    infos = load_runs([runs] if isinstance(runs, (str, Path)) else runs, finished=True)
    if len(infos) < 2:
        raise ValueError("a sweep needs at least two run folders")
    return infos


@ANALYSES.register("tradeoff", help="Figure 3: natural vs robust accuracy of a sweep of runs, labelled by "
                                    "the swept hyper-parameter(s)", args=SWEEP_ARGS)
def tradeoff_figure(runs: Sequence[str | Path] | str | Path, out: str | Path | None = None, *,
                    param: Sequence[str] | str | None = None, metric: str | None = None) -> list[Path]:
    """Natural-robust trade-off of a hyper-parameter sweep (UIAT Figure 3, lambda): one point
    per finished run at (natural, robust) final accuracy from summary.json, labelled with its
    swept value(s); with one numeric swept key the points are joined in its order. The swept
    keys are the config keys whose values differ between the runs, unless --param names
    them. Writes tradeoff.png and tradeoff.json (params, metric, one point per run).

    Args:
        runs: finished run folders (globs allowed).
        out: output folder or file (default: figures/ in the runs' common parent folder).
        param: swept key(s); default: detected.
        metric: robust column; default: aa, aa-plus, pgd20 or cw30, the first all runs have.
    """
    require_matplotlib()
    infos = _infos(runs)
    sweep = sweep_points(infos, [param] if isinstance(param, str) else param, metric)
    keys, pts = sweep["params"], list(sweep["points"])
    if len(keys) == 1 and all(_is_number(p["params"][keys[0]]) for p in pts):
        pts.sort(key=lambda p: p["params"][keys[0]])
        style = "-"
    else:
        style = ""
    text = [", ".join(f"{_short(k)}={_fmt_value(p['params'][k])}" for k in keys) for p in pts]
    panel = Panel([Line("", pct([p["natural"] for p in pts]), pct([p["robust"] for p in pts]), linestyle=style,
                        point_labels=text)],
                  title=f"swept: {', '.join(keys)}", xlabel="natural accuracy (%)",
                  ylabel=f"robust accuracy, {sweep['metric']} (%)")
    base = output_base(out, common_dir([r.path for r in infos]), "tradeoff")
    png = line_figure([panel], base.with_suffix(".png"))
    return [png, write_series(base.with_suffix(".json"), {"analysis": "tradeoff", **sweep})]


@ANALYSES.register("sensitivity", help="Figure 7: natural and robust accuracy vs each swept hyper-parameter "
                                       "(beta, gamma, T, T', ...)", args=SWEEP_ARGS)
def sensitivity_figure(runs: Sequence[str | Path] | str | Path, out: str | Path | None = None, *,
                       param: Sequence[str] | str | None = None, metric: str | None = None) -> list[Path]:
    """Hyper-parameter sensitivity (UIAT Figure 7): one panel per swept key with the natural
    and robust final accuracy against its value. For several keys (the union of one-at-a-
    time sweeps of, e.g., method.beta and method.gamma around a shared default run) each
    panel uses the runs whose other keys sit at their most common value. Non-numeric values
    (method names) become categories. Writes sensitivity.png and sensitivity.json.

    Args:
        runs: finished run folders (globs allowed).
        out: output folder or file (default: figures/ in the runs' common parent folder).
        param: swept key(s); default: detected.
        metric: robust column; default: aa, aa-plus, pgd20 or cw30, the first all runs have.
    """
    require_matplotlib()
    infos = _infos(runs)
    data = sensitivity_series(infos, [param] if isinstance(param, str) else param, metric)
    panels = []
    for key, s in data["params"].items():
        numeric = all(_is_number(v) for v in s["values"])
        if numeric:
            xs, ticks, names = s["values"], None, None
        else:
            xs = list(range(len(s["values"])))
            distinct = len(set(map(str, s["values"]))) == len(s["values"])
            ticks, names = xs, [str(v) for v in s["values"]] if distinct else s["labels"]
        style = "-" if numeric else ""  # categories are not a continuum: no joining lines
        panels.append(Panel([Line("natural", xs, pct(s["natural"]), linestyle=style),
                             Line(f"robust ({data['metric']})", xs, pct(s["robust"]), linestyle=style)],
                            title=key, xlabel=key, ylabel="accuracy (%)", xticks=ticks, xticklabels=names))
    base = output_base(out, common_dir([r.path for r in infos]), "sensitivity")
    png = line_figure(panels, base.with_suffix(".png"))
    return [png, write_series(base.with_suffix(".json"), {"analysis": "sensitivity", **data})]
