"""The model zoo: every ResNeSt-family architecture as data over one backbone. Imports only torch.

Configs and the registry are plain data and import without torch, so graph checks (``inspect``, ``build``) that
only need an architecture's input settings never load it; the network classes and builders load torch on first
use (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

from ..lazy import lazy_exports
from . import archs as _archs  # noqa: F401  (registers every architecture)
from .config import HEAD, IMAGENET_MEAN, IMAGENET_STD, STEM, InputConfig, ModelConfig, WeightsRelease
from .registry import get_config, list_models, matching_models, register

_LAZY = {
    "reestimate_batchnorm": "batchnorm", "synthetic_images": "synthetic",
    "ModelSummary": "factory", "WeightsInfo": "factory", "create_model": "factory", "describe_model": "factory",
    "guess_arch": "factory", "summarize": "factory", "ResNet": "resnet",
    "Checkpoint": "weights", "download_weights": "weights", "download_published": "weights",
    "read_checkpoint": "weights",
}

__all__ = [  # noqa: PLE0604  (the lazy names resolve through __getattr__)
    "HEAD", "IMAGENET_MEAN", "IMAGENET_STD", "STEM", "InputConfig", "ModelConfig", "WeightsRelease", "get_config",
    "list_models", "matching_models", "register", *_LAZY,
]
__getattr__ = lazy_exports(__name__, _LAZY)
