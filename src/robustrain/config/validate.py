"""Validate a nested config mapping once into a typed, frozen :class:`Config`.

The registries are imported here, at module top (config sits above every component layer):
names are checked against them, the method section is built into its typed Params (checked
once and KEPT: :class:`MethodConfig` / :class:`PluginConfig`), and the model section is
resolved with its defaults. :mod:`robustrain.config.load` reads YAML and applies overrides on
a plain dict, then calls :func:`config_from_dict` here.

Example:
    >>> cfg = config_from_dict({"method": {"name": "pgd_at+uiat", "steps": 5, "lam": 3.0}})
    >>> cfg.method.base.params.steps, cfg.method.plugin.lam, cfg.method.params.eps == 8 / 255
    (5, 3.0, True)
    >>> dict(cfg.model.params)
    {'activation': 'relu', 'width': 32}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

from robustrain.attacks import ATTACKS
from robustrain.attacks.autoattack import parse_autoattack_name
from robustrain.attacks.objects import parse_attack_name
from robustrain.config.schema import (
    AWP_SUFFIX,
    awp_defaults,
    COMPONENT_SECTIONS,
    ComponentConfig,
    Config,
    MethodConfig,
    PluginConfig,
    model_defaults,
)
from robustrain.data import DATASETS, get_dataset_info
from robustrain.data.split import default_val_n
from robustrain.data.streaming import STREAMING_DATASETS
from robustrain.methods import METHODS, PLUGINS, method_fields, split_method_name
from robustrain.models.registry import check_model_params
from robustrain.schedules import SCHEDULES
from robustrain.utils.checks import one_line, short_repr
from robustrain.utils.errors import ConfigError
from robustrain.utils.units import parse_number as parse_float

__all__ = ["coerce", "config_from_dict", "dataclass_from_mapping"]


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint`` of ``key`` and convert where lossless."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {short_repr(value)}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in (p.strip() for p in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {short_repr(value)}")
        elem = args[0] if args else Any
        return tuple(coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {short_repr(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {short_repr(value)}")
    if hint is float:
        return parse_float(value, key)
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {short_repr(value)}")
    return value


def dataclass_from_mapping(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and bad types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{_key(unknown[0])}; valid keys under {prefix.rstrip('.') or 'the top level'}: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):  # a sub-section, e.g. data.extra
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name}: expected a mapping, got {short_repr(value)}")
            kwargs[name] = dataclass_from_mapping(hint, value, f"{prefix}{name}.")
            continue
        kwargs[name] = coerce(value, hint, prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


def _component_schema(section: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(type hints, defaults) of a registry entry's parameters; for a composite method the
    base's fields then the plug-in's.

    Raises:
        KeyError: unknown name.
    """
    if section == "model":
        defaults = model_defaults(name)  # KeyError for an unknown model or model family (timm:...)
        # a model factory's keyword defaults give the types (None: anything goes)
        return {k: Any if v is None else type(v) for k, v in defaults.items()}, defaults
    fields = method_fields(name)
    return {f.name: f.type for f in fields}, {
        f.name: f.default for f in fields if f.default is not dataclasses.MISSING
    }


def _build_component(section: str, data: Mapping[str, Any] | str) -> ComponentConfig | MethodConfig | PluginConfig:
    """A ``model`` / ``method`` section as written (``name`` + flat keys) -> its typed form."""
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: expected a mapping with a 'name', got {short_repr(data)}")
    data = dict(data)
    name = data.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{section}.name is required (see `robustrain list {section}s`)")
    try:
        hints, defaults = _component_schema(section, name)
    except KeyError as e:
        raise ConfigError(f"{section}.name: {e.args[0]}") from None
    if section == "method":
        _check_plugin_clash(name)
    params = {}
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(
                f"unknown key {section}.{_key(key)} for {section} {name!r}; valid keys: "
                f"{', '.join(sorted(hints)) or '(none)'}"
            )
        params[key] = coerce(value, hints[key], f"{section}.{key}")
    if section == "model":
        resolved = {**defaults, **params}
        try:  # cheap family rules (WRN depth 6n+4, widths, activation, size): nothing is built
            check_model_params(name, resolved, prefix="model.")
        except ValueError as e:
            raise ConfigError(f"{e} (model {name!r}; see `robustrain list models`)") from None
        return ComponentConfig(name, resolved)
    return _build_method(name, params)


