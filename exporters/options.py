"""What ``export`` does: its options, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .graph import DEFAULT_OPSET

MIN_IMG_SIZE = 32  # five stride-2 stages: smaller inputs vanish before the classifier
MAX_IMG_SIZE = 2048  # activations grow with the square of the side; beyond this an export runs out of memory


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how. See ``resnest-deploy export --help`` for the meaning of each field."""

    arch: str
    weights: Path | None = None
    output: Path | None = None
    opset: int = DEFAULT_OPSET
    img_size: int | None = None
    batch: str = "dynamic"
    dynamic_hw: bool = False
    verify: bool = True
    keep_failed: bool = False
    num_classes: int | None = None
    seed: int = 0
