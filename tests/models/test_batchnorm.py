"""BatchNorm re-estimation gives realistic, deterministic activations."""

from __future__ import annotations

import torch

from resnest_deploy.models import create_model, get_config
from resnest_deploy.models.batchnorm import synthetic_images
from resnest_deploy.models.resnet import ResNet


def _logits(model, seed=9):
    x = synthetic_images(2, 64, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def test_random_init_is_deterministic_for_a_seed():
    a, b, c = (create_model("resnest14d", seed=s) for s in (1, 1, 2))
    assert torch.equal(_logits(a), _logits(b))
    assert not torch.allclose(_logits(a), _logits(c))
    assert a.weights_info.description == "random-init+bn-reestimated(seed=1)"
    assert not a.training


def _input_sensitivity(logits: torch.Tensor) -> float:
    """How much the two samples' logits differ, relative to their spread (near 0: the input barely matters)."""
    return ((logits[0] - logits[1]).std() / logits.std()).item()


def test_reestimation_makes_outputs_depend_on_the_input():
    for arch in ("resnet152", "resnest50"):
        raw = ResNet(get_config(arch)).eval()  # running stats still 0/1
        fixed = create_model(arch)
        raw_logits, fixed_logits = _logits(raw), _logits(fixed)
        assert torch.isfinite(fixed_logits).all()
        assert 1e-2 < fixed_logits.std().item() < 10, fixed_logits.std()
        # Without re-estimation activations explode or vanish and the logits barely depend on the image.
        assert _input_sensitivity(fixed_logits) > 2 * _input_sensitivity(raw_logits), arch
