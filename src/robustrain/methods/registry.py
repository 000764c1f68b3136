"""The ``METHODS`` and ``PLUGINS`` registries and the factory a config layer calls.

``METHODS`` holds the base methods only. A plug-in (``PLUGINS``, e.g. ``uiat``) composes with
a base by constructor, ``Plugin(base_instance, plugin_params, ctx)``, and the composite is
named ``"<base>+<plugin>"`` (``pgd_at+uiat``). :func:`method_names` lists both kinds; the
functions below take either kind of name.

Example:
    >>> from robustrain.methods import METHODS, MethodContext, create_method, method_names, method_params
    >>> ctx = MethodContext(num_classes=10, image_shape=(3, 32, 32), num_train=50000, epochs=100)
    >>> method = create_method("trades", ctx, beta=3.0)
    >>> method.params.beta, method_params("trades").__name__
    (3.0, 'TRADESParams')
    >>> "pgd_at+uiat" in method_names(), "pgd_at+uiat" in METHODS
    (True, False)
    >>> plugged = create_method("pgd_at+uiat", ctx, steps=5, lam=3.0)
    >>> plugged.base.params.steps, plugged.params.lam
    (5, 3.0)
    >>> [f.name for f in method_fields("standard+uiat")][:2]
    ['lam', 'eps_inv']
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from robustrain.methods.base import Method, MethodContext
from robustrain.utils.checks import check_keys
from robustrain.utils.registry import Registry

__all__ = [
    "METHODS",
    "PLUGINS",
    "MethodEntry",
    "ParamField",
    "PluggedParams",
    "create_method",
    "method_entries",
    "method_fields",
    "method_names",
    "method_params",
    "split_method_name",
    "split_params",
]

#: name -> base Method subclass (each with a frozen ``Params`` dataclass).
METHODS: Registry[type[Method]] = Registry("method")

#: name -> plug-in Method subclass: ``cls(base: Method, params: cls.Params, ctx)``; its entry's
#: help is a template with ``{base}``. A base opts out with ``<plugin>_pluggable = False``.
PLUGINS: Registry[type[Method]] = Registry("method plug-in")


class ParamField(NamedTuple):
    """One hyper-parameter of a method: name, type and default (``dataclasses.MISSING`` if none)."""

    name: str
    type: Any
    default: Any


class MethodEntry(NamedTuple):
    """One row of ``robustrain list methods``: name, one-line help and the ordered parameters."""

    name: str
    help: str
    fields: tuple[ParamField, ...]


@dataclass(frozen=True)
class PluggedParams:
    """The typed hyper-parameters of a composite ``<base>+<plugin>``: the base method's Params
    and the plug-in's, kept apart (each validates itself).

    Reading a field by name falls through to the part that has it, base first, so
    ``params.eps`` works on ``pgd_at`` and ``pgd_at+uiat`` alike; :meth:`as_dict` gives the flat
    view (base fields, then the plug-in's) a config file spells.

    Example:
        >>> from robustrain.methods.at import PGDATParams
        >>> from robustrain.methods.inverse import UIATPluginParams
        >>> p = PluggedParams(PGDATParams(steps=5), UIATPluginParams(lam=3.0))
        >>> p.steps, p.lam, list(p.as_dict())[:2]
        (5, 3.0, ['eps', 'alpha'])
    """

    base: Any
    plugin: Any

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("base", "plugin"):
            raise AttributeError(name)
        for part in (self.base, self.plugin):
            if name in _field_names(type(part)):
                return getattr(part, name)
        raise AttributeError(f"{type(self.base).__name__} + {type(self.plugin).__name__} have no field {name!r}")

    def as_dict(self) -> dict[str, Any]:
        """The flat ``{field: value}`` of the base, then the plug-in."""
        return {**dataclasses.asdict(self.base), **dataclasses.asdict(self.plugin)}


def _field_names(params_cls: type | None) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(params_cls)) if params_cls is not None else ()


def _fields_of(params_cls: type | None) -> tuple[ParamField, ...]:
    if params_cls is None:
        return ()
    hints = typing.get_type_hints(params_cls)
    return tuple(ParamField(f.name, hints[f.name], f.default) for f in dataclasses.fields(params_cls))


def _pluggable(base: str, base_cls: type, plugin: str) -> bool:
    return "+" not in base and bool(getattr(base_cls, f"{plugin}_pluggable", True))


def method_names(registry: Registry | None = None, plugins: Registry | None = None) -> list[str]:
    """Every method name, sorted: the bases and ``f"{base}+{plugin}"`` for each pluggable base.

    Args:
        registry, plugins: the registries to read (``METHODS`` / ``PLUGINS`` by default).
    """
    registry = METHODS if registry is None else registry
    plugins = PLUGINS if plugins is None else plugins
    names = [e.name for e in registry]
    names += [f"{e.name}+{p.name}" for e in registry for p in plugins if _pluggable(e.name, e.obj, p.name)]
    return sorted(names)


def split_method_name(
    name: str, registry: Registry | None = None, plugins: Registry | None = None
) -> tuple[str, str | None]:
    """``"trades"`` -> ``("trades", None)``; ``"trades+uiat"`` -> ``("trades", "uiat")``.

    Raises:
        KeyError: not a method name (the message lists the known ones).
    """
    registry = METHODS if registry is None else registry
    plugins = PLUGINS if plugins is None else plugins
    if name in registry:
        return name, None
    base, sep, plugin = name.rpartition("+")
    if sep and base in registry and plugin in plugins and _pluggable(base, registry.get(base), plugin):
        return base, plugin
    known = method_names(registry, plugins)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown {registry.kind} {name!r}.{hint} Known: {', '.join(known)}")


def method_params(name: str) -> type:
    """The frozen ``Params`` dataclass of BASE method ``name`` (fields, types and defaults).

    A composite ``<base>+<plugin>`` has two (``method_params(base)`` and
    ``PLUGINS.get(plugin).Params``); :func:`method_fields` lists the fields of any name.

    Raises:
        KeyError: unknown name, or a composite name (the message says what to call instead).
    """
    base, plugin = split_method_name(name)
    if plugin is not None:
        raise KeyError(
            f"{name!r} is a composite of {base!r} and the {plugin!r} plug-in: its params are "
            f"method_params({base!r}) and PLUGINS.get({plugin!r}).Params (see method_fields)"
        )
    return METHODS.get(name).Params


def method_fields(name: str) -> tuple[ParamField, ...]:
    """The ordered hyper-parameters of method ``name``: a base's Params fields, or for
    ``<base>+<plugin>`` the base's followed by the plug-in's (the flat keys a config takes)."""
    base, plugin = split_method_name(name)
    fields = _fields_of(METHODS.get(base).Params)
    if plugin is not None:
        fields += _fields_of(PLUGINS.get(plugin).Params)
    return fields


def method_entries() -> list[MethodEntry]:
    """Every method (:func:`method_names` order) with its help line and :func:`method_fields`;
    what ``robustrain list methods`` prints."""
    out = []
    for name in method_names():
        base, plugin = split_method_name(name)
        text = METHODS.entry(base).help if plugin is None else PLUGINS.entry(plugin).help.format(base=base)
        out.append(MethodEntry(name, text, method_fields(name)))
    return out


def split_params(name: str, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the flat keys of a composite ``<base>+<plugin>`` into (base keys, plug-in keys).

    Raises:
        ValueError: a key that is neither's (the message lists the valid ones), or a base
            field named like a plug-in field (the split would be ambiguous).
    """
    base, plugin = split_method_name(name)
    if plugin is None:
        raise ValueError(f"{name!r} is not a composite <base>+<plugin> method")
    base_names = _field_names(METHODS.get(base).Params)
    own_names = _field_names(PLUGINS.get(plugin).Params)
    clash = sorted(set(base_names) & set(own_names))
    if clash:
        raise ValueError(f"cannot build {name}: {base}'s parameter(s) {clash} clash with the plug-in's")
    check_keys(f"method {name!r}", params, base_names + own_names)
    return ({k: v for k, v in params.items() if k in base_names},
            {k: v for k, v in params.items() if k in own_names})


def _section_params(name: str, params: Any) -> Any:
    """A config section (``.name`` and ``.params``, e.g. ``cfg.method``) -> its params."""
    section_name = getattr(params, "name", None)
    if isinstance(section_name, str) and hasattr(params, "params") and not isinstance(params, Mapping):
        if section_name != name:
            raise ValueError(f"create_method({name!r}, ...) got the params of method {section_name!r}")
        return params.params
    return params


def _base_params(what: str, params_cls: type, params: Any, kwargs: Mapping[str, Any]) -> Any:
    """A Params instance from an instance (+ replacements), a mapping and/or keywords."""
    if params is not None and not isinstance(params, Mapping):
        if kwargs:
            check_keys(what, kwargs, _field_names(params_cls))
            return dataclasses.replace(params, **kwargs)
        return params  # the Method checks its type
    merged = {**(params or {}), **kwargs}
    check_keys(what, merged, _field_names(params_cls))
    return params_cls(**merged)


def create_method(name: str, ctx: MethodContext, params: Any = None, /, **kwargs: Any) -> Method:
    """Build method ``name`` (a base or ``<base>+<plugin>``).

    ``params`` is the typed Params (``PluggedParams`` for a composite), a config section that
    holds them (``cfg.method``), a flat mapping, or ``None``; keyword arguments override single
    fields. So ``create_method("trades", ctx, beta=3.0)``, ``create_method(cfg.method.name, ctx,
    cfg.method.params)`` and ``create_method("pgd_at+uiat", ctx, steps=5, lam=3.0)`` all work.
    A composite is ``PLUGINS.get(plugin)(base=METHODS.get(base)(base_params, ctx),
    params=plugin_params, ctx=ctx)``: the base is built first.

    Raises:
        KeyError: unknown ``name`` (the message lists the known ones).
        ValueError: a parameter that is not a field of its Params (the message lists the
            valid ones) or an invalid value.
        TypeError: a Params instance of another method.
    """
    base, plugin = split_method_name(name)
    params = _section_params(name, params)
    base_cls = METHODS.get(base)
    what = f"method {name!r}"
    if plugin is None:
        return base_cls(_base_params(what, base_cls.Params, params, kwargs), ctx)
    plugin_cls = PLUGINS.get(plugin)
    if isinstance(params, PluggedParams):
        base_kw, own_kw = split_params(name, kwargs)
        base_p = _base_params(what, base_cls.Params, params.base, base_kw)
        own_p = _base_params(what, plugin_cls.Params, params.plugin, own_kw)
    elif params is None or isinstance(params, Mapping):
        base_kw, own_kw = split_params(name, {**(params or {}), **kwargs})
        base_p = base_cls.Params(**base_kw) if base_cls.Params is not None else None
        own_p = plugin_cls.Params(**own_kw)
    else:
        raise TypeError(
            f"{name} expects PluggedParams (the base's and the plug-in's Params), a mapping or keywords, "
            f"got {type(params).__name__}"
        )
    return plugin_cls(base_cls(base_p, ctx), own_p, ctx)
