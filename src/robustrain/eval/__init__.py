"""Robust evaluation: accuracy tables under the DESIGN.md protocol."""

from robustrain.eval.loading import LoadedModel, load_model
from robustrain.eval.robust import PROTOCOL, build_eval_attacks, evaluate_attacks, format_table
from robustrain.attacks.autoattack import AutoAttackResult, AutoAttackSpec, parse_autoattack_name, run_autoattack
from robustrain.eval.robust import RobustEvaluation, describe_protocol, evaluate_robustness

__all__ = ["LoadedModel", "load_model", "PROTOCOL", "build_eval_attacks", "evaluate_attacks", "format_table"]
__all__ += ["AutoAttackResult", "AutoAttackSpec", "parse_autoattack_name", "run_autoattack",
            "RobustEvaluation", "describe_protocol", "evaluate_robustness"]
