"""Training methods: stateful loss modules ``method(model, batch) -> LossOutput``.

Build one from a config with :func:`create_method` (names: ``METHODS.names()``); the
hyper-parameters of each are the fields of ``method_params(name)``. The loss formulas live
once, as pure functions, in :mod:`robustrain.methods.losses`.
"""

from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.losses import LossTerms, kl_div, kl_from_logits, mart_loss, trades_loss
from robustrain.methods.registry import METHODS, create_method, method_params

# imported for their registrations
from robustrain.methods import at  # noqa: E402,F401  isort: skip
from robustrain.methods.at import (  # noqa: E402  isort: skip
    MART,
    PGDAT,
    TRADES,
    MARTParams,
    PGDATParams,
    Standard,
    StandardParams,
    TRADESParams,
)

__all__ = [
    "LossOutput",
    "LossTerms",
    "MART",
    "MARTParams",
    "METHODS",
    "Method",
    "MethodContext",
    "PGDAT",
    "PGDATParams",
    "Standard",
    "StandardParams",
    "TRADES",
    "TRADESParams",
    "create_method",
    "kl_div",
    "kl_from_logits",
    "mart_loss",
    "method_params",
    "trades_loss",
]
