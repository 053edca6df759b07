"""BatchNorm re-estimation for models without trained weights.

A randomly initialised network in eval mode uses running statistics of mean 0 / variance 1, which do not match
its real activations: they shrink into denormals or explode, and timings and error figures become meaningless.
Re-estimating the statistics on a few seeded synthetic batches gives realistic activations.
"""

from __future__ import annotations

import torch
from torch import nn

from .synthetic import synthetic_images


@torch.no_grad()
def reestimate_batchnorm(
    model: nn.Module, *, input_size: int, batches: int = 3, batch_size: int = 8, seed: int = 0
) -> None:
    """Replace every BatchNorm's running statistics by their average over seeded synthetic batches.

    The model is left in eval mode. The result is deterministic for a given seed and torch build.

    Args:
        model: Network to update in place.
        input_size: Side of the square synthetic images.
        batches: Number of batches averaged.
        batch_size: Images per batch.
        seed: Seed of the synthetic data.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    generator = torch.Generator().manual_seed(seed)
    model.train()
    try:
        for _ in range(batches):
            model(synthetic_images(batch_size, input_size, generator))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
