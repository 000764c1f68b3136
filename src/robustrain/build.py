"""Layer 5: build a run from a validated :class:`~robustrain.config.Config`.

:func:`build_run` turns a config into the objects the training loop works on (:class:`Run`):
model (dataset normalisation composed in front), method, optimiser, EMA, the training loader
(sharded under DDP, mixed with generated data when ``data.extra`` is set), and the three image
sets the loop evaluates on: the validation split that selects ``best.pt`` (``data.val_n`` images
held out of the TRAINING split with a fixed split seed, issue 13: never test images), the full
test split for the final table, and the fixed training batch of the catastrophic-overfitting
guard (from the training part). Data and model errors surface here, before the run folder is
touched.

The training loader iterates the training part only, but ``Batch.idx`` keeps ids into the
ORIGINAL training split (``DeviceLoader(indices=...)``), so per-sample method buffers sized
``MethodContext.num_train`` = N (+ generated images) stay valid; validation ids never occur.

Streaming datasets (``data.name=imagefolder`` / ``webdataset``, :mod:`robustrain.data.streaming`)
keep the same protocol: the validation split is held out of the training images by their labels
(read from the folder names or the shards' ``.cls``, no image decoded), the training loader is a
:class:`~robustrain.data.streaming.StreamingLoader` over the training part (decoding in
``data.workers`` processes), and the fixed image sets (validation, guard, the first
``eval.final_n`` test images) are decoded once, with the evaluation view, into uint8 tensors.

Example:
    >>> from robustrain.config import load_config
    >>> cfg = load_config(None, ["data.name=synthetic", "method=standard", "model.width=4", "eval.n=32"])
    >>> run = build_run(cfg)
    >>> type(run.model).__name__, run.eval_x.shape[0], run.spec.dataset
    ('NormalizedClassifier', 32, 'synthetic')
    >>> run.selection["split"], run.selection["n_held_out"], run.selection["n_evaluated"]
    ('validation', 51, 32)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from robustrain.artifacts import ModelSpec
from robustrain.config import Config
from robustrain.data import (
    DeviceLoader, EvalData, MixedLoader, get_dataset_info, load_extra_data, load_split, validation_split,
)
from robustrain.data.evaluation import decode_test_images
from robustrain.data.info import DatasetInfo
from robustrain.data.split import SPLIT_SEED, ValidationSplit, default_val_n
from robustrain.data.streaming import (
    STREAMING_DATASETS, StreamingLoader, decode_images, open_streaming, streaming_info,
)
from robustrain.methods import Method, MethodContext, create_method
from robustrain.methods.sample_state import SampleStatePolicy
from robustrain.models import EMA
from robustrain.utils import distributed as ddp
from robustrain.utils.errors import ConfigError
from robustrain.utils.runtime import free_memory, host_available_memory, resolve_device, seed_everything

__all__ = ["Run", "build_model", "build_run", "model_spec"]


def model_spec(cfg: Config, info: DatasetInfo | None = None) -> ModelSpec:
    """The :class:`~robustrain.artifacts.ModelSpec` of ``cfg``'s model on ``cfg``'s dataset
    (``info``: the dataset's description when it is not a registry entry, e.g. a streaming
    dataset opened at ``data.root``)."""
    if info is None:
        return ModelSpec.for_dataset(cfg.model.name, dict(cfg.model.params), cfg.data.name)
    return ModelSpec(model=cfg.model.name, params=dict(cfg.model.params), num_classes=info.num_classes,
                     image_shape=tuple(info.image_shape), mean=tuple(info.mean), std=tuple(info.std),
                     dataset=cfg.data.name)


def build_model(cfg: Config, device: torch.device | str = "cpu") -> nn.Module:
    """The [0,1]-input model of ``cfg`` (dataset normalisation composed in front)."""
    return model_spec(cfg).build(device)


@dataclass
class Run:
    """Everything the training loop works on; built by :func:`build_run`.

    Attributes:
        cfg: the run's config.
        device: where training runs.
        spec: how ``model`` was built (stored in every checkpoint as its model card).
        model: the [0,1]-input model (not DDP-wrapped, not compiled).
        method: the training method (a stateful loss module).
        optimizer: SGD over ``model``'s parameters.
        ema: the weight average, or None.
        loader: the training batches (``Batch(x, y, idx)``), a function of (seed, epoch).
        eval_x, eval_y: the validation images that select ``best.pt``: the first
            ``min(eval.n, data.val_n)`` of the validation split held out of the training split.
        test_x, test_y: the whole test split (the final table uses its first ``eval.final_n``).
        guard_x, guard_y: the fixed batch of the catastrophic-overfitting guard (the first
            ``guard.n`` images of the training part, never validation images).
        train_ids, val_ids: sorted ids into the original training split of the images trained
            on and of the validation split (disjoint; ``Batch.idx`` are ``train_ids``).
        selection: the selection protocol, as ``summary.json`` states it (split, sizes, seed).
    """

    cfg: Config
    device: torch.device
    spec: ModelSpec
    model: nn.Module
    method: Method
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    loader: DeviceLoader | MixedLoader | StreamingLoader
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    guard_x: torch.Tensor
    guard_y: torch.Tensor
    train_ids: torch.Tensor
    val_ids: torch.Tensor
    selection: dict

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluated: the EMA when on, else the model."""
        return self.ema.module if self.ema is not None else self.model