def _check_plugin_clash(name: str) -> None:
    """A composite's flat keys are split by field name: no base field may share a plug-in
    field's name (e.g. HAT's ``gamma``; such bases set ``<plugin>_pluggable = False``)."""
    base, plugin = split_method_name(name)
    if plugin is None:
        return
    base_fields = {f.name for f in dataclasses.fields(METHODS.get(base).Params)}
    own_fields = {f.name for f in dataclasses.fields(PLUGINS.get(plugin).Params)}
    clash = sorted(base_fields & own_fields)
    if clash:
        raise ConfigError(f"method {name!r}: {base}'s parameter(s) {clash} clash with the {plugin} plug-in's")


def _build_method(name: str, params: Mapping[str, Any]) -> MethodConfig | PluginConfig:
    """Build and check the typed Params once (the Params' own range checks, then the
    method's ``check_config``, e.g. HAT's required helper path)."""
    base, plugin = split_method_name(name)
    base_cls = METHODS.get(base)
    try:
        if plugin is None:
            checked = base_cls.Params(**params)
            base_cls.check_config(checked)
            return MethodConfig(name, checked)
        plugin_cls = PLUGINS.get(plugin)
        own_names = {f.name for f in dataclasses.fields(plugin_cls.Params)}
        base_params = base_cls.Params(**{k: v for k, v in params.items() if k not in own_names})
        base_cls.check_config(base_params)
        own = plugin_cls.Params(**{k: v for k, v in params.items() if k in own_names})
        plugin_cls.check_config(own)
        return PluginConfig(name, MethodConfig(base, base_params), own)
    except (ValueError, TypeError) as e:
        raise ConfigError(_method_message(name, str(e))) from None


def _method_message(name: str, message: str) -> str:
    """A Params error as the user's key: ``eps must ...`` -> ``method.eps must ... (method 'uiat')``."""
    field = message.split(" ", 1)[0]
    if field.isidentifier() and field in _method_field_names(name):
        return f"method.{message} (method {name!r})"
    return f"method {name!r}: {message}"


def _method_field_names(name: str) -> set[str]:
    """Every parameter name of method ``name`` (a composite's base and plug-in fields)."""
    try:
        return {f.name for f in method_fields(name)}
    except (KeyError, ValueError):
        return set()


def _key(key: object) -> str:
    """A key as written, cut short (a huge YAML key is never echoed whole)."""
    text = str(key)
    return text if len(text) <= 60 else text[:57] + "..."


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Validate a nested mapping (as read from YAML) into a :class:`Config`.

    Raises:
        ConfigError: unknown key, wrong type or out-of-range value; one line of at most
            :data:`~robustrain.utils.checks.MESSAGE_LIMIT` characters naming the key.
    """
    try:
        return _config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(one_line(str(e))) from None


def upgrade_saved_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """A run's SAVED (resolved) config with the method fields it predates filled in with the
    values the run was trained with (each Params' ``LEGACY`` mapping, e.g. the inverse family's
    ``target_bn_mode: eval`` from before issue 19), so that ``--resume`` continues an old run
    as it was trained instead of switching it to today's defaults.

    A resolved config lists every field, so a missing one means the run predates it. Only for
    configs read back from a run (``last.pt``), never for a user's YAML.

    Example:
        >>> upgrade_saved_config({"method": {"name": "uiat", "lam": 3.5}})["method"]["target_bn_mode"]
        'eval'
    """
    out = dict(data)
    method = out.get("method")
    name = method.get("name") if isinstance(method, Mapping) else None
    if not isinstance(name, str):
        return out
    try:
        base, plugin = split_method_name(name)
        classes = [METHODS.get(base).Params] + ([PLUGINS.get(plugin).Params] if plugin else [])
    except KeyError:
        return out  # config_from_dict names the unknown method
    section = dict(method)
    for cls in classes:
        for key, value in getattr(cls, "LEGACY", {}).items():
            section.setdefault(key, value)
    out["method"] = section
    return out


def _expand_awp_suffix(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``method: pgd_at+awp`` -> ``method: pgd_at`` and an ``awp`` section with the official
    settings of the base method (:func:`~robustrain.config.schema.awp_defaults`); keys the
    ``awp`` section sets explicitly win."""
    method = data.get("method")
    name = method.get("name") if isinstance(method, Mapping) else method
    parts = name.split("+") if isinstance(name, str) else []
    if AWP_SUFFIX[1:] not in parts[1:]:
        return data
    if parts.count(AWP_SUFFIX[1:]) > 1:
        raise ConfigError(f"method.name {name!r} names {AWP_SUFFIX} more than once; write it once, e.g. "
                          f"{'+'.join(p for p in parts if p != AWP_SUFFIX[1:])}{AWP_SUFFIX}")
    # either order: pgd_at+uiat+awp and pgd_at+awp+uiat are the same run
    base = "+".join(p for p in parts if p != AWP_SUFFIX[1:])
    out = dict(data)
    out["method"] = {**method, "name": base} if isinstance(method, Mapping) else base
    given = data.get("awp") or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"awp: expected a mapping, got {short_repr(given)}")
    out["awp"] = {**awp_defaults(base), **given}
    return out


