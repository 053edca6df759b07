"""Frozen configuration records: one :class:`ModelConfig` per named architecture.

Every variant of the family is data over one backbone (see :mod:`resnest_deploy.models.resnet`). The input
settings live beside the variant so that export, calibration, parity and benchmarks all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
STEM = "stem"
HEAD = "fc"
MAX_CLASSES = 1_000_000  # a classifier head larger than this is a typo (and gigabytes of weights)

Family = Literal["resnet", "resnext", "seresnet", "skresnet", "resnest"]
BlockType = Literal["basic", "bottleneck"]
MixerType = Literal["conv", "splat", "sk"]
ResizeMode = Literal["crop_then_resize", "resize_then_crop"]
Interpolation = Literal["bilinear", "bicubic"]


@dataclass(frozen=True)
class InputConfig:
    """Eval-time input settings of an architecture.

    Attributes:
        size: Square input side in pixels at which the model is evaluated.
        crop_pct: Fraction of the (resized) short side kept by the center crop.
        interpolation: Resampling filter used for resizing.
        resize_mode: ``crop_then_resize`` crops ``crop_pct`` of the short side and resizes that square to
            ``size`` (the official ResNeSt verify script); ``resize_then_crop`` resizes the short side to
            ``size / crop_pct`` and center-crops ``size`` (torchvision and timm).
        mean: Per-channel mean subtracted after scaling pixels to [0, 1].
        std: Per-channel standard deviation divided after the mean.
    """

    size: int = 224
    crop_pct: float = 0.875
    interpolation: Interpolation = "bilinear"
    resize_mode: ResizeMode = "resize_then_crop"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def shape(self) -> tuple[int, int, int]:
        """Channel-first shape of one image: ``(3, size, size)``."""
        return (3, self.size, self.size)

    def at_size(self, size: int) -> InputConfig:
        """These settings for another input side.

        The official ResNeSt crop is a function of the size (S / (S + 32)); other families keep their fraction.
        """
        if self.resize_mode == "crop_then_resize":
            return resnest_input(size)
        return replace(self, size=size)


def resnest_input(size: int) -> InputConfig:
    """Input settings of the official ResNeSt verify script: crop S/(S+32) of the short side, bicubic."""
    return InputConfig(
        size=size, crop_pct=size / (size + 32), interpolation="bicubic", resize_mode="crop_then_resize"
    )


@dataclass(frozen=True)
class WeightsRelease:
    """A published checkpoint that :func:`resnest_deploy.models.weights.download_weights` can fetch.

    Attributes:
        url: Address of the file; its name ends in ``-<sha256 prefix>.pth``.
        sha256_prefix: Leading hex digits of the file's SHA-256, checked after download.
        layout: Key layout of the file (``official``, ``timm`` or ``torchvision``).
    """

    url: str
    sha256_prefix: str
    layout: str


@dataclass(frozen=True)
class ModelConfig:
    """One named architecture of the ResNet family.

    The middle 3x3 stage of each block (``mixer``) is the only structural switch between ResNet/ResNeXt
    (plain or grouped conv), SKNet (selective kernel) and ResNeSt (split attention); ``se`` adds
    squeeze-excitation after the block's last conv (SENet).

    Attributes:
        name: Registry name, e.g. ``resnest50``.
        family: Family label shown to users.
        block: ``basic`` (two 3x3 convs, expansion 1) or ``bottleneck`` (1x1-3x3-1x1, expansion 4).
        layers: Number of blocks in each of the four stages.
        mixer: Kind of the 3x3 stage: ``conv``, ``splat`` (split attention) or ``sk`` (selective kernel).
        cardinality: Groups of the 3x3 stage.
        base_width: Width per group at the first stage (64 for plain ResNet).
        radix: Split-attention radix (``splat`` only); 1 means a sigmoid gate.
        sk_rd_ratio: Selective-kernel attention reduction ratio (``sk`` only).
        sk_rd_divisor: Selective-kernel attention channel divisor (``sk`` only).
        sk_split_input: Whether the selective-kernel paths each see a slice of the input channels.
        se: Squeeze-excitation after the last conv of each block.
        deep_stem: Three 3x3 convs instead of one 7x7 conv in the stem.
        stem_width: Width of the deep stem's first two convs (the stem outputs twice this).
        avg_down: Shortcut downsampling by average pooling then a stride-1 1x1 conv.
        avd: Replace the strided 3x3 conv by a stride-1 conv plus a 3x3 average pool.
        avd_first: Put that pool before the 3x3 stage instead of after it.
        num_classes: Classifier outputs.
        input: Eval input settings.
        weights: Published checkpoint, if any.
        timm_name: Name of the equivalent timm model, used by tests and key-layout detection.
        torchvision_name: Name of the equivalent torchvision model.
    """

    name: str
    family: Family
    block: BlockType
    layers: tuple[int, int, int, int]
    mixer: MixerType = "conv"
    cardinality: int = 1
    base_width: int = 64
    radix: int = 2
    sk_rd_ratio: float = 1.0 / 16
    sk_rd_divisor: int = 8
    sk_split_input: bool = True
    se: bool = False
    deep_stem: bool = False
    stem_width: int = 64
    avg_down: bool = False
    avd: bool = False
    avd_first: bool = False
    num_classes: int = 1000
    input: InputConfig = field(default_factory=InputConfig)
    weights: WeightsRelease | None = None
    timm_name: str | None = None
    torchvision_name: str | None = None

    def stage_names(self) -> tuple[str, ...]:
        """The network's stages in execution order: ``stem``, every block (``layer1.0`` ...), then the head ``fc``.

        These are the units of ``--exclude``, ``--sensitivity`` and ``--localize``; :meth:`ResNet.stages` names its
        modules with them.
        """
        blocks = tuple(f"layer{i}.{b}" for i, count in enumerate(self.layers, start=1) for b in range(count))
        return (STEM, *blocks, HEAD)

    @property
    def rsoftmax_count(self) -> int:
        """How many rSoftMax (radix > 1 split attention) patterns the exported graph has: one per block."""
        return sum(self.layers) if self.mixer == "splat" and self.radix > 1 else 0

    def __post_init__(self) -> None:
        if len(self.layers) != 4 or any(n < 1 for n in self.layers):
            raise ValueError(f"{self.name}: layers must be four positive counts, got {self.layers}")
        if self.block == "basic" and (self.cardinality != 1 or self.base_width != 64):
            raise ValueError(f"{self.name}: basic blocks take cardinality 1 and base_width 64")
        if self.mixer == "splat" and self.radix < 1:
            raise ValueError(f"{self.name}: split attention needs radix >= 1, got {self.radix}")
        if self.num_classes < 1:
            raise ValueError(f"{self.name}: num_classes must be >= 1, got {self.num_classes}")