def _check_batch_fits(cfg: Config, n_train: int) -> None:
    """With ``drop_last`` a batch larger than the (per-rank) training split leaves no batch at
    all: a config error, raised before the model is built or anything written.

    Raises:
        ConfigError: no full batch.
    """
    world = ddp.get_world_size()
    per_rank = n_train if world == 1 else n_train // world
    if cfg.data.drop_last and per_rank // cfg.data.batch_size == 0:
        where = f"the {n_train} training images of {cfg.data.name}" + (f" over {world} ranks" if world > 1 else "")
        raise ConfigError(
            f"data.batch_size={cfg.data.batch_size} is larger than {where} with data.drop_last=true, so no batch "
            f"is left; use data.batch_size<={per_rank} or data.drop_last=false"
        )


class _Data(NamedTuple):
    """The data side of a run: what :func:`build_run` takes from an in-memory or a streaming dataset."""

    info: DatasetInfo
    loader: DeviceLoader | MixedLoader | StreamingLoader
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    guard_x: torch.Tensor
    guard_y: torch.Tensor
    split: ValidationSplit
    val_n: int
    num_ids: int  # the id space of Batch.idx: training split (+ generated images)


def _split(cfg: Config, labels: torch.Tensor) -> tuple[ValidationSplit, int]:
    """The validation split held out of the training split (``data.val_n``), checked."""
    val_n = cfg.data.val_n if cfg.data.val_n is not None else default_val_n(int(labels.shape[0]))
    try:
        # the same held-out images for every method and seed: a fixed split seed, not cfg.seed
        split = validation_split(labels, val_n, seed=SPLIT_SEED)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_batch_fits(cfg, int(split.train_ids.shape[0]))
    return split, val_n


def _in_memory_data(cfg: Config, device: torch.device) -> _Data:
    """A registry dataset held on the device (:class:`DeviceLoader`, or :class:`MixedLoader` with ``data.extra``)."""
    info = get_dataset_info(cfg.data.name)
    train_x, train_y = load_split(cfg.data.name, "train", root=cfg.data.root, download=cfg.data.download)
    test_x, test_y = load_split(cfg.data.name, "test", root=cfg.data.root, download=cfg.data.download)
    n_split = int(train_x.shape[0])
    split, val_n = _split(cfg, train_y)
    extra = None
    if cfg.data.extra.path is not None:
        # generated images (data.extra): memory-mapped and validated here, before anything is written
        extra = load_extra_data(cfg.data.extra.path, image_shape=info.image_shape, num_classes=info.num_classes)
    loader = DeviceLoader(
        train_x,
        train_y,
        cfg.data.batch_size,
        shuffle=True,
        # each dataset's standard augmentation: crop(pad 4)+flip for CIFAR, none for digits
        augment=cfg.data.augment and (info.aug_pad > 0 or info.aug_flip),
        pad=info.aug_pad,
        flip=info.aug_flip,
        drop_last=cfg.data.drop_last,
        seed=cfg.seed,
        device=device,
        indices=split.train_ids,  # the training part; Batch.idx stays an id into the whole split
        rank=ddp.get_rank(),  # DDP: this rank's shard of every global batch
        world_size=ddp.get_world_size(),
    )
    if len(loader) == 0:  # _check_batch_fits caught it already
        _check_batch_fits(cfg, 0)
    if extra is not None:
        # ratio originals + generated per batch; epoch = one original-split equivalent
        loader = MixedLoader(loader, extra.images, extra.labels, ratio=cfg.data.extra.ratio)
    eval_ids = split.val_ids[: min(cfg.eval.n, val_n)]
    guard_ids = split.train_ids[: min(cfg.guard.n, int(split.train_ids.shape[0]))]
    # ids stay those of the whole training split (validation ids are simply never seen);
    # generated samples have ids N.. N+M-1 (MixedLoader): per-sample buffers cover them
    num_ids = n_split + (len(extra) if extra is not None else 0)
    return _Data(info, loader, train_x[eval_ids], train_y[eval_ids], test_x, test_y, train_x[guard_ids],
                 train_y[guard_ids], split, val_n, num_ids)


