"""The typed, frozen run configuration.

A run is fully described by :class:`Config`. YAML files and dotted ``key=value`` overrides
are resolved into it by :func:`robustrain.config.load_config`; unknown keys and invalid
values are rejected there, before anything runs or is written. The defaults below are the
project's *main job*: a robust small CNN on ``cifar10-mini`` that trains on 2 CPU cores in a
few minutes. Paper-scale settings live in ``configs/*.yaml``.

Component sections hold a registry ``name`` plus that entry's own parameters, validated
against the registry once (``robustrain list models|methods``) and kept in their typed form:
``method`` is a :class:`MethodConfig` (the method's frozen Params instance) or, for a
composite ``<base>+<plugin>``, a :class:`PluginConfig`; ``model`` is a
:class:`ComponentConfig` whose params are resolved (defaults filled in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from robustrain.methods.inverse import UIATParams
from robustrain.methods.registry import PluggedParams
from robustrain.methods.sample_state import SAMPLE_STATE_CHOICES
from robustrain.models import model_params
from robustrain.schedules import ScheduleParams
from robustrain.utils.checks import check_choice, check_in_range, check_nonnegative, check_positive, short_repr
from robustrain.utils.runtime import check_device_name

__all__ = [
    "AWPConfig",
    "AWP_SUFFIX",
    "awp_defaults",
    "Config",
    "DataConfig",
    "ExtraDataConfig",
    "COMPONENT_SECTIONS",
    "ComponentConfig",
    "MethodConfig",
    "ModelConfig",
    "PluginConfig",
    "model_defaults",
    "OptimConfig",
    "ScheduleConfig",
    "ScheduleParams",
    "TrainConfig",
    "EvalConfig",
    "GuardConfig",
    "FINAL_ATTACKS",
    "MAX_SEED",
    "check_run_name",
]

#: the schedule section is the schedule component's own params (``robustrain.schedules``)
ScheduleConfig = ScheduleParams

#: the sections that name a registry entry and carry its parameters flat (``method: {name: ..., beta: 6}``)
COMPONENT_SECTIONS = ("model", "method")

#: the largest seed (``torch.manual_seed`` takes 64-bit seeds; kept to the signed range)
MAX_SEED = 2**63 - 1

#: the evaluation table printed at the end of every run (DESIGN.md protocol)
FINAL_ATTACKS = ("natural", "pgd20", "cw30")


def _frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class ExtraDataConfig:
    """Generated images mixed into every training batch (UIAT Table 4, Appendix A.2: 1M DDPM
    images, the setting of Gowal et al. 2021 / Rebuffi et al. 2021 / DM-Improves-AT).

    With ``path`` set, each batch holds ``round(ratio * batch_size)`` original and the rest
    generated images, and one epoch is one *original-dataset equivalent* (``ceil(N /
    batch_size)`` full batches, N = original training split size; the paper's "400
    CIFAR-10-equivalent epochs"). Generated samples get ids ``>= N`` (per-sample method state
    covers them). See :mod:`robustrain.data.extra`.

    Attributes:
        path: uncompressed ``.npz`` (``np.savez``) with ``image`` uint8 ``(M, H, W, C)`` and
            ``label`` int ``(M,)``, or a folder with ``image.npy`` + ``label.npy``; memory-mapped.
            ``None`` (default): no extra data. Checked when the run is built.
        ratio: original-to-generated ratio, the fraction of original images per batch, in
            (0, 1]: 0.3 = 3 original : 7 generated (the paper's CIFAR-10 value; 0.4 for CIFAR-100).
    """

    path: str | None = None
    ratio: float = 0.3

    def __post_init__(self) -> None:
        if self.path == "":
            object.__setattr__(self, "path", None)  # `data.extra.path=` switches it off
        check_in_range("data.extra.ratio", self.ratio, 0.0, 1.0, "fraction of original images per batch, "
                       "0.3 = 3 original : 7 generated", low_open=True)


@dataclass(frozen=True)
class DataConfig:
    """Dataset and loader.

    Attributes:
        name: dataset registry name (``robustrain list datasets``).
        root: folder holding the dataset files (ignored by ``cifar10-mini`` / ``synthetic``).
        download: try to fetch missing files from the official source (needs internet).
        batch_size: training batch size (the papers use 128).
        augment: the dataset's standard augmentation, done on the device: random crop
            (zero pad 4) + horizontal flip for CIFAR; none for SVHN and the digit sets.
        drop_last: drop the last incomplete training batch (fixed shapes for torch.compile).
        eval_batch_size: batch size of every evaluation pass.
        extra: generated images mixed into training batches (:class:`ExtraDataConfig`).
        val_n: training images held out as the validation split that selects ``best.pt``
            (issue 13: selection never looks at the test set). Class-balanced, drawn with a
            fixed split seed (:data:`robustrain.data.split.SPLIT_SEED`, not ``seed``), so every
            method and seed holds out the same images; the run trains on the rest. Unset
            (``null``, the default): ``min(1000, 10% of the training split)`` (1,000 on the full
            datasets, 508 on ``cifar10-mini``; :func:`robustrain.data.split.default_val_n`) of
            whatever ``name`` is, resolved when the run is built; ``summary.json``'s
            ``selection_split`` records the number. There is no 0: a run always selects on
            held-out training images.
        image_size: side of the square images of a streaming dataset (``imagefolder``,
            ``webdataset``; ignored by the in-memory ones): training images are a
            RandomResizedCrop to it (+ flip with ``augment``), evaluation images its centre crop.
        resize: streaming datasets' evaluation resize: the shorter side goes to ``resize``
            before the centre ``image_size`` crop (224 of 256 on ImageNet).
        workers: DataLoader worker processes decoding a streaming dataset's images (0: in the
            training process). Results do not depend on it.
        on_corrupt: what a streaming dataset does with an image that does not decode: ``error``
            (stop with one line naming the file) or ``skip`` (leave it out of its batch, report the
            count once per epoch).
        test_root: the test split of a streaming dataset when it is not the default place:
            ``imagefolder``: a folder laid out as ``ROOT/val`` (default ``ROOT/val``);
            ``webdataset``: a shard pattern (default: the ``val`` split of the shards' manifest).
    """

    name: str = "cifar10-mini"
    root: str | None = None
    download: bool = False
    batch_size: int = 128
    augment: bool = True
    drop_last: bool = False
    eval_batch_size: int = 256
    extra: ExtraDataConfig = field(default_factory=ExtraDataConfig)
    val_n: int | None = None
    image_size: int = 224
    resize: int = 256
    workers: int = 4
    on_corrupt: str = "error"
    test_root: str | None = None

    def __post_init__(self) -> None:
        _at_least_one("data.batch_size", self.batch_size, "images per training batch, e.g. 128")
        _at_least_one("data.image_size", self.image_size, "side of a streaming dataset's images, e.g. 224")
        if self.resize < self.image_size:
            raise ValueError(f"data.resize={self.resize} must be >= data.image_size={self.image_size} "
                             "(evaluation images are resized, then centre-cropped), e.g. 256 for 224")
        if self.workers < 0:
            raise ValueError(f"data.workers must be >= 0 (0: decode in the training process), got {self.workers}")
        if self.on_corrupt not in ("error", "skip"):
            raise ValueError(f"data.on_corrupt must be 'error' or 'skip', got {self.on_corrupt!r}")
        if self.val_n is not None:
            _at_least_one("data.val_n", self.val_n, "training images held out to select best.pt, e.g. 1000; "
                          "selection never uses the test split")
        _at_least_one("data.eval_batch_size", self.eval_batch_size, "images per evaluation batch, e.g. 256")
        if self.extra.path is not None and round(self.extra.ratio * self.batch_size) < 1:
            raise ValueError(
                f"data.extra.ratio={self.extra.ratio} with data.batch_size={self.batch_size} leaves no "
                "original image per batch; raise data.extra.ratio or data.batch_size"
            )


@dataclass(frozen=True)
class ComponentConfig:
    """A registry entry and its parameters, e.g. ``model: {name: wrn34_10, activation: silu}``.

    After validation the params are resolved: every parameter of the entry, defaults filled in
    (:func:`model_defaults` for models).
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=_frozen)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen(self.params))


