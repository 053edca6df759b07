"""One ResNet-style backbone for the whole family; a :class:`ModelConfig` picks the variant.

State-dict keys follow torchvision for plain ResNet/ResNeXt and the official ResNeSt code (which timm shares)
for ResNeSt, so those checkpoints load without renaming. timm's SKNet layout is renamed on load
(:mod:`resnest_deploy.models.weights`).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import SelectiveKernel, SplitAttention, SqueezeExcite

STAGE_PLANES = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
LAST_NORM_GAMMA = 0.25


def _conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def _mixer(cfg: ModelConfig, cin: int, cout: int, stride: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Build the 3x3 stage: (module, norm, act); norm and act are Identity when the module has its own."""
    if cfg.mixer == "splat":
        module: nn.Module = SplitAttention(cin, cout, stride=stride, cardinality=cfg.cardinality, radix=cfg.radix)
    elif cfg.mixer == "sk":
        module = SelectiveKernel(
            cin, cout, stride=stride, groups=cfg.cardinality, rd_ratio=cfg.sk_rd_ratio,
            rd_divisor=cfg.sk_rd_divisor, split_input=cfg.sk_split_input,
        )
    else:
        return _conv3x3(cin, cout, stride, cfg.cardinality), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    return module, nn.Identity(), nn.Identity()


def _downsample(cfg: ModelConfig, cin: int, cout: int, stride: int) -> nn.Sequential:
    if cfg.avg_down:
        pool: nn.Module = (
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        )
        return nn.Sequential(pool, _conv1x1(cin, cout), nn.BatchNorm2d(cout))
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class Block(nn.Module):
    """Basic (3x3-3x3) or bottleneck (1x1-3x3-1x1) residual block with a pluggable 3x3 stage."""

    def __init__(self, cfg: ModelConfig, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bottleneck = cfg.block == "bottleneck"
        expansion = 4 if self.bottleneck else 1
        outplanes = planes * expansion
        use_avd = cfg.avd and stride > 1
        mixer_stride = 1 if use_avd else stride
        pool = nn.AvgPool2d(3, stride, padding=1) if use_avd else nn.Identity()
        self.avd_first = pool if cfg.avd_first else nn.Identity()
        self.avd_last = nn.Identity() if cfg.avd_first else pool
        if self.bottleneck:
            width = int(planes * cfg.base_width / 64) * cfg.cardinality
            self.conv1 = _conv1x1(inplanes, width)
            self.bn1 = nn.BatchNorm2d(width)
            self.act1: nn.Module = nn.ReLU(inplace=True)
            self.conv2, self.bn2, self.act2 = _mixer(cfg, width, width, mixer_stride)
            self.conv3 = _conv1x1(width, outplanes)
            self.bn3 = nn.BatchNorm2d(outplanes)
        else:
            self.conv1, self.bn1, self.act1 = _mixer(cfg, inplanes, planes, mixer_stride)
            self.conv2 = _conv3x3(planes, outplanes)
            self.bn2 = nn.BatchNorm2d(outplanes)
        self.se = SqueezeExcite(outplanes) if cfg.se else None
        needs_shortcut = stride != 1 or inplanes != outplanes
        self.downsample = _downsample(cfg, inplanes, outplanes, stride) if needs_shortcut else None
        self.act_out = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.bottleneck:
            out = self.act1(self.bn1(self.conv1(x)))
            out = self.avd_last(self.act2(self.bn2(self.conv2(self.avd_first(out)))))
            out = self.bn3(self.conv3(out))
        else:
            out = self.avd_last(self.act1(self.bn1(self.conv1(self.avd_first(x)))))
            out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return self.act_out(out + shortcut)


class ResNet(nn.Module):
    """The family's backbone: stem, four stages of :class:`Block`, global average pool, linear classifier.

    Attributes:
        config: The :class:`ModelConfig` this network was built from.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        if cfg.deep_stem:
            sw = cfg.stem_width
            self.conv1: nn.Module = nn.Sequential(
                _conv3x3(3, sw, stride=2), nn.BatchNorm2d(sw), nn.ReLU(inplace=True),
                _conv3x3(sw, sw), nn.BatchNorm2d(sw), nn.ReLU(inplace=True),
                _conv3x3(sw, sw * 2),
            )
            inplanes = sw * 2
        else:
            self.conv1 = nn.Conv2d(3, cfg.stem_width, 7, stride=2, padding=3, bias=False)
            inplanes = cfg.stem_width
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        expansion = 4 if cfg.block == "bottleneck" else 1
        for index, (planes, stride, count) in enumerate(zip(STAGE_PLANES, STAGE_STRIDES, cfg.layers), start=1):
            blocks = []
            for b in range(count):
                blocks.append(Block(cfg, inplanes, planes, stride if b == 0 else 1))
                inplanes = planes * expansion
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, cfg.num_classes)
        self.num_features = inplanes
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for convs, unit BatchNorm, damped last BatchNorm per block; PyTorch's default classifier.

        The last BatchNorm of each residual branch starts at gamma 0.25. Random-init networks with BatchNorm are
        chaotic (small perturbations grow with depth); damping the branches keeps activations in a realistic
        range and float rounding from being amplified (BatchNorm folding error of resnest269 drops from 2e-4 to
        4e-5 relative against gamma 0.5), while every branch still contributes to the output (timm's gamma 0
        would make the 3x3 stage irrelevant).
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Block):
                nn.init.constant_((m.bn3 if m.bottleneck else m.bn2).weight, LAST_NORM_GAMMA)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """Named stages in execution order (the stem, then each block), named by ``config.stage_names()``.

        The stem is represented by its last module (the max pool), whose output is the stem's output.
        """
        modules = [self.maxpool] + [block for index in range(1, 5) for block in getattr(self, f"layer{index}")]
        return list(zip(self.config.stage_names()[: len(modules)], modules))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Run the stem and the four stages; returns the last feature map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.forward_features(x), 1)
        return self.fc(torch.flatten(x, 1))
