"""YAML + dotted ``key=value`` overrides -> a validated, frozen :class:`Config`.

Example:
    >>> from robustrain.config import load_config
    >>> cfg = load_config(None, ["method=trades", "method.beta=3", "train.epochs=2"])
    >>> cfg.method.name, cfg.method.params.beta, cfg.train.epochs
    ('trades', 3.0, 2)
    >>> type(cfg.method.params).__name__, cfg.method.params.steps  # typed, defaults filled in
    ('TRADESParams', 10)

Values are parsed as YAML scalars, and every float also accepts a fraction such as
``8/255``. Setting a component's name (``method=trades`` or ``method.name=trades``)
replaces that section, dropping parameters that belonged to the previous entry.

This module works on the plain nested dict (YAML, overrides, :func:`config_to_dict`); the
one validation step, :func:`~robustrain.config.validate.config_from_dict`, lives in
:mod:`robustrain.config.validate`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from robustrain.config.schema import COMPONENT_SECTIONS, ComponentConfig, Config, MethodConfig, PluginConfig
from robustrain.config.validate import coerce, config_from_dict, dataclass_from_mapping
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


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """A plain nested dict (YAML/JSON/checkpoint friendly) that round-trips exactly.

    Component sections are written flat, ``{"name": ..., **params}``, with every parameter
    spelled out (a composite method: the base's fields, then the plug-in's), so
    ``config_from_dict(config_to_dict(cfg)) == cfg``.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, (MethodConfig, PluginConfig)):
            out[f.name] = {"name": v.name, **_method_params_dict(v)}
        elif isinstance(v, ComponentConfig):
            out[f.name] = {"name": v.name, **dict(v.params)}
        elif dataclasses.is_dataclass(v):
            out[f.name] = _section_to_dict(v)
        else:
            out[f.name] = v
    return out


def _method_params_dict(section: MethodConfig | PluginConfig) -> dict[str, Any]:
    """The method section's params as flat ``{field: value}`` (base, then plug-in)."""
    parts = [section.base.params, section.plugin] if isinstance(section, PluginConfig) else [section.params]
    out: dict[str, Any] = {}
    for p in parts:
        out.update(dict(p) if isinstance(p, Mapping) else dataclasses.asdict(p))
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
    if head in COMPONENT_SECTIONS and (len(path) == 1 or path[1:] == ["name"]):
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
            if key in COMPONENT_SECTIONS:
                data[key] = value  # a component section replaces the default entry whole
            elif isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
    for keys, value in parse_overrides(overrides):
        _apply(data, keys, value)
    return config_from_dict(data)
