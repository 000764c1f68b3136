"""Typed, frozen configuration: dataclass schema (:mod:`~robustrain.config.schema`), YAML +
dotted overrides (:mod:`~robustrain.config.load`), and the one validation step that checks
registry names and keeps the typed component params (:mod:`~robustrain.config.validate`).

``ConfigError`` lives in :mod:`robustrain.utils.errors`."""

from robustrain.config.load import (
    CONFIG_DIR,
    config_to_dict,
    dump_config,
    load_config,
    parse_overrides,
)
from robustrain.config.schema import (
    AWPConfig,
    ComponentConfig,
    Config,
    DataConfig,
    EvalConfig,
    ExtraDataConfig,
    GuardConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    PluginConfig,
    TrainConfig,
)
from robustrain.config.validate import config_from_dict, upgrade_saved_config

__all__ = [
    "CONFIG_DIR",
    "AWPConfig",
    "ComponentConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ExtraDataConfig",
    "GuardConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "PluginConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "parse_overrides",
    "upgrade_saved_config",
]
