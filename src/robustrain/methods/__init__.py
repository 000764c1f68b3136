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

# the method modules are imported for their registrations in METHODS / PLUGINS; the method
# classes and their Params are imported from them (robustrain.methods.at, .hat, .single_step,
# .reweight, .inverse)
from robustrain.methods import at, hat, inverse, reweight, single_step  # noqa: F401
from robustrain.methods.base import LossOutput, Method, MethodContext
from robustrain.methods.losses import inverse_loss, mart_loss, trades_loss, uiat_loss, uiat_regulariser
from robustrain.methods.registry import (
    METHODS,
    PLUGINS,
    create_method,
    method_fields,
    method_names,
    method_params,
    split_method_name,
)

__all__ = [
    "METHODS",
    "PLUGINS",
    "LossOutput",
    "Method",
    "MethodContext",
    "create_method",
    "inverse_loss",
    "mart_loss",
    "method_fields",
    "method_names",
    "method_params",
    "split_method_name",
    "trades_loss",
    "uiat_loss",
    "uiat_regulariser",
]
