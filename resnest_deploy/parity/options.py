"""What ``parity`` compares: its options, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runners.ort_runner import Provider

DEFAULT_SAMPLES = 64


@dataclass(frozen=True)
class ParityOptions:
    """What to compare. See ``resnest-deploy parity --help``.

    ``model`` lets Python callers pass the eager network (from :func:`resnest_deploy.models.create_model`) instead
    of having it rebuilt from the artifact's metadata; it must be the network the artifact was exported from.
    """

    artifact: Path
    arch: str | None = None
    weights: Path | None = None
    data: Path | None = None
    samples: int | None = None
    batch: int = 8
    seed: int = 0
    tolerances: dict[str, float] = field(default_factory=dict)
    localize: bool = False
    class_index: Path | None = None
    provider: Provider | str = Provider.auto
    model: Any = field(default=None, compare=False, repr=False)  # a torch.nn.Module
