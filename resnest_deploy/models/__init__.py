"""The model zoo: every ResNeSt-family architecture as data over one backbone. Imports only torch."""

from . import archs as _archs  # noqa: F401  (registers every architecture)
from .batchnorm import reestimate_batchnorm
from .config import IMAGENET_MEAN, IMAGENET_STD, InputConfig, ModelConfig, WeightsRelease
from .factory import (
    ModelSummary,
    WeightsInfo,
    create_model,
    describe_model,
    guess_arch,
    random_init_description,
    summarize,
)
from .registry import get_config, list_models, register
from .resnet import ResNet
from .weights import Checkpoint, download_weights, read_checkpoint

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "Checkpoint", "InputConfig", "ModelConfig", "ModelSummary", "ResNet",
    "WeightsInfo", "WeightsRelease", "create_model", "describe_model", "download_weights", "get_config", "guess_arch",
    "list_models", "random_init_description", "read_checkpoint", "reestimate_batchnorm", "register", "summarize",
]
