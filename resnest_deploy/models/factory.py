"""Building models by name: :func:`create_model`, and their sizes for listings (:func:`summarize`)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from functools import cache

import torch
from torch import nn

from ..errors import ConfigError, WeightsMismatchError
from .batchnorm import reestimate_batchnorm
from .config import MAX_CLASSES
from .registry import get_config, list_models
from .resnet import ResNet
from .weights import StateDict, expected_shapes, load_into, match_layout, read_checkpoint

# BatchNorm statistics are re-estimated at this side at most: the statistics of a random-init network barely
# depend on resolution, and the cost grows with its square.
BN_REESTIMATE_MAX_SIZE = 160


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's numbers come from; recorded in every manifest and report.

    Attributes:
        kind: ``checkpoint`` or ``random-init``.
        description: One line for reports: the file and hash, or ``random-init+bn-reestimated(seed=N)``.
        path: Checkpoint path, if any.
        sha256: Checkpoint SHA-256, if any.
        layout: Detected key layout of the checkpoint, if any.
        seed: Seed of the random init and BatchNorm re-estimation, if used.
    """

    kind: str
    description: str
    path: str | None = None
    sha256: str | None = None
    layout: str | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def random_init_description(seed: int) -> str:
    return f"random-init+bn-reestimated(seed={seed})"


def create_model(
    arch: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    bn_batches: int = 3,
) -> ResNet:
    """Build a registered architecture in eval mode, with a checkpoint or with re-estimated BatchNorm.

    Args:
        arch: Registered name, e.g. ``resnest50``.
        weights: Optional .pth/.pt/.safetensors file in official ResNeSt, timm or torchvision layout.
        num_classes: Classifier size; by default the checkpoint's, else the config's.
        seed: Seed of the random init and of the synthetic BatchNorm batches (no checkpoint only).
        bn_batches: Synthetic batches averaged for BatchNorm re-estimation (no checkpoint only).

    Returns:
        The network, with ``.config`` (the effective config) and ``.weights_info`` (:class:`WeightsInfo`).

    Raises:
        UnknownArchError: ``arch`` is not registered.
        ConfigError: ``num_classes`` is out of range (1..MAX_CLASSES).
        CheckpointError: The checkpoint cannot be read safely.
        WeightsMismatchError: The checkpoint does not fit the architecture.
    """
    cfg = get_config(arch)
    if num_classes is not None and not 1 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"--num-classes must be in 1..{MAX_CLASSES}, got {num_classes}")
    checkpoint = read_checkpoint(weights) if weights is not None else None
    ckpt_classes = checkpoint.num_classes if checkpoint else None
    if num_classes is not None and ckpt_classes is not None and num_classes != ckpt_classes:
        raise WeightsMismatchError(
            f"--num-classes {num_classes} does not match the checkpoint's classifier ({ckpt_classes} classes)"
        )
    classes = num_classes or ckpt_classes or cfg.num_classes
    if classes != cfg.num_classes:
        cfg = replace(cfg, num_classes=classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNet(cfg)
        if checkpoint is None:
            reestimate_batchnorm(
                model, input_size=min(cfg.input.size, BN_REESTIMATE_MAX_SIZE), batches=bn_batches, seed=seed
            )
            info = WeightsInfo("random-init", random_init_description(seed), seed=seed)
        else:
            layout = load_into(model, checkpoint, cfg, guess=guess_arch)
            info = WeightsInfo(
                "checkpoint", f"{checkpoint.path.name} sha256:{checkpoint.sha256[:16]} ({layout} layout)",
                path=str(checkpoint.path), sha256=checkpoint.sha256, layout=layout,
            )
    model.eval()
    model.weights_info = info
    return model


@cache
def _meta_shapes(name: str, num_classes: int | None) -> dict[str, torch.Size]:
    cfg = get_config(name)
    if num_classes is not None:
        cfg = replace(cfg, num_classes=num_classes)
    with torch.device("meta"):
        return expected_shapes(ResNet(cfg))


def guess_arch(state: StateDict) -> str | None:
    """Name the registered architecture a state dict fits exactly, if any (built on the meta device)."""
    classes = next((int(v.shape[0]) for k, v in state.items() if k.endswith("fc.weight") and v.ndim == 2), None)
    for name in list_models():
        _, _, report = match_layout(state, _meta_shapes(name, classes))
        if report.ok:
            return name
    return None


def describe_model(
    arch: str, *, weights: str | os.PathLike[str] | None = None, num_classes: int | None = None
) -> dict[str, object]:
    """Build ``arch`` (loading ``weights`` strictly) and describe it: config, input settings, weights, size.

    Raises:
        The errors of :func:`create_model`.
    """
    model = create_model(arch, weights=weights, num_classes=num_classes)
    cfg = model.config
    return {
        "arch": cfg.name,
        "family": cfg.family,
        "num_classes": cfg.num_classes,
        "params": sum(p.numel() for p in model.parameters()),
        "input": asdict(cfg.input),
        "weights": model.weights_info.to_dict(),
        "published_weights": cfg.weights.url if cfg.weights else None,
    }


@dataclass(frozen=True)
class ModelSummary:
    """A registered architecture's size, for listings."""

    name: str
    family: str
    params: int
    gmacs: float
    input_size: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def summarize(name: str) -> ModelSummary:
    """Parameter count and GMACs (conv + linear multiply-accumulates) at the native input size.

    The network is built on the meta device, so no memory is allocated and nothing is computed.
    """
    cfg = get_config(name)
    with torch.device("meta"):
        model = ResNet(cfg).eval()
    macs = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.empty(1, *cfg.input.shape, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    params = sum(p.numel() for p in model.parameters())
    return ModelSummary(cfg.name, cfg.family, params, macs / 1e9, cfg.input.size)
