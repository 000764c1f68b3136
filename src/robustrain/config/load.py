"""YAML + dotted ``key=value`` overrides -> a validated, frozen :class:`Config`.

Example:
    >>> from robustrain.config import load_config
    >>> cfg = load_config(None, ["method=trades", "method.beta=3", "train.epochs=2"])
    >>> cfg.method.name, cfg.method.params["beta"], cfg.train.epochs
    ('trades', 3.0, 2)

Values are parsed as YAML scalars, and every float also accepts a fraction such as
``8/255``. Setting a component's name (``method=trades`` or ``method.name=trades``)
replaces that section, dropping parameters that belonged to the previous entry.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from robustrain.config.schema import ComponentConfig, Config
from robustrain.utils.errors import ConfigError
from robustrain.utils.units import parse_number as parse_float

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "parse_float",
    "parse_overrides",
    "coerce",
    "dataclass_from_mapping",
    "dump_config",
]

#: the YAML presets shipped inside the package (``configs/`` in a source checkout links here;
#: each file's header gives its command): the paper's rows, the cifar10-mini proxies
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


_COMPONENTS = ("model", "method")


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint`` of ``key`` and convert where lossless."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
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
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in (p.strip() for p in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        elem = args[0] if args else Any
        return tuple(coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        return parse_float(value, key)
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def dataclass_from_mapping(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and bad types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; valid keys under {prefix.rstrip('.') or 'the top level'}: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):  # a sub-section, e.g. data.extra
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name}: expected a mapping, got {value!r}")
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
    """(type hints, defaults) of a registry entry's parameters."""
    if section == "model":
        from robustrain.models import model_params

        defaults = model_params(name)
        # a model factory's keyword defaults give the types (None: anything goes)
        hints = {k: Any if v is None else type(v) for k, v in defaults.items()}
        # every model takes an activation (relu | silu; SiLU in the extra-data setting)
        return {"activation": str, **hints}, {"activation": "relu", **defaults}
    from robustrain.methods import method_params

    params_cls = method_params(name)
    fields = dataclasses.fields(params_cls)
    hints = typing.get_type_hints(params_cls)
    return {f.name: hints[f.name] for f in fields}, {
        f.name: f.default for f in fields if f.default is not dataclasses.MISSING
    }


def _build_component(section: str, data: Mapping[str, Any] | str) -> ComponentConfig:
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: expected a mapping with a 'name', got {data!r}")
    data = dict(data)
    name = data.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{section}.name is required (see `robustrain list {section}s`)")
    try:
        hints, _ = _component_schema(section, name)
    except KeyError as e:
        raise ConfigError(f"{section}.name: {e.args[0]}") from None
    params = {}
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(
                f"unknown key {section}.{key} for {section} {name!r}; valid keys: "
                f"{', '.join(sorted(hints)) or '(none)'}"
            )
        params[key] = coerce(value, hints[key], f"{section}.{key}")
    if section == "method":
        from robustrain.methods import method_params

        from robustrain.methods import METHODS

        try:
            checked = method_params(name)(**params)  # runs the Params' own range checks now
            # checks beyond one field (e.g. HAT's required helper path)
            METHODS.get(name).check_config(checked)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"method {name!r}: {e}") from None
    return ComponentConfig(name, params)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Validate a nested mapping (as read from YAML) into a :class:`Config`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    top = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - set(top))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]}; valid top-level keys: {', '.join(sorted(top))}")
    hints = typing.get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if name in _COMPONENTS:
            kwargs[name] = _build_component(name, value)
        elif dataclasses.is_dataclass(hint):
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name}: expected a mapping, got {value!r}")
            kwargs[name] = dataclass_from_mapping(hint, value, f"{name}.")
        else:
            kwargs[name] = coerce(value, hint, name)
    try:
        cfg = Config(**kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_names(cfg)
    return cfg


def _is_autoattack(name: str) -> bool:
    """AutoAttack names (aa, aa-plus, aa:apgd-ce+...) are not registry attacks; a malformed one
    is a config error."""
    from robustrain.attacks.autoattack import parse_autoattack_name

    try:
        return parse_autoattack_name(name) is not None
    except ValueError as e:
        raise ConfigError(f"eval.final_attacks: {e}") from None


def _check_names(cfg: Config) -> None:
    """Names that refer to registries must exist (checked here, before anything runs)."""
    from robustrain.attacks import ATTACKS
    from robustrain.data import DATASETS
    from robustrain.schedules import SCHEDULES

    checks = [
        ("data.name", cfg.data.name, DATASETS, "datasets"),
        ("schedule.name", cfg.schedule.name, SCHEDULES, "schedules"),
        ("guard.attack", cfg.guard.attack, ATTACKS, "attacks"),
    ] + [("eval.attack", a, ATTACKS, "attacks") for a in (cfg.eval.attack,) if a != "natural"] + [
        ("eval.final_attacks", a, ATTACKS, "attacks") for a in cfg.eval.final_attacks
        if a != "natural" and not _is_autoattack(a)]
    for key, name, registry, listing in checks:
        if name not in registry:
            try:
                registry.entry(name)
            except KeyError as e:
                raise ConfigError(f"{key}: {e.args[0]} (see `robustrain list {listing}`)") from None


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """A plain nested dict (YAML/JSON/checkpoint friendly) that round-trips exactly."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, ComponentConfig):
            out[f.name] = {"name": v.name, **dict(v.params)}
        elif dataclasses.is_dataclass(v):
            out[f.name] = _section_to_dict(v)
        else:
            out[f.name] = v
    return out


def _section_to_dict(section: Any) -> dict[str, Any]:
    """A section dataclass as a plain dict; sub-sections (``data.extra``) nest."""
    out: dict[str, Any] = {}
    for k in dataclasses.fields(section):
        x = getattr(section, k.name)
        out[k.name] = _section_to_dict(x) if dataclasses.is_dataclass(x) else (list(x) if isinstance(x, tuple) else x)
    return out


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``["a.b=1", ...]`` -> ``[(["a", "b"], 1), ...]`` with YAML-parsed values."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=5)")
        key, raw = item.split("=", 1)
        path = [p for p in key.strip().split(".")]
        if not all(path):
            raise ConfigError(f"override {item!r} has an empty key part")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parsed.append((path, value))
    return parsed


def _apply(data: dict[str, Any], path: list[str], value: Any) -> None:
    head = path[0]
    if head in _COMPONENTS and (len(path) == 1 or path[1:] == ["name"]):
        data[head] = {"name": value}  # a new entry: the previous entry's params do not apply
        return
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a section")
        node = child
    node[path[-1]] = value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or start from the defaults) and apply ``key=value`` overrides.

    Args:
        path: YAML file; ``None`` starts from :class:`Config`'s defaults (the main job).
        overrides: dotted overrides such as ``train.epochs=5`` or ``method.eps=8/255``.

    Raises:
        ConfigError: unknown key, wrong type or out-of-range value; missing/invalid YAML.
    """
    data: dict[str, Any] = config_to_dict(Config())
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist (see `robustrain list configs`)")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections")
        for key, value in loaded.items():
            if key in _COMPONENTS:
                data[key] = value  # a component section replaces the default entry whole
            elif isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
    for keys, value in parse_overrides(overrides):
        _apply(data, keys, value)
    return config_from_dict(data)
