"""Typed, frozen configuration: dataclass schema (:mod:`~robustrain.config.schema`), YAML +
dotted overrides (:mod:`~robustrain.config.load`), and the one validation step that checks
registry names and keeps the typed component params (:mod:`~robustrain.config.validate`)."""

from robustrain.config.load import (
    CONFIG_DIR,
    ConfigError,
    coerce,
    config_from_dict,
    config_to_dict,
    dataclass_from_mapping,
    dump_config,
    load_config,
    parse_float,
    parse_overrides,
)
from robustrain.config.schema import (
    FINAL_ATTACKS,
    ComponentConfig,
    Config,
    MethodConfig,
    ModelConfig,
    PluginConfig,
    DataConfig,
    EvalConfig,
    ExtraDataConfig,
    AWPConfig,
    GuardConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from robustrain.config.validate import upgrade_saved_config

__all__ = [
    "CONFIG_DIR",
    "ComponentConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ExtraDataConfig",
    "MethodConfig",
    "ModelConfig",
    "PluginConfig",
    "FINAL_ATTACKS",
    "AWPConfig",
    "GuardConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "coerce",
    "config_from_dict",
    "upgrade_saved_config",
    "config_to_dict",
    "dataclass_from_mapping",
    "dump_config",
    "load_config",
    "parse_float",
    "parse_overrides",
]