#: the model section (name + resolved architecture params)
ModelConfig = ComponentConfig


def model_defaults(name: str) -> dict[str, Any]:
    """Every parameter of model ``name`` with its default: ``activation`` (``relu``; every
    model takes one) and the factory's own keyword defaults (:func:`robustrain.models.model_params`).

    Raises:
        KeyError: unknown model.
    """
    return {"activation": "relu", **model_params(name)}


@dataclass(frozen=True)
class MethodConfig:
    """A base method and its typed hyper-parameters, built and checked once when the config
    is loaded, e.g. ``MethodConfig("trades", TRADESParams(beta=6.0))``.

    ``create_method(cfg.method.name, ctx, cfg.method.params)`` builds the method.
    """

    name: str
    params: Any


@dataclass(frozen=True)
class PluginConfig:
    """A composite ``<base>+<plugin>`` method (``pgd_at+uiat``): the base's section and the
    plug-in's typed Params. Users still write the keys flat (``method: {name: pgd_at+uiat,
    steps: 5, lam: 3.5}``); validation splits them by the two Params' fields.

    Attributes:
        name: the composite name as written.
        base: the base method's section (``MethodConfig("pgd_at", PGDATParams(steps=5))``).
        plugin: the plug-in's Params (``UIATPluginParams(lam=3.5)``).
    """

    name: str
    base: MethodConfig
    plugin: Any

    @property
    def params(self) -> PluggedParams:
        """Both parts as one typed value (fields readable by name, base first), what
        ``create_method(self.name, ctx, self.params)`` takes."""
        return PluggedParams(self.base.params, self.plugin)


