"""timm backbones: ``model.name=timm:<architecture>`` builds any timm model as a robustrain :class:`Classifier`.

``timm:resnet50``, ``timm:convnext_tiny``, ``timm:deit_small_patch16_224`` ... (``timm.list_models()``)
are built with ``pretrained=False``, the dataset's class count and channels, and, for the
architectures timm builds for one input size (ViT, DeiT, Swin: ``fixed_input_size``), the
dataset's image size. :func:`~robustrain.models.create_model` puts robustrain's ``Normalize`` in
front as for every model, so the model takes [0, 1] pixels. The penultimate features are timm's
own: ``forward_head(forward_features(x), pre_logits=True)`` (the pooled, normed input of the
classifier), and ``head`` is timm's classifier Linear (``get_classifier()``), so UIAT's feature
term and every other method work unchanged.

Parameters (``model.<key>=...``):

==================  =======  =================================================================
key                 default  meaning
==================  =======  =================================================================
``pretrained``      null     a local weights file (``.pth`` / ``.pt`` state_dict, or
                             ``.safetensors``) loaded into the fresh model; a classifier of
                             another class count is left freshly initialised. Nothing is
                             downloaded.
``drop_rate``       0.0      dropout before the classifier (timm's ``drop_rate``)
``drop_path_rate``  0.0      stochastic depth (timm's ``drop_path_rate``)
==================  =======  =================================================================

timm is an optional extra (``pip install -e .[timm]``); it needs a torchvision that matches the
installed torch (README, "timm backbones"). The model card records the timm version.

Example (needs timm):
    >>> import torch
    >>> from robustrain.models import create_model
    >>> net = create_model("timm:test_resnet", 10, image_size=(32, 32))  # doctest: +SKIP
    >>> logits, feats = net(torch.rand(2, 3, 32, 32), return_features=True)  # doctest: +SKIP
    >>> tuple(logits.shape), tuple(feats.shape)  # doctest: +SKIP
    ((2, 10), (2, 96))
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from robustrain.utils.errors import MissingExtraError
from .base import Classifier
from .registry import ModelFamily, register_model_family

__all__ = ["TIMM_INSTALL", "TimmClassifier", "check_timm_params", "require_timm", "timm_classifier"]

TIMM_INSTALL = "pip install -e .[timm]"


def require_timm() -> Any:
    """The ``timm`` module, or one line naming the install command.

    Raises:
        MissingExtraError: timm is not installed, or cannot be imported (its torchvision does not
            match torch: the message says so).
    """
    try:
        import timm  # optional extra: imported only where a timm model is named
    except ModuleNotFoundError as e:
        if e.name == "timm":
            raise MissingExtraError(f"timm backbones (model.name=timm:...) need timm; install it with "
                                    f"`{TIMM_INSTALL}`") from None
        raise MissingExtraError(_broken(e)) from None  # timm is there, one of its imports (torchvision) is not
    except Exception as e:  # a torchvision built for another torch fails while registering its ops
        raise MissingExtraError(_broken(e)) from None
    return timm


def _broken(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
    return (f"timm is installed but cannot be imported ({type(e).__name__}: {first}): it needs a torchvision "
            f"built for torch {torch.__version__}; install that torchvision, then `{TIMM_INSTALL}` "
            "(README, \"timm backbones\")")


def _versions() -> dict[str, str]:
    return {"timm": str(require_timm().__version__)}


def check_timm_params(arch: str, params: dict[str, Any], prefix: str = "") -> None:
    """Validate a timm architecture name and the family's parameters, without building anything.

    Raises:
        MissingExtraError: timm is not installed.
        ValueError: an architecture timm does not have (the message lists close matches), a drop
            rate outside [0, 1), or a ``pretrained`` file that does not exist.
    """
    timm = require_timm()
    if arch not in timm.list_models():
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"close matches: {', '.join('timm:' + c for c in close)}" if close else \
            "see timm.list_models() for the names"
        raise ValueError(f"{prefix}name: timm has no model {arch!r} (timm {timm.__version__}); {hint}")
    for key in ("drop_rate", "drop_path_rate"):
        value = params.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"{prefix}{key} must be a number in [0, 1), got {value!r}")
    pretrained = params.get("pretrained")
    if pretrained is not None:
        if not isinstance(pretrained, str) or not Path(pretrained).is_file():
            raise ValueError(f"{prefix}pretrained: no weights file {pretrained!r}; give the path of a local "
                             ".pth / .pt state_dict or .safetensors file (nothing is downloaded)")


class TimmClassifier(Classifier):
    """A timm model behind robustrain's :class:`Classifier` interface.

    ``forward_features`` is the classifier's input (timm's ``pre_logits``), ``head`` timm's
    classifier Linear; ``net`` is the timm model itself (its state_dict keys unchanged under
    ``net.``).
    """

    def __init__(self, net: nn.Module, arch: str) -> None:
        super().__init__()
        head = net.get_classifier()
        if not isinstance(head, nn.Linear):
            raise ValueError(f"timm model {arch!r} has a {type(head).__name__} classifier; robustrain needs a "
                             "Linear head on pooled features (penultimate features for UIAT): choose another model")
        self.net = net

    @property
    def head(self) -> nn.Linear:  # type: ignore[override]  # timm's own module, not registered twice
        return self.net.get_classifier()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A local weights file as a state_dict (``.safetensors`` or a ``weights_only`` torch file,
    optionally wrapped as ``{"state_dict" | "model" | "state_dict_ema": ...}``)."""
    fix = "give a .pth / .pt state_dict or a .safetensors file of this architecture"
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file  # optional extra, only for this format
            except ImportError:
                raise MissingExtraError("model.pretrained is a .safetensors file, which needs the safetensors "
                                        "package; install it with `pip install -e .[safetensors]`") from None
            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except MissingExtraError:
        raise
    except Exception as e:  # each reader raises its own types for a damaged or foreign file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise ValueError(f"model.pretrained: cannot read {path} ({first}); {fix}") from None
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not (isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values())):
        raise ValueError(f"model.pretrained: {path} holds no state_dict; {fix}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_pretrained(net: nn.Module, path: Path, arch: str) -> None:
    """Load ``path`` into ``net``; a classifier of another shape (other class count) keeps its fresh init."""
    state = _read_weights(path)
    own = net.state_dict()
    head = net.get_classifier()
    head_keys = {name for name, t in own.items() for p in head.parameters() if t.data_ptr() == p.data_ptr()}
    state = {k: v for k, v in state.items() if not (k in head_keys and v.shape != own[k].shape)}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ValueError(f"model.pretrained: {path} does not fit timm:{arch} "
                         f"({(lines[1] if len(lines) > 1 else lines[0])[:150]})") from None
    missing = [k for k in missing if k not in head_keys]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ValueError(f"model.pretrained: {path} does not fit timm:{arch} ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected keys, e.g. {what}); give weights of this architecture")


def timm_classifier(
    arch: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    activation: str = "relu",
    image_size: Sequence[int] | None = None,
    pretrained: str | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> TimmClassifier:
    """timm architecture ``arch`` as a :class:`TimmClassifier` (use it through
    ``create_model("timm:<arch>", ...)``, which also checks the name and puts ``Normalize`` in front).

    Raises:
        ValueError: ``activation`` other than the default, a model without a Linear classifier, a
            ``pretrained`` file that cannot be read or does not fit.
    """
    if activation != "relu":
        raise ValueError(f"activation does not apply to timm models (each keeps its own), got {activation!r}")
    timm = require_timm()
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_channels, "drop_rate": drop_rate,
                              "drop_path_rate": drop_path_rate}
    # ViT / DeiT / Swin are built for one input size (position embeddings, windows): the dataset's
    if image_size is not None and timm.models.get_pretrained_cfg_value(arch, "fixed_input_size"):
        kwargs["img_size"] = tuple(image_size)
    net = timm.create_model(arch, pretrained=False, **kwargs)
    model = TimmClassifier(net, arch)
    if pretrained is not None:
        _load_pretrained(net, Path(pretrained), arch)
    return model


register_model_family(
    "timm",
    ModelFamily(factory=timm_classifier, check=check_timm_params, versions=_versions, init_params=("pretrained",)),
    help=f"any timm architecture, e.g. timm:resnet50, timm:convnext_tiny, timm:deit_small_patch16_224 "
         f"({TIMM_INSTALL})",
)
