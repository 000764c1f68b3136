"""Writing an :class:`AuditReport`: markdown, JSON and (with matplotlib) a figure of accuracy vs
eps and vs PGD steps. Every file is written atomically.

Example:
    >>> from robustrain.eval.audit.core import AuditReport, AuditSettings, CheckResult
    >>> r = AuditReport([CheckResult("gradients", "input gradients", "PASS", "0 of 8", "fine")], 8, 1.0, 0.5,
    ...                 AuditSettings())
    >>> print(format_markdown(r).splitlines()[2])
    **Verdict: PASS** (all checks passed)
"""

from __future__ import annotations

from pathlib import Path

from robustrain.eval.audit.core import AuditReport
from robustrain.eval.plots import Line, Panel, line_figure, pct
from robustrain.utils.errors import PlotDependencyError
from robustrain.utils.fileio import write_atomic, write_json
from robustrain.utils.units import format_eps

__all__ = ["format_markdown", "format_text", "write_report"]

#: the papers the checks come from (cited in the report)
REFERENCES = (
    "Athalye, Carlini, Wagner, \"Obfuscated Gradients Give a False Sense of Security\", ICML 2018, arXiv:1802.00420",
    "Carlini et al., \"On Evaluating Adversarial Robustness\", 2019, arXiv:1902.06705",
    "Pintor et al., \"Indicators of Attack Failure: Debugging and Improving Optimization of Adversarial "
    "Examples\", NeurIPS 2022, arXiv:2106.09947",
    "Croce & Hein, \"Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free "
    "attacks\", ICML 2020, arXiv:2003.01690",
    "Tramer, Carlini, Brendel, Madry, \"On Adaptive Attacks to Adversarial Example Defenses\", NeurIPS 2020, "
    "arXiv:2002.08347",
)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _eps_label(v: float) -> str:
    return "1" if v >= 1.0 else ("0" if v == 0 else format_eps(v))


def format_text(report: AuditReport) -> str:
    """The console summary: one line per check, one per adaptive rerun ("reported X%, adaptive Y%"),
    then the verdict."""
    lines = [f"{c.status:4}  {c.key:16}  {c.reason}" for c in report.checks]
    lines += [f"ADAPT {r.key:16}  {r.line()}" for r in report.adaptive]
    lines.append(f"clean {_pct(report.clean_accuracy)}, lowest robust accuracy at eps="
                 f"{format_eps(report.settings.eps)}: {_pct(report.robust_accuracy)} ({report.n} images, "
                 f"{report.seconds:.0f} s)")
    lines.append(report.summary())
    return "\n".join(lines)


def format_markdown(report: AuditReport) -> str:
    """The markdown report: verdict, a table of the checks, details and references."""
    meta = report.meta
    what = meta.get("checkpoint") or meta.get("model") or "model"
    out = [f"# Robustness evaluation audit: {what}", "",
           f"**Verdict: {report.verdict}** ({report.summary().split('(', 1)[1]}", ""]
    facts = [f"{k}: {v}" for k, v in meta.items() if v is not None and k != "checkpoint"]
    out += [f"- {', '.join(facts)}" if facts else "",
            f"- {report.n} test images; clean accuracy {_pct(report.clean_accuracy)}; lowest robust accuracy at "
            f"Linf eps={format_eps(report.settings.eps)}: {_pct(report.robust_accuracy)}",
            f"- protocol: {report.settings.describe()}{' (--quick)' if report.settings.quick else ''}",
            f"- time: {report.seconds:.0f} s", "",
            "| # | check | status | numbers |", "|---|---|---|---|"]
    for i, c in enumerate(report.checks, 1):
        out.append(f"| {i} | {c.title} | **{c.status}** | {c.reason.replace('|', '/')} |")
    out.append("")
    for i, c in enumerate(report.checks, 1):
        out += [f"## {i}. {c.title}: {c.status}", "", c.reason + ".", "", f"*What it means:* {c.meaning}", ""]
    if report.adaptive:
        out += ["## Adaptive attacks", "",
                "The checks found randomness or masked gradients, so PGD was rerun as the adaptive attack that "
                "fits (EOT for randomness, BPDA for a non-differentiable preprocessing; Athalye et al. 2018). "
                "Both numbers are one ordinary forward on the final x_adv, as `robustrain eval` reports them.", ""]
        out += [f"- **{r.key}**: {r.line()}" for r in report.adaptive] + [""]
    eps = report.curves.get("eps")
    if eps:
        out += ["## Accuracy vs eps", "", "| eps | " + " | ".join(_eps_label(e) for e in eps["eps"]) + " |",
                "|---|" + "---|" * len(eps["eps"]),
                "| accuracy | " + " | ".join(_pct(a) for a in eps["accuracy"]) + " |", ""]
    if meta.get("figure"):
        out += [f"![accuracy vs eps and steps]({Path(meta['figure']).name})", ""]
    out += ["## References", ""] + [f"- {r}" for r in REFERENCES] + [""]
    return "\n".join(out)


def _figure(report: AuditReport, path: Path) -> Path:
    """The sweep and convergence curves, accuracies in % as every other figure (issue 23)."""
    eps, steps = report.curves["eps"], report.curves["steps"]
    positions = list(range(len(eps["eps"])))
    sweep = Panel([Line("PGD-CE", positions, pct(eps["accuracy"]))], title="accuracy vs eps (Linf)", xlabel="eps",
                  ylabel="accuracy (%)", xticks=positions, xticklabels=[_eps_label(e) for e in eps["eps"]],
                  hlines=[0.0])
    n_steps = len(steps["accuracy"]) - 1
    lines = [Line("PGD-CE, first run", steps["steps"], pct(steps["accuracy"]), marker="")]
    if len(steps["restarts"]) > 1:
        lines.append(Line("after each restart", [n_steps] * len(steps["restarts"]), pct(steps["restarts"]),
                          linestyle="", point_labels=[f"r{i + 1}" for i in range(len(steps["restarts"]))]))
    for label, key in (("APGD-CE + APGD-T", "autoattack"), ("Square", "square")):
        if steps.get(key) is not None:
            lines.append(Line(label, [0, n_steps], pct([steps[key]] * 2), marker="", linestyle="--"))
    conv = Panel(lines, title=f"accuracy vs PGD steps (eps={format_eps(report.settings.eps)})", xlabel="steps",
                 ylabel="accuracy (%)", integer_x=True)
    return line_figure([sweep, conv], path, title=f"audit verdict: {report.verdict}")


def write_report(report: AuditReport, base: str | Path, *, figure: bool = True) -> dict[str, Path | None]:
    """Write ``BASE.md``, ``BASE.json`` and, when ``figure`` and matplotlib is installed,
    ``BASE.png``; returns the paths (``figure`` None when not drawn, with the reason in
    ``report.meta["figure_note"]``)."""
    base = Path(base)
    paths: dict[str, Path | None] = {"markdown": base.with_name(base.name + ".md"),
                                     "json": base.with_name(base.name + ".json"), "figure": None}
    if figure:
        try:
            paths["figure"] = _figure(report, base.with_name(base.name + ".png"))
            report.meta["figure"] = str(paths["figure"])
        except PlotDependencyError as e:
            report.meta["figure_note"] = str(e)
    write_json(report.to_dict(), paths["json"])
    write_atomic(paths["markdown"], format_markdown(report))
    return paths