@dataclass(frozen=True)
class OptimConfig:
    """SGD as in the UIAT paper (Appendix A.2): Nesterov momentum 0.9, weight decay 5e-4.

    Attributes:
        lr: peak learning rate (0.1; 0.2 with extra data).
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty, applied to every parameter as in the reference code.
    """

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        check_positive("optim.lr", self.lr, "the peak learning rate, e.g. 0.1")
        check_in_range("optim.momentum", self.momentum, 0.0, 1.0, "SGD momentum, e.g. 0.9", high_open=True)
        check_nonnegative("optim.weight_decay", self.weight_decay, "the L2 penalty, e.g. 5e-4")
        if self.nesterov and self.momentum == 0:
            raise ValueError("optim.nesterov=true needs optim.momentum > 0")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop.

    Attributes:
        epochs: number of epochs.
        ema: keep an exponential moving average of the weights (evaluated instead of the raw
            weights when on).
        ema_decay: EMA decay (0.995 in the UIAT paper), warmed up as min(decay, (1+t)/(10+t)).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        bf16: bfloat16 autocast for the training step (GPU runs; evaluation is always fp32).
        channels_last: NHWC memory format for model and batches (GPU runs).
        log_every: steps between progress-bar / metrics-file updates (each one host sync).
        tensorboard: also write TensorBoard scalars (needs ``pip install -e .[tensorboard]``);
            the same as listing ``tensorboard`` in ``loggers``.
        compile: ``torch.compile`` the model for the training step (static batch shapes, so it
            needs ``data.drop_last=true``); evaluation keeps the uncompiled fp32 model.
        sync_bn: under torchrun (DDP, several GPUs), BatchNorm statistics over the global
            batch (SyncBatchNorm, CUDA only); ignored in a single process.
        checkpoint_every: also write ``last.pt`` after every this many optimisation steps
            inside an epoch (0 = only at epoch ends); ``--resume`` continues from that step
            bit-identically on CPU. For epochs of hours (ImageNet).
        sample_state: storage of per-sample method state (UIAT momentum / one-off targets,
            N x C floats): ``auto`` (fp32 on the device up to 256 MiB, bf16 above, bf16 in host
            memory when the device cannot hold it), ``fp32``, ``bf16``, ``fp16`` (on the device)
            or ``host`` (bf16 in pinned host memory); see :mod:`robustrain.methods.sample_state`.
        loggers: experiment trackers that also get the run (``robustrain list trackers``):
            any of ``tensorboard``, ``wandb``, ``mlflow``, e.g. ``train.loggers=[mlflow]``; each
            needs its extra (``pip install -e .[mlflow]``). Rank 0 logs; a tracker that fails is
            one warning and training goes on (the run folder stays the record).
        log_artifacts: also upload ``best.pt`` (else ``last.pt``), ``summary.json``,
            ``config.yaml``, ``metrics.jsonl`` and a report / figures found in the run folder to
            the trackers at the end of the run.
        tracker_project: W&B project / MLflow experiment name; empty: ``WANDB_PROJECT`` /
            ``MLFLOW_EXPERIMENT_NAME``, else ``robustrain``.
    """

    epochs: int = 4
    ema: bool = False
    ema_decay: float = 0.995
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    log_every: int = 10
    tensorboard: bool = False
    compile: bool = False
    sync_bn: bool = False
    checkpoint_every: int = 0
    sample_state: str = "auto"
    loggers: tuple[str, ...] = ()
    log_artifacts: bool = False
    tracker_project: str = ""

    def __post_init__(self) -> None:
        _at_least_one("train.epochs", self.epochs, "number of training epochs")
        object.__setattr__(self, "loggers", tuple(self.loggers))
        if len(set(self.loggers)) != len(self.loggers) or not all(isinstance(n, str) and n for n in self.loggers):
            raise ValueError(f"train.loggers must name each tracker once, e.g. [mlflow, wandb], "
                             f"got {list(self.loggers)}")
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int) \
                or self.checkpoint_every < 0:
            raise ValueError(f"train.checkpoint_every must be an integer >= 0 (steps between mid-epoch "
                             f"checkpoints, 0 = epoch ends only), got {self.checkpoint_every!r}")
        check_choice("train.sample_state", self.sample_state, SAMPLE_STATE_CHOICES)
        _at_least_one("train.log_every", self.log_every, "steps between metric updates, e.g. 10")
        check_in_range("train.ema_decay", self.ema_decay, 0.0, 1.0, "EMA decay, e.g. 0.995",
                       low_open=True, high_open=True)
        # the form only: whether this machine has the device is checked by load_config, so a
        # saved GPU run's config still reads on a CPU machine (report, eval)
        check_device_name(self.device, "train.device")

    @property
    def trackers(self) -> tuple[str, ...]:
        """The trackers of the run: ``loggers``, plus ``tensorboard`` for ``tensorboard=true``.

        Example:
            >>> TrainConfig(loggers=("mlflow",), tensorboard=True).trackers
            ('mlflow', 'tensorboard')
        """
        return self.loggers + (("tensorboard",) if self.tensorboard and "tensorboard" not in self.loggers else ())


@dataclass(frozen=True)
class EvalConfig:
    """Per-epoch and final evaluation (always fp32, eval mode, EMA weights when on).

    Attributes:
        n: validation images evaluated every epoch: the first ``min(n, data.val_n)`` of the
            validation split held out of the TRAINING data (``data.val_n``); ``best.pt`` is
            chosen by ``attack`` accuracy on them (never on test images).
        every: evaluate every ``every`` epochs (and always after the last one).
        attack: attack used for the per-epoch robust accuracy (``robustrain list attacks``),
            or ``natural`` to choose ``best.pt`` by clean accuracy (natural training).
        final_n: test images for the final table (0 = the whole test split).
        final_attacks: attacks of the final table; ``natural`` is clean accuracy.
        eps: threat-model radius of the per-epoch and final attacks, e.g. ``4/255`` for the
            ImageNet presets (None: each attack's own, 8/255 for the Linf ones), as ``robustrain
            eval --eps``: the attacks keep their own step (2/255 for ``pgd20``).
    """

    n: int = 256
    every: int = 1
    attack: str = "pgd20"
    final_n: int = 0
    final_attacks: tuple[str, ...] = FINAL_ATTACKS
    eps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "final_attacks", tuple(self.final_attacks))
        _at_least_one("eval.n", self.n, "validation images evaluated every epoch, e.g. 256")
        _at_least_one("eval.every", self.every, "epochs between evaluations")
        if self.final_n < 0:
            raise ValueError(f"eval.final_n must be an integer >= 0 (0 = the whole test split), got {self.final_n}")
        if self.eps is not None and not 0 < self.eps <= 1:
            raise ValueError(f"eval.eps must be in (0, 1], e.g. 4/255, or null for each attack's own radius; "
                             f"got {self.eps}")


@dataclass(frozen=True)
class GuardConfig:
    """Catastrophic-overfitting guard (single-step AT can collapse: PGD accuracy falls to ~0
    within an epoch while FGSM accuracy stays high; Wong et al. 2020 early-stop on it).

    After every epoch the live model's ``attack`` accuracy on a fixed batch (the first ``n``
    images of the training part, never the validation split; no augmentation, eval mode) is measured; when it falls below
    ``(1 - drop)`` times the best value seen so far the trainer warns and logs
    ``catastrophic_overfitting`` in metrics.jsonl, and with ``stop`` ends the run after that
    epoch's checkpoint (``best.pt`` keeps the best model).

    Attributes:
        enabled: run the check (about ``n`` x (steps + 1) forward/backward passes per epoch).
        n: size of the fixed training batch.
        attack: attack of the check (``robustrain list attacks``; PGD-10 by default).
        drop: relative drop from the best value that counts as a collapse.
        stop: stop training at a collapse (else warn and log only).
    """

    enabled: bool = True
    n: int = 128
    attack: str = "pgd"
    drop: float = 0.5
    stop: bool = False

    def __post_init__(self) -> None:
        _at_least_one("guard.n", self.n, "training images of the collapse check, e.g. 128")
        check_in_range("guard.drop", self.drop, 0.0, 1.0, "relative accuracy drop counted as a collapse, e.g. 0.5",
                       low_open=True, high_open=True)


#: the suffix that turns AWP on in a method name (``pgd_at+awp``): see :func:`awp_defaults`
AWP_SUFFIX = "+awp"


def awp_defaults(method_name: str) -> dict[str, Any]:
    """The official scripts' ``--awp-gamma`` / ``--awp-warmup`` for a method (github.com/csdongxian/AWP:
    0.005 / 10 in ``trades_AWP/train_trades_cifar.py``, 0.01 / 0 for PGD-AT).

    Example:
        >>> awp_defaults("trades+uiat"), awp_defaults("pgd_at")
        ({'gamma': 0.005, 'warmup': 10}, {'gamma': 0.01, 'warmup': 0})
    """
    if method_name.split("+", 1)[0].startswith("trades"):
        return {"gamma": 5e-3, "warmup": 10}
    return {"gamma": 1e-2, "warmup": 0}


@dataclass(frozen=True)
class AWPConfig:
    """Adversarial weight perturbation (Wu et al. 2020), a trainer-level hook for any method
    (:mod:`robustrain.train.awp`). Off by default; a method name ending in ``+awp`` turns it on
    with the official settings of its base method.

    Attributes:
        gamma: layer-wise relative size of the weight perturbation (0 = off; official 1e-2 for
            PGD-AT, 5e-3 for TRADES).
        warmup: the official ``--awp-warmup``: AWP is on from 1-based epoch ``warmup`` (0: from
            the start; 10 for TRADES).
    """

    gamma: float = 0.0
    warmup: int = 0

    def __post_init__(self) -> None:
        check_nonnegative("awp.gamma", self.gamma, "the relative weight perturbation, e.g. 0.01 (0 = off)")
        if self.warmup < 0:
            raise ValueError(f"awp.warmup must be >= 0, got {self.warmup}; e.g. awp.warmup=0")

    @property
    def enabled(self) -> bool:
        return self.gamma > 0


@dataclass(frozen=True)
class Config:
    """A whole run. ``name`` defaults to ``{method}-{model}-{data}-s{seed}``.

    Attributes:
        seed: seeds model init, data order, augmentation and attack random starts.
        out_dir: parent folder of run folders.
        name: run folder name; when empty, derived from the components.
    """

    seed: int = 0
    out_dir: str = "runs"
    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ComponentConfig = field(default_factory=lambda: ComponentConfig("small_cnn", model_defaults("small_cnn")))
    method: MethodConfig | PluginConfig = field(default_factory=lambda: MethodConfig("uiat", UIATParams()))
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    awp: AWPConfig = field(default_factory=AWPConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, 2**63-1 = {MAX_SEED}], got {short_repr(self.seed, 40)}; "
                             "e.g. seed=0")
        check_run_name(self.name)
        # a last batch of another size would make torch.compile build a second (dynamic) graph
        if self.train.compile and not self.data.drop_last:
            raise ValueError("train.compile=true needs fixed batch shapes; set data.drop_last=true as well")

    @property
    def method_label(self) -> str:
        """The method as the user named it: ``trades+awp`` when AWP is on, else ``method.name``."""
        return self.method.name + ("+awp" if self.awp.enabled else "")

    @property
    def run_name(self) -> str:
        # a family model's colon (timm:resnet50) stays out of folder names
        return self.name or f"{self.method_label}-{self.model.name.replace(':', '-')}-{self.data.name}-s{self.seed}"

    def awp_note(self) -> str | None:
        """What a delayed AWP does to this run (issue 23: a warm-up longer than the run silently
        trained the plain method), or None when AWP is off or on from the first epoch."""
        if not self.awp.enabled or self.awp.warmup <= 1:
            return None
        if self.awp.warmup > self.train.epochs:
            return (f"awp.warmup={self.awp.warmup} is longer than the run ({self.train.epochs} epochs): AWP never "
                    f"switches on and this run trains plain {self.method.name}; set train.epochs>={self.awp.warmup} "
                    f"or a smaller awp.warmup")
        return (f"AWP is off for the first {self.awp.warmup - 1} of {self.train.epochs} epochs (awp.warmup="
                f"{self.awp.warmup}, the official warm-up) and on from epoch {self.awp.warmup}")


def _at_least_one(key: str, value: int, hint: str) -> None:
    """An integer count: ``value >= 1``."""
    if value < 1:
        raise ValueError(f"{key} must be an integer >= 1 ({hint}), got {short_repr(value, 40)}")


def check_run_name(name: str) -> str:
    """``name`` if it can name a run folder directly under ``out_dir`` ('' = derived).

    Raises:
        ValueError: a path separator, a leading ``.`` (``..``, hidden folders), a control
            character, or more than 200 characters.

    Example:
        >>> check_run_name("trades-s0")
        'trades-s0'
        >>> check_run_name("../../x")
        Traceback (most recent call last):
        ...
        ValueError: name must be a plain folder name under out_dir (no '/' or '\\', not starting with '.'), got '../../x'; e.g. name=my-run
    """
    bad = (
        "/" in name or "\\" in name or name.startswith(".") or len(name) > 200
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    )
    if bad:
        raise ValueError("name must be a plain folder name under out_dir (no '/' or '\\', not starting with '.'), "
                         f"got {short_repr(name, 60)}; e.g. name=my-run")
    return name
