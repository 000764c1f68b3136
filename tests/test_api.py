"""The public surface: what each package exports through ``__all__`` (issue 22, "A public API
people can read").

A package exports what a user of that package calls and re-exports nothing from another package
or layer: every exported class and function is defined inside the package (constants such as
``FORMAT`` or registries such as ``METHODS`` are exempt from that check). Everything else is
imported from its home module (``from robustrain.utils.errors import ConfigError``,
``from robustrain.artifacts.checkpoint import rng_state``, ``from robustrain.methods.at import
PGDAT``). Changing a list below is a decision about the API: make it here, visibly.

Size of the surface, the sum of the package-level ``__all__`` lengths measured with ``ast``:

- before the house pass (commit 2e40f9c): 353 names across 15 packages;
- after it (commit 968787e): 184 across 16 (``robustrain.attacks.autoattack`` became a subpackage):
  artifacts 21 -> 12, attacks 27 -> 17, cli 5 -> 2, config 25 -> 19, data 40 -> 17, eval 18 -> 12,
  eval.audit 14 -> 11, eval.figures 22 -> 4, methods 54 -> 15, methods.inverse 14, models 14 -> 9,
  reproduce 38 -> 13, train 27 -> 8, utils 33 -> 19, robustrain 1;
- with issues 20 and 21: 217 across 18 (new: data.streaming 17, train.trackers 6; additions:
  attacks +3 EOT/BPDA, data +5 and artifacts +1 evaluation of streaming-trained models, utils +1
  MissingExtraError).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import robustrain

SRC = Path(robustrain.__file__).parent

#: package -> its exact ``__all__``
PUBLIC = {
    "robustrain": {"__version__"},
    "robustrain.artifacts": {
        "FORMAT", "LoadedModel", "ModelSpec", "RunDir", "check_dataset", "checkpoint_file", "eval_data", "export_model",
        "load_checkpoint", "load_model", "read_export_info", "read_metrics", "save_checkpoint",
    },
    "robustrain.cli": {"build_parser", "main"},
    "robustrain.config": {
        "AWPConfig", "CONFIG_DIR", "ComponentConfig", "Config", "DataConfig", "EvalConfig", "ExtraDataConfig",
        "GuardConfig", "MethodConfig", "ModelConfig", "OptimConfig", "PluginConfig", "TrainConfig", "config_from_dict", "config_to_dict", "dump_config", "load_config", "parse_overrides",
        "upgrade_saved_config",
    },
    "robustrain.data": {
        "Batch", "DATASETS", "DatasetInfo", "DatasetSpec", "DeviceLoader", "Download", "EvalData", "EvalSplit",
        "MixedLoader", "eval_data_info", "eval_labels", "load_eval_split",
        "download_dataset", "get_dataset_info", "load_extra_data", "load_split", "make_loaders",
        "make_synthetic", "register_dataset", "save_extra_data", "to_unit_float", "validation_split",
    },
    "robustrain.data.streaming": {
        "BatchPlanSampler", "IMAGENET_MEAN", "IMAGENET_STD", "ImageFolderSource", "ImageSource", "PillowMissingError",
        "STREAMING_DATASETS", "ShardSource", "StreamingLoader", "decode_images", "epoch_plan", "expand_pattern",
        "open_imagefolder", "open_shards", "open_streaming", "streaming_info", "write_shards",
    },
    "robustrain.eval": {
        "EvalFiles", "EvalRecord", "PROTOCOL", "RobustEvaluation", "SavedEvaluation", "build_eval_attacks",
        "describe_protocol", "eval_files", "evaluate_checkpoint", "evaluate_robustness", "evaluate_saved",
        "format_table",
    },
    "robustrain.eval.audit": {
        "AuditReport", "AuditSettings", "CheckResult", "FAIL", "PASS", "Thresholds", "WARN", "format_markdown",
        "format_text", "run_audit", "write_report",
    },
    "robustrain.eval.figures": {"ANALYSES", "Analysis", "Arg", "analysis_description"},
    "robustrain.methods": {
        "LossOutput", "METHODS", "Method", "MethodContext", "PLUGINS", "create_method", "inverse_loss",
        "mart_loss", "method_fields", "method_names", "method_params", "split_method_name", "trades_loss",
        "uiat_loss", "uiat_regulariser",
    },
    "robustrain.methods.inverse": {
        "IAT", "IATParams", "InverseParams", "InverseTargets", "UIAT", "UIATOneOff", "UIATOneOffParams",
        "UIATParams", "UIATPlugin", "UIATPluginParams", "apply_universal_perturbation", "epoch_from_fraction",
        "momentum_update", "universal_sign_step",
    },
    "robustrain.models": {
        "Classifier", "EMA", "MODELS", "Normalize", "NormalizedClassifier", "create_model",
        "logits_and_features", "model_params", "register_model",
    },
    "robustrain.reproduce": {
        "Plan", "ReproduceOptions", "SCALES", "TABLES", "build_plan", "check_ready", "collect_results",
        "format_plan", "format_tables", "load_paper_tables", "parse_extra_data", "render_markdown", "run_plan",
    },
    "robustrain.train": {
        "AWP", "BestCheckpoint", "Callback", "OverfitGuard", "TrainState", "default_callbacks", "fit",
        "train_one_epoch",
    },
    "robustrain.train.trackers": {
        "TRACKERS", "Tracker", "TrackerRun", "Trackers", "check_trackers", "register_tracker",
    },
    "robustrain.utils": {
        "CheckpointError", "ConfigError", "DatasetFileError", "DiskFullError", "DownloadError", "MissingExtraError",
        "NonFiniteLossError", "PlotDependencyError", "Registry", "ReproduceError", "RobustrainError",
        "RunExistsError", "RunFolderError", "RunLockedError", "UsageError", "format_eps", "fp32_eval",
        "parse_number", "resolve_device", "seed_everything",
    },
    "robustrain.attacks": {
        "ATTACKS", "AutoAttackResult", "AutoAttackSpec", "BPDA", "CW", "EOTPGD", "FGSM", "Inverse", "PGD", "bn_mode",
        "ce_loss", "create_attack", "cw_inf", "eot_pgd", "fgsm", "margin_loss", "neg_margin_loss",
        "parse_autoattack_name", "pgd", "run_autoattack",
    },
    "robustrain.attacks.autoattack": {
        "AA_ATTACKS", "AA_NORMS", "AA_VERSIONS", "AutoAttackResult", "AutoAttackSpec", "autoattack",
        "canonical_norm", "default_eps", "parse_autoattack_name", "require_pyautoattack", "run_autoattack",
    },
}

def _packages() -> list[str]:
    """Every package of robustrain (a folder with an ``__init__.py``), dotted."""
    return sorted(".".join(("robustrain", *p.parent.relative_to(SRC).parts))
                  for p in SRC.rglob("__init__.py"))


def test_every_package_is_pinned():
    """A new package gets an entry here, or the test says so."""
    found = set(_packages())
    assert found == set(PUBLIC), {"not pinned": sorted(found - set(PUBLIC)),
                                  "no such package": sorted(set(PUBLIC) - found)}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_surface_is_pinned(package):
    exported = importlib.import_module(package).__all__
    assert len(exported) == len(set(exported)), f"{package}.__all__ lists a name twice"
    assert set(exported) == PUBLIC[package], {
        "exported but not pinned": sorted(set(exported) - PUBLIC[package]),
        "pinned but not exported": sorted(PUBLIC[package] - set(exported)),
    }


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_exports_are_defined_in_the_package(package):
    """No re-export from another package or layer: each exported class and function lives in
    ``package`` or one of its modules (constants and registry instances are exempt)."""
    module = importlib.import_module(package)
    foreign = {}
    for name in module.__all__:
        obj = getattr(module, name)  # an exported name that does not exist fails here
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        home = obj.__module__
        if home != package and not home.startswith(package + "."):
            foreign[name] = home
    assert not foreign, f"{package} re-exports {foreign}: import these from their own package"
