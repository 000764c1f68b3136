"""Training methods: stateful loss modules ``method(model, batch) -> LossOutput``.

Build one from a config with :func:`create_method` (names: :func:`method_names`); the
hyper-parameters of each are the fields of ``method_params(name)`` (:func:`method_fields`
for any name). The loss formulas live once, as pure functions, in
:mod:`robustrain.methods.losses`.

``METHODS`` holds the base methods; ``<base>+uiat`` (the UIAT regulariser on a base method)
is a composition, ``UIATPlugin(base_instance, UIATPluginParams(...), ctx)``, that
:func:`create_method` builds from the name for every base without ``uiat_pluggable = False``:
a new family's module imported below has its ``<name>+uiat`` with no further code.
"""

# the method modules are imported for their registrations too
from robustrain.methods import at, hat, inverse, reweight, single_step  # noqa: F401
from robustrain.methods.at import (
    MART, PGDAT, TRADES, MARTParams, PGDATParams, Standard, StandardParams, TRADESParams, majority_fraction,
    prediction_stats,
)
from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.hat import HAT, HATParams
from robustrain.methods.inverse import (
    IAT,
    UIAT,
    IATParams,
    InverseTargets,
    UIATOneOff,
    UIATOneOffParams,
    UIATParams,
    UIATPlugin,
    UIATPluginParams,
)
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
from robustrain.methods.params import PGDAdversaryParams
from robustrain.methods.registry import (
    METHODS,
    PLUGINS,
    MethodEntry,
    ParamField,
    PluggedParams,
    create_method,
    method_entries,
    method_fields,
    method_names,
    method_params,
    split_method_name,
    split_params,
)
from robustrain.methods.single_step import (
    FGSMAT,
    NFGSM,
    RSFGSM,
    FGSMATParams,
    GradAlign,
    GradAlignParams,
    NFGSMParams,
    RSFGSMParams,
)

__all__ = [
    "HAT",
    "HATParams",
    "FGSMAT",
    "FGSMATParams",
    "GradAlign",
    "GradAlignParams",
    "IAT",
    "IATParams",
    "InverseTargets",
    "LossOutput",
    "LossTerms",
    "MART",
    "MARTParams",
    "METHODS",
    "MethodEntry",
    "Method",
    "MethodContext",
    "NFGSM",
    "NFGSMParams",
    "PLUGINS",
    "PGDAT",
    "PGDATParams",
    "PGDAdversaryParams",
    "ParamField",
    "PluggedParams",
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
    "majority_fraction",
    "mart_loss",
    "method_entries",
    "method_fields",
    "method_names",
    "method_params",
    "prediction_stats",
    "split_method_name",
    "split_params",
    "trades_loss",
    "uiat_loss",
    "uiat_regulariser",
]
