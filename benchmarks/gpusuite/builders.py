"""The objects every part builds on the suite's device: a model, a training batch, a method
context, a compiled model, the test images, a briefly pre-trained model, and the ImageNet-size
model, batch and PGD-AT of part 2's ResNet-50 rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from _common import make_optimizer, train_step_fn
from robustrain.config import CONFIG_DIR, load_config
from robustrain.data import Batch, DeviceLoader, load_split
from robustrain.data.streaming import IMAGENET_MEAN, IMAGENET_STD
from robustrain.methods import Method, MethodContext, create_method
from robustrain.models import create_model
from robustrain.train.loop import COMPILE_OPTIONS

from .suite import DATASET, Suite

__all__ = ["EPOCHS", "IMAGENET_CLASSES", "IMAGENET_PRESET", "METHOD_ROWS", "new_model", "train_batch", "method_ctx",
           "compile_model", "test_images", "pretrain", "imagenet_model", "imagenet_batch", "imagenet_method"]

EPOCHS = 100  # the run length methods are told in the speed rows (phases are fractions of it)
#: the methods of the speed rows and the host-sync check: name@f = the method at fraction f of a
#: 100-epoch run (T = 0.75, T' = 0.8); without @f: 0.9
METHOD_ROWS = ("pgd_at", "trades", "uiat", "uiat_oneoff@0.5", "uiat_oneoff@0.9", "n_fgsm",
               "n_fgsm+uiat@0.5", "n_fgsm+uiat@0.9", "pgd_at+awp", "trades+awp")


#: the ImageNet rows train as this preset does (its method section: PGD-3 at 4/255, bf16, channels_last)
IMAGENET_PRESET = CONFIG_DIR / "imagenet" / "pgd_at_resnet50.yaml"
IMAGENET_CLASSES = 1000


def new_model(suite: Suite, name: str | None = None, kwargs: dict | None = None, seed: int = 0) -> nn.Module:
    """A fresh model (default: the scale's main model) on the suite's device."""
    torch.manual_seed(seed)
    name = name or suite.scale.model
    kw = suite.scale.model_kwargs if kwargs is None else kwargs
    info = suite.info
    return create_model(name, info.num_classes, mean=info.mean, std=info.std,
                        in_channels=info.image_shape[0], **kw).to(suite.device)


def train_batch(suite: Suite, batch_size: int, seed: int = 0) -> tuple[Batch, int]:
    """The first (unaugmented) training batch of cifar10-mini, and the loader's number of ids."""
    images, labels = load_split(DATASET, "train")
    loader = DeviceLoader(images, labels, batch_size, augment=False, drop_last=True, seed=seed, device=suite.device)
    loader.set_epoch(0)
    return next(iter(loader)), loader.num_ids


def method_ctx(suite: Suite, num_ids: int) -> MethodContext:
    return MethodContext(suite.info.num_classes, tuple(suite.info.image_shape), num_ids, EPOCHS)


def compile_model(suite: Suite, model: nn.Module) -> nn.Module:
    """``torch.compile`` with the trainer's options and the scale's backend."""
    # Dynamo's recompile limit (8) counts the graphs of every model instance sharing one
    # forward code object: the suite compiles several models in one process (the trainer
    # compiles one), so raise it, or later settings would silently fall back to eager
    import torch._dynamo

    for key, value in (("recompile_limit", 64), ("cache_size_limit", 64), ("accumulated_recompile_limit", 1024)):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), value))
    return torch.compile(model, backend=suite.scale.compile_backend, **COMPILE_OPTIONS)


def test_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images of cifar10-mini (uint8) and labels; 0 = all."""
    x, y = load_split(DATASET, "test")
    n = n or int(x.shape[0])
    return x[:n], y[:n]


def pretrain(suite: Suite, model: nn.Module, steps: int) -> None:
    """A few PGD-AT steps so that accuracies are not trivially 0 (lr 0.05)."""
    batch, num_ids = train_batch(suite, suite.scale.batches[0])
    method = create_method("pgd_at", method_ctx(suite, num_ids)).to(suite.device)
    step = train_step_fn(method, model, make_optimizer(model, suite.device, lr=0.05), batch, bf16=False,
                         device=suite.device)
    for _ in range(steps):
        step()


def imagenet_model(suite: Suite, name: str, kwargs: dict, px: int, seed: int = 0) -> nn.Module:
    """An ImageNet classifier (1000 classes, ImageNet mean/std, ``px`` x ``px`` inputs) on the device."""
    torch.manual_seed(seed)
    return create_model(name, IMAGENET_CLASSES, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=(px, px),
                        **kwargs).to(suite.device)


def imagenet_batch(suite: Suite, batch_size: int, px: int) -> tuple[Batch, int]:
    """cifar10-mini's first training batch upsampled (bilinear) to ``px``: the step's cost depends
    on the shape, not on the pixels (labels stay < 10 of the 1000 classes)."""
    batch, num_ids = train_batch(suite, batch_size)
    x = F.interpolate(batch.x, size=(px, px), mode="bilinear", align_corners=False).clamp_(0, 1)
    return batch._replace(x=x), num_ids


def imagenet_method(suite: Suite, num_ids: int, px: int) -> Method:
    """PGD-AT with the method section of :data:`IMAGENET_PRESET` (kept in step with the preset)."""
    cfg = load_config(str(IMAGENET_PRESET))
    ctx = MethodContext(IMAGENET_CLASSES, (3, px, px), num_ids, EPOCHS)
    return create_method(cfg.method.name, ctx, cfg.method.params).to(suite.device)
