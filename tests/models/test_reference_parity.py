"""Every registered architecture matches its timm/torchvision reference when given the reference's weights."""

from __future__ import annotations

import pytest
import torch

from resnest_deploy.models import ResNet, get_config, list_models, reestimate_batchnorm
from resnest_deploy.models.synthetic import synthetic_images
from resnest_deploy.models.weights import expected_shapes, match_layout
from tests.references import REFERENCES, build_reference, randomize_norms

TOLERANCE = 1e-5


def test_every_registered_arch_has_a_reference():
    missing = sorted(set(list_models()) - set(REFERENCES))
    assert not missing, f"registered architectures without a reference test: {missing}"


def _compare(arch: str, size: int, batch: int = 2) -> float:
    reference = build_reference(arch)
    randomize_norms(reference, seed=1)
    reestimate_batchnorm(reference, input_size=size, batches=2, batch_size=4, seed=2)
    ours = ResNet(get_config(arch))
    layout, converted, report = match_layout(reference.state_dict(), expected_shapes(ours))
    assert report.ok, f"{arch}: reference keys do not map onto ours ({layout.name}): {report.describe()}"
    ours.load_state_dict(converted, strict=True)
    ours.eval()
    x = synthetic_images(batch, size, torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.shape == expected.shape == (batch, ours.config.num_classes)
    assert expected.std() > 1e-3, "reference output is degenerate; the comparison would prove nothing"
    return (actual - expected).abs().max().item()


@pytest.mark.parametrize("arch", sorted(REFERENCES))
def test_matches_reference_at_reduced_size(arch):
    # 65 is odd: it exercises ceil_mode pooling in the avg-down shortcut.
    error = _compare(arch, size=65)
    assert error <= TOLERANCE, f"{arch}: max-abs {error:.3g} > {TOLERANCE}"


def test_resnest50_matches_reference_at_native_size():
    size = get_config("resnest50").input.size
    error = _compare("resnest50", size=size, batch=1)
    assert error <= TOLERANCE, f"resnest50 @ {size}: max-abs {error:.3g} > {TOLERANCE}"
