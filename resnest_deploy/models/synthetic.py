"""Seeded synthetic image-like inputs: BatchNorm re-estimation, export verification, parity and latency inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def synthetic_images(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Normalised image-like tensors, deterministic for a generator state.

    Smooth low-frequency colour fields plus a little fine noise, with a per-image gain and colour shift: like
    natural photos, images differ in global brightness and colour, so pooled features (and the attention
    BatchNorms that see them) vary between images. White noise would drive random-init networks far outside
    the statistics they were re-estimated on.
    """
    coarse = torch.randn(batch, 3, max(size // 16, 2), max(size // 16, 2), generator=generator)
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = smooth + 0.25 * torch.randn(batch, 3, size, size, generator=generator)
    gain = 0.5 + torch.rand(batch, 1, 1, 1, generator=generator)
    shift = 0.5 * torch.randn(batch, 3, 1, 1, generator=generator)
    return x * gain + shift
