"""The pluggable 3x3 stages (split attention, selective kernel) and squeeze-excitation.

Export rules that shape this code: no operation reads the batch size from a tensor (reshapes use -1 for the
batch and Python ints elsewhere), and branches are combined by Split and Add, never by stack/cat, so that the
ONNX graph has no Shape, Gather, Concat or Expand nodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, not below ``min_value`` nor ``round_limit`` of it."""
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def _add_all(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Sum a list of tensors with plain adds (no stack, no implicit 0 + tensor)."""
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total


def radix_softmax(x: torch.Tensor, *, radix: int, cardinality: int) -> torch.Tensor:
    """rSoftMax of ResNeSt: softmax across the radix splits within each cardinal group.

    ``x`` is fc2's output of shape (N, radix * C, 1, 1) in cardinal-major order; the result is in the
    radix-major order of the split-attention conv output. With radix 1 it is a sigmoid gate.

    Args:
        x: Attention logits, (N, radix * C, 1, 1).
        radix: Number of splits.
        cardinality: Number of cardinal groups.

    Returns:
        Attention weights of the same shape as ``x``.
    """
    if radix == 1:
        return torch.sigmoid(x)
    channels = x.shape[1]
    per_group = channels // (cardinality * radix)
    x = x.reshape(-1, cardinality, radix, per_group).transpose(1, 2)
    x = torch.softmax(x, dim=1)
    return x.reshape(-1, channels, 1, 1)


class SplitAttention(nn.Module):
    """ResNeSt's SplAtConv2d: a radix-split grouped conv whose splits are mixed by channel attention.

    State-dict keys follow the official code (``conv``, ``bn0``, ``fc1``, ``bn1``, ``fc2``), which timm shares.
    """

    def __init__(
        self, in_channels: int, channels: int, *, stride: int = 1, cardinality: int = 1, radix: int = 2,
        reduction_factor: int = 4,
    ) -> None:
        super().__init__()
        inter_channels = max(in_channels * radix // reduction_factor, 32)
        self.radix = radix
        self.cardinality = cardinality
        self.channels = channels
        self.conv = nn.Conv2d(
            in_channels, channels * radix, 3, stride=stride, padding=1, groups=cardinality * radix, bias=False
        )
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter_channels, 1, groups=cardinality)
        self.bn1 = nn.BatchNorm2d(inter_channels)
        self.fc2 = nn.Conv2d(inter_channels, channels * radix, 1, groups=cardinality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn0(self.conv(x)))
        splits = list(torch.split(x, self.channels, dim=1)) if self.radix > 1 else [x]
        gap = F.adaptive_avg_pool2d(_add_all(splits), 1)
        gap = self.relu(self.bn1(self.fc1(gap)))
        attn = radix_softmax(self.fc2(gap), radix=self.radix, cardinality=self.cardinality)
        if self.radix == 1:
            return x * attn
        weights = torch.split(attn, self.channels, dim=1)
        return _add_all([w * s for w, s in zip(weights, splits)])


class ConvBnAct(nn.Module):
    """Conv, BatchNorm and optional ReLU with timm's ``ConvNormAct`` key names (``conv``, ``bn``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, dilation: int = 1,
        groups: int = 1, act: bool = True,
    ) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SelectiveKernelAttention(nn.Module):
    """SKNet's path-selection attention (timm key names: ``fc_reduce``, ``bn``, ``fc_select``)."""

    def __init__(self, channels: int, num_paths: int, attn_channels: int) -> None:
        super().__init__()
        self.num_paths = num_paths
        self.channels = channels
        self.fc_reduce = nn.Conv2d(channels, attn_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(attn_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn_channels, channels * num_paths, 1, bias=False)

    def forward(self, gap: torch.Tensor) -> torch.Tensor:
        x = self.fc_select(self.act(self.bn(self.fc_reduce(gap))))
        x = torch.softmax(x.reshape(-1, self.num_paths, self.channels), dim=1)
        return x.reshape(-1, self.num_paths * self.channels, 1, 1)


class SelectiveKernel(nn.Module):
    """SKNet's selective-kernel conv as timm builds it: a 3x3 and a dilated 3x3 path mixed by attention."""

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, groups: int = 1,
        rd_ratio: float = 1.0 / 16, rd_divisor: int = 8, split_input: bool = True,
    ) -> None:
        super().__init__()
        num_paths = 2
        if split_input and in_channels % num_paths:
            raise ValueError(f"split_input needs in_channels divisible by {num_paths}, got {in_channels}")
        self.split_input = split_input
        self.in_channels = in_channels
        self.out_channels = out_channels
        path_in = in_channels // num_paths if split_input else in_channels
        groups = min(out_channels, groups)
        self.paths = nn.ModuleList(
            ConvBnAct(path_in, out_channels, 3, stride=stride, dilation=d, groups=groups) for d in (1, 2)
        )
        attn_channels = make_divisible(out_channels * rd_ratio, divisor=rd_divisor)
        self.attn = SelectiveKernelAttention(out_channels, num_paths, attn_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split_input:
            inputs = torch.split(x, self.in_channels // len(self.paths), dim=1)
        else:
            inputs = [x] * len(self.paths)
        outs = [path(inp) for path, inp in zip(self.paths, inputs)]
        attn = self.attn(F.adaptive_avg_pool2d(_add_all(outs), 1))
        weights = torch.split(attn, self.out_channels, dim=1)
        return _add_all([w * o for w, o in zip(weights, outs)])


class SqueezeExcite(nn.Module):
    """SENet's channel gate with timm's key names (``fc1``, ``fc2``) and reduction (1/16, multiple of 8)."""

    def __init__(self, channels: int, rd_ratio: float = 1.0 / 16, rd_divisor: int = 8) -> None:
        super().__init__()
        rd_channels = make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, rd_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(gate)
