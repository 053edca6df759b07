"""What ``parity`` compares: its options, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MAX_BATCH, MAX_SAMPLES, CheckpointError, ConfigError, check_minimums
from ..metrics import Tolerances
from ..paths import existing_file
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
    triton: str | None = None  # HOST:PORT of a Triton gRPC endpoint serving the artifact (the files' bytes sent)
    triton_model: str | None = None  # the served model [default: the ensemble named after the arch]
    model: Any = field(default=None, compare=False, repr=False)  # a torch.nn.Module


def validate_options(options: ParityOptions) -> None:
    """Check the options that need no model or artifact, before anything slow starts.

    Raises:
        ConfigError: A bad count, seed, provider, tolerance name or path.
        CheckpointError: ``--weights`` is not a file.
    """
    check_minimums(("--batch", options.batch, 1, MAX_BATCH), ("--seed", options.seed, 0),
                   ("--samples", options.samples, 1, MAX_SAMPLES))
    if options.provider not in [p.value for p in Provider]:
        raise ConfigError(f"unknown provider {options.provider!r}; choose {', '.join(p.value for p in Provider)}")
    Tolerances().with_overrides(options.tolerances)
    if options.weights is not None:
        existing_file(options.weights, CheckpointError, "checkpoint file")
    if options.data is not None and not Path(options.data).is_dir():
        raise ConfigError(f"--data {options.data}: not a folder of images")
    if options.triton is not None:
        if options.data is None:
            raise ConfigError("--triton sends image files: give them with --data")
        if options.localize:
            raise ConfigError("--localize runs the artifact's graph here; it cannot be combined with --triton")
        if ":" not in options.triton or not options.triton.rsplit(":", 1)[1].isdigit():
            raise ConfigError(f"--triton {options.triton!r}: expected HOST:PORT of Triton's gRPC endpoint, "
                              "e.g. 127.0.0.1:8001")
    if options.class_index is not None:
        if options.data is None:
            raise ConfigError("--class-index maps the class folders of --data; give --data too")
        existing_file(options.class_index, ConfigError, "class index file")
