"""The ``METHODS`` registry and the factory a config layer calls.

Example:
    >>> from robustrain.methods import MethodContext, create_method, method_params
    >>> ctx = MethodContext(num_classes=10, image_shape=(3, 32, 32), num_train=50000, epochs=100)
    >>> method = create_method("trades", ctx, beta=3.0)
    >>> method.params.beta, method_params("trades").__name__
    (3.0, 'TRADESParams')
"""

from __future__ import annotations

import dataclasses
from typing import Any

from robustrain.utils.checks import check_keys
from robustrain.methods.base import Method, MethodContext
from robustrain.utils.registry import Registry

__all__ = ["METHODS", "create_method", "method_params"]

#: name -> Method subclass (each with a frozen ``Params`` dataclass).
METHODS: Registry[type[Method]] = Registry("method")


def method_params(name: str) -> type:
    """The frozen ``Params`` dataclass of method ``name`` (fields, types and defaults)."""
    return METHODS.get(name).Params


def create_method(name: str, ctx: MethodContext, **params: Any) -> Method:
    """Build method ``name`` with hyper-parameters ``params`` over the defaults of its Params.

    Raises:
        KeyError: unknown ``name`` (the message lists the known ones).
        ValueError: a parameter that is not a field of its Params (the message lists the
            valid ones) or an invalid value.
    """
    cls = METHODS.get(name)
    check_keys(f"method {name!r}", params, [f.name for f in dataclasses.fields(cls.Params)])
    return cls(cls.Params(**params), ctx)
