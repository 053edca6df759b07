"""Reference implementations (timm, torchvision) of every registered architecture, for tests only.

The five ResNeSt-50 "fast" ablation variants that timm does not register by name are built with timm's own
ResNeSt code configured like the official factories (radix, cardinality, base width, avd_first).
"""

from __future__ import annotations

import torch
from torch import nn

from resnest_deploy.models import get_config, list_models

# arch -> (library, model name, extra kwargs)
REFERENCES: dict[str, tuple[str, str, dict]] = {}
for _name in list_models():
    _cfg = get_config(_name)
    if _cfg.timm_name:
        REFERENCES[_name] = ("timm", _cfg.timm_name, {})
    elif _cfg.torchvision_name:
        REFERENCES[_name] = ("torchvision", _cfg.torchvision_name, {})
for _radix, _card, _width in ((1, 1, 64), (2, 1, 64), (4, 1, 64), (1, 2, 40), (2, 2, 40)):
    REFERENCES[f"resnest50_fast_{_radix}s{_card}x{_width}d"] = (
        "timm", "resnest50d_4s2x40d",
        {"cardinality": _card, "base_width": _width,
         "block_args": {"radix": _radix, "avd": True, "avd_first": True}},
    )


def build_reference(arch: str) -> nn.Module:
    """The reference model for ``arch``, randomly initialised (no download)."""
    library, name, kwargs = REFERENCES[arch]
    if library == "timm":
        import timm

        return timm.create_model(name, pretrained=False, **kwargs)
    import torchvision

    return getattr(torchvision.models, name)(weights=None, **kwargs)


@torch.no_grad()
def randomize_norms(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm a random affine transform.

    timm zero-initialises the last BatchNorm of each block, which would make the residual branch (and so the
    split-attention or selective-kernel stage under test) contribute nothing; random gammas make every branch
    count.
    """
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(0.3 + 0.7 * torch.rand(m.weight.shape, generator=generator))
            m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=generator))
