"""Every named architecture of the family, registered at import.

Sources: the official ResNeSt factories and verify script (configs, checkpoint hashes, crop S/(S+32) bicubic),
torchvision's ResNet/ResNeXt (IMAGENET1K_V1 weights: resize 256, crop 224, bilinear) and timm's SE/SK ResNets
(crop 0.875, bicubic).
"""

from __future__ import annotations

from dataclasses import replace

from .config import InputConfig, ModelConfig, WeightsRelease, resnest_input
from .registry import register

_RESNEST_URL = "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/{}-{}.pth"
_TORCHVISION_URL = "https://download.pytorch.org/models/{}-{}.pth"
_TIMM_INPUT = InputConfig(interpolation="bicubic")


def _official(name: str, sha: str) -> WeightsRelease:
    return WeightsRelease(_RESNEST_URL.format(name, sha), sha, "official")


def _torchvision(name: str, sha: str) -> WeightsRelease:
    return WeightsRelease(_TORCHVISION_URL.format(name, sha), sha, "torchvision")


_RESNEST = ModelConfig(
    name="resnest50", family="resnest", block="bottleneck", layers=(3, 4, 6, 3), mixer="splat", radix=2,
    deep_stem=True, stem_width=32, avg_down=True, avd=True, input=resnest_input(224),
)


def _resnest(name: str, **changes) -> ModelConfig:
    return replace(_RESNEST, name=name, **changes)


for _cfg in (
    _resnest("resnest14d", layers=(1, 1, 1, 1), timm_name="resnest14d"),
    _resnest("resnest26d", layers=(2, 2, 2, 2), timm_name="resnest26d"),
    _resnest("resnest50", weights=_official("resnest50", "528c19ca"), timm_name="resnest50d"),
    _resnest(
        "resnest101", layers=(3, 4, 23, 3), stem_width=64, input=resnest_input(256),
        weights=_official("resnest101", "22405ba7"), timm_name="resnest101e",
    ),
    _resnest(
        "resnest200", layers=(3, 24, 36, 3), stem_width=64, input=resnest_input(320),
        weights=_official("resnest200", "75117900"), timm_name="resnest200e",
    ),
    _resnest(
        "resnest269", layers=(3, 30, 48, 8), stem_width=64, input=resnest_input(416),
        weights=_official("resnest269", "0cc87c48"), timm_name="resnest269e",
    ),
):
    register(_cfg)

for _radix, _card, _width, _sha, _timm in (
    (1, 1, 64, "d8fbf808", None),
    (2, 1, 64, "44938639", None),
    (4, 1, 64, "f74f3fc3", None),
    (1, 2, 40, "32830b84", None),
    (2, 2, 40, "9d126481", None),
    (4, 2, 40, "41d14ed0", "resnest50d_4s2x40d"),
    (1, 4, 24, "d4a4f76f", "resnest50d_1s4x24d"),
):
    _name = f"resnest50_fast_{_radix}s{_card}x{_width}d"
    register(
        _resnest(
            _name, radix=_radix, cardinality=_card, base_width=_width, avd_first=True,
            weights=_official(_name, _sha), timm_name=_timm,
        )
    )

_RESNET = ModelConfig(name="resnet50", family="resnet", block="bottleneck", layers=(3, 4, 6, 3))

for _cfg, _sha in (
    (replace(_RESNET, name="resnet18", block="basic", layers=(2, 2, 2, 2)), "f37072fd"),
    (replace(_RESNET, name="resnet34", block="basic"), "b627a593"),
    (_RESNET, "0676ba61"),
    (replace(_RESNET, name="resnet101", layers=(3, 4, 23, 3)), "63fe2227"),
    (replace(_RESNET, name="resnet152", layers=(3, 8, 36, 3)), "394f9c45"),
    (replace(_RESNET, name="resnext50_32x4d", family="resnext", cardinality=32, base_width=4), "7cdf4587"),
    (
        replace(_RESNET, name="resnext101_32x8d", family="resnext", layers=(3, 4, 23, 3), cardinality=32,
                base_width=8),
        "8ba56ff5",
    ),
):
    register(replace(_cfg, torchvision_name=_cfg.name, weights=_torchvision(_cfg.name, _sha)))

register(replace(_RESNET, name="seresnet50", family="seresnet", se=True, input=_TIMM_INPUT, timm_name="seresnet50"))

_SK_BASIC = dict(family="skresnet", block="basic", mixer="sk", sk_rd_ratio=1 / 8, sk_rd_divisor=16, input=_TIMM_INPUT)
register(replace(_RESNET, name="skresnet18", layers=(2, 2, 2, 2), timm_name="skresnet18", **_SK_BASIC))
register(replace(_RESNET, name="skresnet34", timm_name="skresnet34", **_SK_BASIC))
register(
    replace(
        _RESNET, name="skresnext50_32x4d", family="skresnet", mixer="sk", cardinality=32, base_width=4,
        sk_rd_ratio=1 / 16, sk_rd_divisor=32, sk_split_input=False, input=_TIMM_INPUT,
        timm_name="skresnext50_32x4d",
    )
)
