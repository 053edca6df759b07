"""Typed errors of resnest-deploy.

Every error a user can cause derives from :class:`ResnestDeployError`. The CLI turns these into one red line on
stderr and the error's ``exit_code`` (2 for bad input, 1 for a failed verification), never a traceback.
"""

from __future__ import annotations


class ResnestDeployError(Exception):
    """Base of all errors raised on purpose by resnest-deploy."""

    exit_code: int = 2


class UnknownArchError(ResnestDeployError, ValueError):
    """The architecture name is not in the registry."""


class ConfigError(ResnestDeployError, ValueError):
    """An option or a combination of options is invalid."""


class CheckpointError(ResnestDeployError):
    """A checkpoint file cannot be read: missing, truncated, not a checkpoint, or carrying code."""


class WeightsMismatchError(ResnestDeployError):
    """A checkpoint was read but its tensors do not fit the architecture."""


class DownloadError(ResnestDeployError):
    """A weights download failed or its hash did not match."""


class OutputError(ResnestDeployError):
    """An output path cannot be written."""


class ArtifactError(ResnestDeployError):
    """An artifact (ONNX file, engine) is missing, unreadable, or breaks the graph contract."""


class ExportFailedError(ResnestDeployError):
    """torch's ONNX exporter failed on a model."""

    exit_code = 1


class VerificationError(ResnestDeployError):
    """An artifact was produced but breaks its contract or does not match the eager model within tolerance.

    Attributes:
        details: One line per failed check, printed under the message.
    """

    exit_code = 1

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = list(details or [])


class GpuUnavailableError(ResnestDeployError):
    """A step needs an NVIDIA GPU (and TensorRT), and this machine has none."""


class EngineMismatchError(ArtifactError):
    """A TensorRT engine was built for another GPU or another TensorRT version than this host has."""


class EngineBuildError(ResnestDeployError):
    """TensorRT could not parse or build a network; ``details`` lists the parser's errors."""

    exit_code = 1

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = list(details or [])


def check_minimums(*limits: tuple[str, int | None, int]) -> None:
    """Check ``(option, value, minimum)`` triples; a value of None was not given and passes.

    Raises:
        ConfigError: The first value below its minimum (or not an integer count).
    """
    for name, value, low in limits:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ConfigError(f"{name} must be >= {low}, got {value}")