def _streaming_data(cfg: Config, device: torch.device) -> _Data:
    """An image folder or tar shards at ``data.root``, decoded in workers (:mod:`robustrain.data.streaming`).

    The fixed image sets are decoded here, once, with the evaluation view: the first ``eval.n``
    validation images, the first ``guard.n`` training images and the first ``eval.final_n`` test
    images (all of them when 0: set it on ImageNet, e.g. 5000 as RobustBench).
    """
    d = cfg.data
    train_src = open_streaming(d.name, d.root, "train", test_root=d.test_root)
    test_src = open_streaming(d.name, d.root, "test", test_root=d.test_root)
    info = streaming_info(d.name, train_src, test_src, d.image_size)
    split, val_n = _split(cfg, train_src.labels)
    views = dict(image_size=d.image_size, resize=d.resize, workers=d.workers, batch_size=d.eval_batch_size,
                 on_corrupt=d.on_corrupt)
    eval_x, eval_y, _ = decode_images(train_src, split.val_ids[: min(cfg.eval.n, val_n)], **views)
    guard_x, guard_y, _ = decode_images(train_src, split.train_ids[: min(cfg.guard.n, int(split.train_ids.shape[0]))],
                                        **views)
    # the first eval.final_n test images, decoded as `robustrain eval` decodes them (the same pixels)
    test_x, test_y = decode_test_images(test_src, cfg.eval.final_n or None, EvalData.from_section(asdict(d)))
    loader = StreamingLoader(
        train_src, d.batch_size, train=d.augment, image_size=d.image_size, resize=d.resize, shuffle=True,
        drop_last=d.drop_last, seed=cfg.seed, indices=split.train_ids, rank=ddp.get_rank(),
        world_size=ddp.get_world_size(), workers=d.workers, device=device, on_corrupt=d.on_corrupt,
    )
    return _Data(info, loader, eval_x, eval_y, test_x, test_y, guard_x, guard_y, split, val_n, len(train_src))


def build_run(cfg: Config) -> Run:
    """Build model, method, optimiser, EMA, loaders and evaluation splits of ``cfg``.

    Seeds every RNG with ``cfg.seed`` first, so the same config builds the same run.

    Raises:
        ConfigError: a batch size that leaves no training batch.
        DatasetFileError: missing or corrupt dataset files.
        PillowMissingError: a streaming dataset without Pillow installed.
    """
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.seed)
    # two kinds of data source, not one branch per dataset: each kind has its registry
    streaming = cfg.data.name in STREAMING_DATASETS
    data = _streaming_data(cfg, device) if streaming else _in_memory_data(cfg, device)
    info = data.info
    spec = model_spec(cfg, info if streaming else None)
    model = spec.build(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ctx = MethodContext(
        num_classes=info.num_classes,
        image_shape=tuple(info.image_shape),
        num_train=data.num_ids,
        epochs=cfg.train.epochs,
        # per-sample tables (N x C) are stored as train.sample_state says, made on the device
        sample_state=SampleStatePolicy(cfg.train.sample_state, device, free_memory(device), host_available_memory()),
    )
    method = create_method(cfg.method.name, ctx, cfg.method.params).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        nesterov=cfg.optim.nesterov,
        weight_decay=cfg.optim.weight_decay,
        # fused: the whole SGD update in one CUDA kernel (on CPU the default loop is as fast
        # for these sizes)
        **({"fused": True} if device.type == "cuda" else {}),
    )
    ema = EMA(model, cfg.train.ema_decay) if cfg.train.ema else None
    split = data.split
    selection = {
        "split": "validation",
        "source": f"held out of the {cfg.data.name} training split (never test images)",
        "n_held_out": data.val_n,
        "n_evaluated": int(data.eval_x.shape[0]),
        "n_train": int(split.train_ids.shape[0]),
        "seed": split.seed,
        "metric": cfg.eval.attack,
    }
    return Run(cfg, device, spec, model, method, optimizer, ema, data.loader, data.eval_x, data.eval_y,
               data.test_x, data.test_y, data.guard_x, data.guard_y, split.train_ids, split.val_ids, selection)
