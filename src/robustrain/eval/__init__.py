"""Layer 6: robust evaluation, honest by construction (fp32, eval mode, a fixed seed).

* :mod:`~robustrain.eval.robust` — accuracy tables under the DESIGN.md protocol, and
  :func:`evaluate_checkpoint`, the one checkpoint -> model -> table path (``fit``'s final table,
  ``robustrain eval`` and the reproduce harness all use it);
* :mod:`~robustrain.eval.figures` — the papers' figures, one module per figure;
* :mod:`~robustrain.eval.runs` / :mod:`~robustrain.eval.report` — reading run folders, per-run reports.

Loading models (``load_model``, ``LoadedModel``) lives in :mod:`robustrain.artifacts` and AutoAttack
in :mod:`robustrain.attacks.autoattack`; import them from there.
"""

from robustrain.eval.robust import (
    PROTOCOL,
    EvalRecord,
    RobustEvaluation,
    build_eval_attacks,
    describe_protocol,
    evaluate_checkpoint,
    evaluate_robustness,
    format_table,
)
from robustrain.eval.saved import EvalFiles, SavedEvaluation, eval_files, evaluate_saved

__all__ = [
    "PROTOCOL",
    "EvalFiles",
    "EvalRecord",
    "RobustEvaluation",
    "SavedEvaluation",
    "build_eval_attacks",
    "describe_protocol",
    "eval_files",
    "evaluate_checkpoint",
    "evaluate_robustness",
    "evaluate_saved",
    "format_table",
]
