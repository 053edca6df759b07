"""What ``export`` does: its options, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from resnest_deploy.errors import MAX_BATCH, ConfigError, check_minimums
from resnest_deploy.models import get_config
from resnest_deploy.models.config import MAX_CLASSES

from .graph import DEFAULT_OPSET, MIN_OPSET

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


def validate_export(options: ExportOptions) -> tuple[int, int | None]:
    """Check options before any slow work; returns (image size, fixed batch or None).

    Raises:
        ConfigError, UnknownArchError: The first bad option.
    """
    max_opset = onnx.defs.onnx_opset_version()
    if options.opset < MIN_OPSET:
        raise ConfigError(
            f"--opset {options.opset} refused: before opset 13 Softmax flattens its input to 2-D around the axis, "
            f"which changes rSoftMax's result; use {MIN_OPSET}..{max_opset} (default {DEFAULT_OPSET})"
        )
    if options.opset > max_opset:
        raise ConfigError(f"--opset {options.opset} is newer than the installed onnx supports ({max_opset})")
    cfg = get_config(options.arch)
    size = cfg.input.size if options.img_size is None else options.img_size
    if not MIN_IMG_SIZE <= size <= MAX_IMG_SIZE:
        raise ConfigError(f"--img-size must be {MIN_IMG_SIZE}..{MAX_IMG_SIZE}, got {size}")
    check_minimums(("--seed", options.seed, 0), ("--num-classes", options.num_classes, 1, MAX_CLASSES))
    if options.batch == "dynamic":
        return size, None
    try:
        batch = int(options.batch)
    except ValueError:
        raise ConfigError(f"--batch-axis must be 'dynamic' or a positive integer, got {options.batch!r}") from None
    if not 1 <= batch <= MAX_BATCH:
        raise ConfigError(f"--batch-axis must be 'dynamic' or an integer in 1..{MAX_BATCH}, got {batch}")
    return size, batch
