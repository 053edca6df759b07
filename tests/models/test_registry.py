"""Registry behaviour and published sizes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from resnest_deploy.errors import UnknownArchError
from resnest_deploy.models import get_config, list_models, register, summarize
from tests.references import build_reference

REQUIRED = {
    "resnest14d", "resnest26d", "resnest50", "resnest101", "resnest200", "resnest269", "resnest50_fast_1s1x64d",
    "resnest50_fast_2s1x64d", "resnest50_fast_4s1x64d", "resnest50_fast_1s2x40d", "resnest50_fast_2s2x40d",
    "resnest50_fast_4s2x40d", "resnest50_fast_1s4x24d", "resnet18", "resnet34", "resnet50", "resnet101",
    "resnet152", "resnext50_32x4d", "resnext101_32x8d", "seresnet50", "skresnet18", "skresnet34",
    "skresnext50_32x4d",
}

# Published parameter counts (official ResNeSt README/ablation, torchvision docs, timm model cards).
PUBLISHED_PARAMS = {
    "resnest50": (27_483_240, 0), "resnest101": (48.28e6, 0.005e6), "resnest200": (70.20e6, 0.005e6),
    "resnest269": (110.93e6, 0.005e6), "resnet50": (25_557_032, 0), "resnext50_32x4d": (25_028_904, 0),
    "resnext101_32x8d": (88_791_336, 0), "seresnet50": (28.09e6, 0.005e6), "skresnext50_32x4d": (27.48e6, 0.005e6),
}


def test_required_names_are_registered():
    assert REQUIRED <= set(list_models())


def test_duplicates_are_refused():
    with pytest.raises(ValueError, match="already registered"):
        register(replace(get_config("resnet18")))


def test_wildcards():
    assert list_models("resnest50_fast_*") == sorted(n for n in REQUIRED if n.startswith("resnest50_fast_"))
    assert list_models("SK*") == ["skresnet18", "skresnet34", "skresnext50_32x4d"]
    assert list_models("nothing*") == []


def test_unknown_arch_suggests_close_names():
    with pytest.raises(UnknownArchError, match="resnest50"):
        get_config("resnest5O")


def test_configs_are_frozen():
    with pytest.raises(AttributeError):
        get_config("resnest50").radix = 4  # type: ignore[misc]


@pytest.mark.parametrize("arch, published", sorted(PUBLISHED_PARAMS.items()))
def test_param_counts_match_published(arch, published):
    count, slack = published
    assert abs(summarize(arch).params - count) <= slack


@pytest.mark.parametrize("arch", ["resnest50", "skresnet34", "resnext50_32x4d", "seresnet50"])
def test_param_counts_match_reference(arch):
    reference = build_reference(arch)
    assert summarize(arch).params == sum(p.numel() for p in reference.parameters())


def test_input_settings():
    sizes = {name: get_config(name).input.size for name in list_models()}
    assert sizes.pop("resnest101") == 256 and sizes.pop("resnest200") == 320 and sizes.pop("resnest269") == 416
    assert set(sizes.values()) == {224}
    official = get_config("resnest200").input
    assert official.interpolation == "bicubic" and official.resize_mode == "crop_then_resize"
    assert official.crop_pct == pytest.approx(320 / 352)
    assert get_config("resnet50").input.interpolation == "bilinear"
    assert get_config("skresnet18").input.interpolation == "bicubic"


def test_macs_of_resnest50_match_published():
    assert summarize("resnest50").gmacs == pytest.approx(5.37, abs=0.01)
    assert summarize("resnest269").gmacs == pytest.approx(77.35, abs=0.01)
