"""Scales of a reproduction: ``full`` (the paper's setting) and ``mini`` (a CPU-sized analogue).

Each row's YAML file holds the paper-scale setting. ``full`` runs it as written. ``mini``
runs the same protocol (method, hyper-parameters, radii, schedules as fractions of the run,
evaluation attacks) with every row mapped onto the real CIFAR-10 subset shipped in the
package, in a few CPU minutes per run, through one documented override set
(:data:`MINI_OVERRIDES`) applied on top of the row's file:

=====================  ===========================================================
``data.name``          ``cifar10-mini`` (5,085 train / 1,017 test real CIFAR-10
                       images); CIFAR-100 / SVHN rows become its analogue, noted
``data.root``          unset (the subset is packaged)
``data.batch_size``    128 (Table 4's 512 would leave ~10 steps per epoch)
``model``              ``small_cnn``, keeping the row's activation (SiLU in Table 4)
``train.epochs``       min(row's epochs, 4) (a table may ask for more: the ``study``)
``eval.n``             256 held-out images per epoch (choice of ``best.pt``)
``awp.warmup``         AWP rows only: the warm-up kept as the same fraction of the run
                       (TRADES+AWP's 9 of 100 epochs without AWP -> 1 of 10)
=====================  ===========================================================

and evaluation of every column on the same images: all 1,017 test images (AutoAttack included; it
costs a few minutes per 256 images of a mini model on 2 CPU cores, so about four times a mini
run's training; ``--eval-n 256`` puts every column on the first 256 instead, named in the
table). A mini number is a smoke-scale analogue: the difference to the paper's number is shown,
not hidden, and is not a reproduction error.

Example:
    >>> from robustrain.config import load_config
    >>> cfg = load_config(None, ["data.name=cifar100", "model=resnet18", "train.epochs=100"])
    >>> SCALES.get("mini").overrides(cfg)[3:]
    ['model=small_cnn', 'train.epochs=4', 'eval.n=256']
    >>> SCALES.get("mini").note(dataset="cifar100", model="resnet18")
    'mini analogue of cifar100 / resnet18'
"""

from __future__ import annotations

from dataclasses import dataclass

from robustrain.config import Config
from robustrain.utils.registry import Registry

__all__ = ["Scale", "SCALES", "MINI_OVERRIDES", "MINI_EPOCHS", "MINI_EVAL_N", "mini_warmup"]

#: the most epochs a mini run trains (4 epochs of PGD-10 on cifar10-mini: ~4 min on 2 CPU cores)
MINI_EPOCHS = 4

#: held-out validation images a mini run evaluates per epoch (to choose ``best.pt``)
MINI_EVAL_N = 256

#: the fixed part of the mini override set (the model and epochs depend on the row)
MINI_OVERRIDES = ("data.name=cifar10-mini", "data.root=null", "data.batch_size=128")
#: the mini scale's model (a row's activation is kept, e.g. ``model.activation=softplus``)
MINI_MODEL = "model=small_cnn"


@dataclass(frozen=True)
class Scale:
    """How a table's rows are run.

    Attributes:
        name: ``full`` | ``mini``.
        help: one line for ``--list`` / ``--dry-run``.
        eval_n: test images for every accuracy column, AutoAttack included: the first
            ``eval_n`` of the test split (0 = the whole split). One number, so all columns of a
            table are measured on the same images.
        needs_gpu: training runs need a CUDA device (checked before anything runs).
        mini: apply the mini override set.
    """

    name: str
    help: str
    eval_n: int
    needs_gpu: bool
    mini: bool

    def overrides(self, cfg: Config, *, epochs: int = MINI_EPOCHS, eval_n: int = MINI_EVAL_N) -> list[str]:
        """The overrides mapping ``cfg`` (a row's paper-scale config) to this scale.

        Args:
            cfg: the row's paper-scale config.
            epochs: the most epochs a mini run trains (default :data:`MINI_EPOCHS`).
            eval_n: held-out validation images evaluated per epoch at mini scale.
        """
        if not self.mini:
            return []
        out = list(MINI_OVERRIDES) + [MINI_MODEL]
        activation = cfg.model.params.get("activation", "relu")
        if activation != "relu":
            out.append(f"model.activation={activation}")
        mini_epochs = min(cfg.train.epochs, epochs)
        out += [f"train.epochs={mini_epochs}", f"eval.n={eval_n}"]
        if cfg.awp.enabled and cfg.awp.warmup > 1:
            out.append(f"awp.warmup={mini_warmup(cfg.awp.warmup, cfg.train.epochs, mini_epochs)}")
        return out

    def describe(self, *, epochs: int = MINI_EPOCHS, eval_n: int = MINI_EVAL_N) -> str:
        """What :meth:`overrides` does to every row, in one line (for ``--dry-run``); empty at full scale.

        Example:
            >>> SCALES.get("mini").describe(epochs=10, eval_n=500)
            "data.name=cifar10-mini data.root=null data.batch_size=128 model=small_cnn (row's activation kept) train.epochs=min(E,10) eval.n=500 (awp.warmup kept as a fraction of the run)"
        """
        if not self.mini:
            return ""
        return (" ".join(MINI_OVERRIDES) + f" {MINI_MODEL} (row's activation kept) train.epochs=min(E,{epochs}) "
                f"eval.n={eval_n} (awp.warmup kept as a fraction of the run)")

    def note(self, *, dataset: str, model: str) -> str:
        """The per-row remark for rows whose paper setting is not CIFAR-10 / ResNet-18."""
        if not self.mini or (dataset, model) == ("cifar10", "resnet18"):
            return ""
        return f"mini analogue of {dataset} / {model}"


def mini_warmup(warmup: int, epochs: int, mini_epochs: int) -> int:
    """AWP's warm-up (1-based epoch it starts from) for a run shortened to ``mini_epochs``: the
    epochs without AWP (``warmup - 1``) keep their fraction of the run.

    Example:
        >>> mini_warmup(10, 100, 12), mini_warmup(10, 100, 4), mini_warmup(0, 100, 4)
        (2, 1, 0)
    """
    if warmup <= 1:
        return warmup
    return int(round((warmup - 1) * mini_epochs / epochs)) + 1


SCALES: Registry[Scale] = Registry("scale")
SCALES.add("full", Scale("full", "the paper's setting as written in each row's config (GPU, dataset files)",
                         eval_n=0, needs_gpu=True, mini=False),
           help="the paper's setting: each row's config as written (needs the dataset files and a GPU)")
SCALES.add("mini", Scale("mini", "small_cnn on cifar10-mini (real CIFAR-10 subset), batch 128, <= 4 epochs "
                         "unless the table sets more",
                         eval_n=0, needs_gpu=False, mini=True),
           help="the same protocol with small_cnn on cifar10-mini, <= 4 epochs (2 CPU cores)")
