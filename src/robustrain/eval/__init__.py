"""Robust evaluation: accuracy tables under the DESIGN.md protocol."""

from robustrain.eval.loading import LoadedModel, load_model
from robustrain.eval.robust import PROTOCOL, build_eval_attacks, evaluate_attacks, format_table

__all__ = ["LoadedModel", "load_model", "PROTOCOL", "build_eval_attacks", "evaluate_attacks", "format_table"]
