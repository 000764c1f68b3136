"""YAML + dotted ``key=value`` overrides -> a validated, frozen :class:`Config`.

Example:
    >>> from robustrain.config import load_config
    >>> cfg = load_config(None, ["method=trades", "method.beta=3", "train.epochs=2"])
    >>> cfg.method.name, cfg.method.params.beta, cfg.train.epochs
    ('trades', 3.0, 2)
    >>> type(cfg.method.params).__name__, cfg.method.params.steps  # typed, defaults filled in
    ('TRADESParams', 10)

Values are parsed as YAML scalars, and every float also accepts a fraction such as
``8/255`` (and must be finite). A config file must be UTF-8 text of at most
:data:`MAX_CONFIG_BYTES`; YAML aliases may not refer to themselves nor expand past
:data:`MAX_YAML_NODES` values (a "billion laughs" file is refused before it is expanded). Setting a component's name (``method=trades`` or ``method.name=trades``)
replaces that section, dropping parameters that belonged to the previous entry.

This module works on the plain nested dict (YAML, overrides, :func:`config_to_dict`); the
one validation step, :func:`~robustrain.config.validate.config_from_dict`, lives in
:mod:`robustrain.config.validate`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from robustrain.config.schema import COMPONENT_SECTIONS, ComponentConfig, Config, MethodConfig, PluginConfig
from robustrain.config.validate import coerce, config_from_dict, dataclass_from_mapping
from robustrain.utils.checks import one_line, short_repr
from robustrain.utils.errors import ConfigError
from robustrain.utils.runtime import check_device_available
from robustrain.utils.units import parse_number as parse_float

__all__ = [
    "CONFIG_DIR",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_NODES",
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

#: the largest config file read (a preset is under 2 KB)
MAX_CONFIG_BYTES = 1 << 20
#: the most values (mappings, lists and scalars, aliases expanded) one YAML document may hold
MAX_YAML_NODES = 10_000


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _check_yaml_size(root: yaml.Node, what: str) -> None:
    """Refuse a recursive alias or a document expanding to more than :data:`MAX_YAML_NODES`
    values (each alias counted as often as it is used), without expanding anything."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            on_path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[id(node)] > MAX_YAML_NODES:
                raise ConfigError(f"{what} expands to more than {MAX_YAML_NODES} YAML values (aliases such as *a "
                                  "repeat their anchor's content); a config holds a few sections: write it out plainly")
            continue
        if id(node) in sizes:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise ConfigError(f"{what} has a recursive YAML alias (an anchor used inside itself, line "
                                  f"{child.start_mark.line + 1}); write the value out plainly")
            if id(child) not in sizes:
                stack.append((child, False))


def _safe_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` with the size/recursion guard of :func:`_check_yaml_size`.

    Raises:
        yaml.YAMLError: not valid YAML.
        ConfigError: a recursive alias, too many values, or nesting too deep to parse.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_size(node, what)
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply to be a config") from None
    finally:
        loader.dispose()


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error as one short phrase with its line, e.g. ``expected ',' or ']' (line 2, column 1)``."""
    problem = getattr(e, "problem", None) or (str(e).splitlines() or ["invalid YAML"])[0]
    mark = getattr(e, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{problem}{where}"


def _read_config_text(p: Path) -> str:
    """The text of config file ``p``: an existing regular file of UTF-8 text.

    Raises:
        ConfigError: missing, a folder, unreadable, too large or not UTF-8 (one line each).
    """
    if p.is_dir():
        raise ConfigError(f"config file {p} is a folder, not a YAML file; give a file such as "
                          "configs/mini/uiat.yaml (see `robustrain list configs`)")
    if not p.is_file():
        if p.exists():
            raise ConfigError(f"config file {p} is not a regular file; give a YAML file")
        raise ConfigError(f"config file {p} does not exist (see `robustrain list configs`)")
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or type(e).__name__}; check that it "
                          "is readable") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {p} is larger than {MAX_CONFIG_BYTES >> 20} MiB; a config holds a few "
                          "sections (see `robustrain list configs`)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8") from None


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """A plain nested dict (YAML/JSON/checkpoint friendly) that round-trips exactly.

    Component sections are written flat, ``{"name": ..., **params}``, with every parameter
    spelled out (a composite method: the base's fields, then the plug-in's), so
    ``config_from_dict(config_to_dict(cfg)) == cfg``.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.name == "awp" and not v.enabled:
            continue  # off (the default): left out, so configs and fingerprints of runs without AWP are unchanged
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
            raise ConfigError(f"override {short_repr(item)} is not of the form key=value (e.g. train.epochs=5)")
        key, raw = item.split("=", 1)
        path = [p for p in key.strip().split(".")]
        if not all(path):
            raise ConfigError(f"override {short_repr(item)} has an empty key part")
        try:
            value = _safe_yaml(raw, f"override {key.strip()[:60]}") if raw.strip() else ""
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
        ConfigError: unknown key, wrong type or out-of-range value; missing, unreadable,
            non-UTF-8 or invalid YAML; a device this machine lacks (``train.device=cuda``
            without CUDA). One line of at most 300 characters.
    """
    try:
        return _load_config(path, overrides)
    except ConfigError as e:
        raise ConfigError(one_line(str(e))) from None


def _load_config(path: str | Path | None, overrides: Sequence[str]) -> Config:
    data: dict[str, Any] = config_to_dict(Config())
    if path is not None:
        p = Path(path)
        text = _read_config_text(p)
        try:
            loaded = _safe_yaml(text, f"config file {p}") or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {_yaml_problem(e)}") from None
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
    cfg = config_from_dict(data)
    # a new run's device must exist here (a saved run's config is read anywhere: config_from_dict
    # checks only the form of train.device)
    check_device_available(cfg.train.device, "train.device")
    return cfg