def _config_from_dict(data: Mapping[str, Any]) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    data = _expand_awp_suffix(data)
    top = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - set(top), key=str)
    if unknown:
        raise ConfigError(f"unknown key {_key(unknown[0])}; valid top-level keys: {', '.join(sorted(top))}")
    hints = typing.get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if name in COMPONENT_SECTIONS:
            kwargs[name] = _build_component(name, value)
        elif dataclasses.is_dataclass(hint):
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name}: expected a mapping, got {short_repr(value)}")
            kwargs[name] = dataclass_from_mapping(hint, value, f"{name}.")
        else:
            kwargs[name] = coerce(value, hint, name)
    try:
        cfg = Config(**kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_names(cfg)
    if cfg.data.name in STREAMING_DATASETS:
        _check_streaming(cfg)  # sizes are known once data.root is read: the run checks them when built
        return cfg
    _check_val_n(cfg)
    _check_batch_fits(cfg)
    return cfg


def _check_streaming(cfg: Config) -> None:
    """A streaming dataset (``imagefolder``, ``webdataset``) needs ``data.root`` and cannot mix
    in generated images (``data.extra`` works with the in-memory datasets only)."""
    if not cfg.data.root:
        example = "DIR" if cfg.data.name == "imagefolder" else "'DIR/train/shard-{000000..000127}.tar'"
        raise ConfigError(f"data.name={cfg.data.name} needs data.root={example} (see `robustrain list datasets`)")
    if cfg.data.extra.path is not None:
        raise ConfigError(f"data.extra mixes generated images into the in-memory datasets only, not into "
                          f"data.name={cfg.data.name}; unset data.extra.path")


def _check_val_n(cfg: Config) -> None:
    """An explicit ``data.val_n`` must leave training images: the validation split is held out
    of the training split (unset, the run resolves :func:`~robustrain.data.split.default_val_n`)."""
    n_train = get_dataset_info(cfg.data.name).train_size
    if cfg.data.val_n is not None and cfg.data.val_n >= n_train:
        raise ConfigError(f"data.val_n={cfg.data.val_n} leaves no training image: {cfg.data.name} has {n_train} "
                          f"training images; use data.val_n<={n_train - 1} (default: {default_val_n(n_train)})")


def _check_batch_fits(cfg: Config) -> None:
    """With ``data.drop_last`` a batch larger than the training part (the training split less
    the ``data.val_n`` validation images) leaves no batch at all (the per-rank split under
    torchrun is checked again when the run is built)."""
    n_split = get_dataset_info(cfg.data.name).train_size
    val_n = cfg.data.val_n if cfg.data.val_n is not None else default_val_n(n_split)
    n_train = n_split - val_n
    if cfg.data.drop_last and cfg.data.batch_size > n_train:
        raise ConfigError(
            f"data.batch_size={cfg.data.batch_size} is larger than the {n_split} training images of {cfg.data.name} "
            f"less the data.val_n={val_n} held out to select best.pt with data.drop_last=true, so no batch "
            f"is left; use data.batch_size<={n_train} or data.drop_last=false"
        )


def _is_autoattack(name: str) -> bool:
    """AutoAttack names (aa, aa-plus, aa:apgd-ce+...) are not registry attacks; a malformed one
    is a config error."""
    try:
        return parse_autoattack_name(name) is not None
    except ValueError as e:
        raise ConfigError(f"eval.final_attacks: {e}") from None


def _check_names(cfg: Config) -> None:
    """Names that refer to registries must exist (checked here, before anything runs)."""
    checks = [
        *([] if cfg.data.name in STREAMING_DATASETS else [("data.name", cfg.data.name, DATASETS, "datasets")]),
        ("schedule.name", cfg.schedule.name, SCHEDULES, "schedules"),
        ("guard.attack", cfg.guard.attack, ATTACKS, "attacks"),
    ] + [("eval.attack", a, ATTACKS, "attacks") for a in (cfg.eval.attack,) if a != "natural"] + [
        ("eval.final_attacks", a, ATTACKS, "attacks") for a in cfg.eval.final_attacks
        if a != "natural" and not _is_autoattack(a)]
    for key, name, registry, listing in checks:
        try:
            # attack names have a grammar beyond the registry's keys (eot-pgd20x16)
            parse_attack_name(name) if registry is ATTACKS else registry.entry(name)
        except KeyError as e:
            raise ConfigError(f"{key}: {e.args[0]} (see `robustrain list {listing}`)") from None
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
