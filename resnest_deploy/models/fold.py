"""Fold every BatchNorm into the conv before it, for export.

The exported graph is the same either way (the ONNX optimizer folds BatchNorm too), but tracing a network
without BatchNorm nodes is much faster: torch.export decomposes each BatchNorm into several ops.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .layers import ConvBnAct, SelectiveKernelAttention, SplitAttention
from .resnet import Block, ResNet


def _fold(conv_owner: nn.Module, conv_name: str, bn_owner: nn.Module, bn_name: str) -> None:
    conv, bn = getattr(conv_owner, conv_name), getattr(bn_owner, bn_name)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
        setattr(conv_owner, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(bn_owner, bn_name, nn.Identity())


def fold_batchnorm(model: ResNet) -> ResNet:
    """A copy of ``model`` in eval mode with every BatchNorm folded into its conv (same outputs up to rounding).

    Args:
        model: A network built from this package's backbone.

    Returns:
        The folded copy; ``model`` is left unchanged.
    """
    folded = copy.deepcopy(model).eval()
    stem = folded.conv1
    if isinstance(stem, nn.Sequential):
        _fold(stem, "0", stem, "1")
        _fold(stem, "3", stem, "4")
        _fold(stem, "6", folded, "bn1")
    else:
        _fold(folded, "conv1", folded, "bn1")
    for module in folded.modules():
        if isinstance(module, Block):
            _fold(module, "conv1", module, "bn1")
            _fold(module, "conv2", module, "bn2")
            if module.bottleneck:
                _fold(module, "conv3", module, "bn3")
            if module.downsample is not None:
                last = len(module.downsample) - 1
                _fold(module.downsample, str(last - 1), module.downsample, str(last))
        elif isinstance(module, SplitAttention):
            _fold(module, "conv", module, "bn0")
            _fold(module, "fc1", module, "bn1")
        elif isinstance(module, ConvBnAct):
            _fold(module, "conv", module, "bn")
        elif isinstance(module, SelectiveKernelAttention):
            _fold(module, "fc_reduce", module, "bn")
    return folded



