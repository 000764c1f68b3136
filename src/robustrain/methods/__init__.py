"""Training methods: stateful loss modules ``method(model, batch) -> LossOutput``.

Build one from a config with :func:`create_method` (names: ``METHODS.names()``); the
hyper-parameters of each are the fields of ``method_params(name)``. The loss formulas live
once, as pure functions, in :mod:`robustrain.methods.losses`.

``<base>+uiat`` (the UIAT regulariser on a base method) is registered for every base method
by :func:`register_uiat_plugins`, called at the END of this module: import a new family's
module above that call and its ``<name>+uiat`` exists with no further code.
"""

from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.losses import (
    LossTerms,
    inverse_loss,
    kl_div,
    kl_from_logits,
    l1_per_example,
    mart_loss,
    trades_loss,
    uiat_loss,
    uiat_regulariser,
)
from robustrain.methods.registry import METHODS, create_method, method_params

from robustrain.methods.params import PGDAdversaryParams  # noqa: E402  isort: skip

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
from robustrain.methods import inverse  # noqa: E402,F401  isort: skip
from robustrain.methods.inverse import (  # noqa: E402  isort: skip
    IAT,
    UIAT,
    IATParams,
    UIATOneOff,
    UIATOneOffParams,
    UIATParams,
    UIATPlugin,
    UIATPluginParams,
    register_uiat_plugins,
)

from robustrain.methods import hat  # noqa: E402,F401  isort: skip
from robustrain.methods.hat import HAT, HATParams  # noqa: E402  isort: skip
from robustrain.methods import reweight  # noqa: E402,F401  isort: skip
from robustrain.methods import single_step  # noqa: E402,F401  isort: skip
from robustrain.methods.single_step import (  # noqa: E402  isort: skip
    FGSMAT,
    NFGSM,
    RSFGSM,
    FGSMATParams,
    GradAlign,
    GradAlignParams,
    NFGSMParams,
    RSFGSMParams,
)

# last: <base>+uiat for every base method imported above
register_uiat_plugins()

__all__ = [
    "HAT",
    "HATParams",
    "FGSMAT",
    "FGSMATParams",
    "GradAlign",
    "GradAlignParams",
    "IAT",
    "IATParams",
    "LossOutput",
    "LossTerms",
    "MART",
    "MARTParams",
    "METHODS",
    "Method",
    "MethodContext",
    "NFGSM",
    "NFGSMParams",
    "PGDAT",
    "PGDATParams",
    "PGDAdversaryParams",
    "RSFGSM",
    "RSFGSMParams",
    "Standard",
    "StandardParams",
    "TRADES",
    "TRADESParams",
    "UIAT",
    "UIATOneOff",
    "UIATOneOffParams",
    "UIATParams",
    "UIATPlugin",
    "UIATPluginParams",
    "create_method",
    "inverse_loss",
    "kl_div",
    "kl_from_logits",
    "l1_per_example",
    "mart_loss",
    "method_params",
    "register_uiat_plugins",
    "trades_loss",
    "uiat_loss",
    "uiat_regulariser",
]
