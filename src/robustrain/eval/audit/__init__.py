"""``robustrain audit``: is this robustness number real? Six checks of an evaluation, one verdict.

Published defences keep being broken because their evaluation was fooled by gradient masking.
This package turns the known checks into PASS / WARN / FAIL with the numbers behind each and an
overall verdict (the worst check), on a model in fp32 and eval mode:

1. ``eps_sweep`` — accuracy falls monotonically with eps and reaches ~0 at the unbounded radius
   eps = 1 (Athalye et al. 2018, Sec. 7; Carlini et al. 2019, Sec. 5.4 "unbounded attacks
   should reach 100% success"; Pintor et al. 2022, "non-converging / silent" indicators);
2. ``convergence`` — more PGD steps and restarts do not keep lowering accuracy (Carlini et al.
   2019, "verify that more iterations do not help"; Pintor et al. 2022, "non-converging attack");
3. ``black_box`` — white-box attacks beat a black-box one (Square, Andriushchenko et al. 2020,
   through the official AutoAttack package) and a transfer attack from a surrogate (Athalye et
   al. 2018; Carlini et al. 2019, "black-box attacks should not outperform white-box ones");
4. ``losses`` — PGD on CE, on the CW margin and on DLR agree, and PGD is not far above APGD
   (Croce & Hein 2020; Pintor et al. 2022, "incomplete optimisation");
5. ``gradients`` — the fraction of images whose input gradient is zero or non-finite (Athalye et
   al. 2018, shattered / vanishing gradients; Pintor et al. 2022, "zero gradients");
6. ``autoattack_flags`` — AutoAttack's own sanity flags, surfaced (Croce & Hein 2020).

References:
    Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of Security:
    Circumventing Defenses to Adversarial Examples", ICML 2018, arXiv:1802.00420.
    Carlini, Athalye, Papernot, Brendel, Rauber, Tsipras, Goodfellow, Madry, Kurakin, "On
    Evaluating Adversarial Robustness", 2019, arXiv:1902.06705.
    Pintor, Demetrio, Sotgiu, Demontis, Carlini, Biggio, Roli, "Indicators of Attack Failure:
    Debugging and Improving Optimization of Adversarial Examples", NeurIPS 2022, arXiv:2106.09947.
    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020, arXiv:2003.01690.

Thresholds and what a FAIL means: :mod:`robustrain.eval.audit.checks` and ``docs/audit.md``.
The threat model is Linf. The transfer attack needs a surrogate model (``surrogate=``; the CLI's
``--surrogate PATH``): the audit never trains one itself (evaluation sits below training in the
layers), so without one check 3 rests on Square and says how to add the transfer attack.

Modules: :mod:`~.core` (statuses, settings, thresholds, the report), :mod:`~.measure` (the
attack runs), :mod:`~.checks` (the six judgements), :mod:`~.run` (:func:`run_audit`),
:mod:`~.report` (markdown, JSON, figure).
"""

from robustrain.eval.audit.core import FAIL, PASS, WARN, AuditReport, AuditSettings, CheckResult, Thresholds
from robustrain.eval.audit.report import format_markdown, format_text, write_report
from robustrain.eval.audit.run import run_audit

__all__ = [
    "FAIL",
    "PASS",
    "WARN",
    "AuditReport",
    "AuditSettings",
    "CheckResult",
    "Thresholds",
    "format_markdown",
    "format_text",
    "run_audit",
    "write_report",
]
