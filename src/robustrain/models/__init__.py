"""Models: pixels in [0, 1] in, logits (and penultimate features) out.

Build models with :func:`create_model`; every backbone is a :class:`Classifier` behind a
:class:`Normalize` layer, and ``model(x, return_features=True)`` gives ``(logits, features)``
from one forward pass.

Example:
    >>> import torch
    >>> from robustrain.models import MODELS, create_model
    >>> "resnet18" in MODELS
    True
    >>> model = create_model("small_cnn", 10)
    >>> model(torch.rand(4, 3, 32, 32)).shape
    torch.Size([4, 10])
"""

from .base import Classifier, Normalize, NormalizedClassifier, logits_and_features
from .ema import EMA
from .registry import MODELS, create_model, model_params, register_model

# Imported for their side effect: each module registers its architectures in MODELS.
from . import preact_resnet, resnet, resnet_imagenet, small_cnn, timm_backbone, wide_resnet  # noqa: E402,F401  isort: skip

__all__ = [
    "EMA",
    "MODELS",
    "Classifier",
    "Normalize",
    "NormalizedClassifier",
    "create_model",
    "logits_and_features",
    "model_params",
    "register_model",
]
