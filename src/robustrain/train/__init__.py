"""The trainer loop, schedules, EMA, checkpoints and run logging."""

from robustrain.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robustrain.train.ema import EMA
from robustrain.schedules import SCHEDULES, lr_at

__all__ = [
    "EMA",
    "SCHEDULES",
    "CheckpointError",
    "NonFiniteLossError",
    "RunExistsError",
    "build_model",
    "fit",
    "load_checkpoint",
    "lr_at",
    "save_checkpoint",
]


def __getattr__(name: str):
    # the trainer pulls in data/models/methods; import it lazily so `robustrain.train.schedules`
    # stays importable from the config layer without a cycle
    if name in ("fit", "build_model", "NonFiniteLossError", "RunExistsError", "resolve_device", "seed_everything"):
        from robustrain.train import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
