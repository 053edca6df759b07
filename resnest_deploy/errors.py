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


class BudgetNotMetError(VerificationError):
    """No mix of INT8 and float blocks met the accuracy budget; the best one found was written under a name that
    says so (``path``)."""

    def __init__(self, message: str, *, path: str, details: list[str] | None = None) -> None:
        super().__init__(message, details=details)
        self.path = path


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


# The largest count or seed any option takes unless it names its own: the C int that torch, ONNX Runtime and
# numpy's seeding take without overflow.
MAX_INT = 2**31 - 1
MAX_BATCH = 4096  # images in one inference: the largest dynamic batch an export declares
MAX_SAMPLES = 100_000  # images compared or timed in one run (their logits are held in memory)
MAX_CALIB = 20_000  # calibration images (the preprocessed tensor is held in memory: 12 GB at 224 px)
MAX_ROUNDS = 1_000_000  # timed or warm-up rounds


def check_minimums(*limits: tuple) -> None:
    """Check ``(option, value, minimum[, maximum])`` tuples (maximum: :data:`MAX_INT`); a value of None was not
    given and passes.

    Raises:
        ConfigError: The first value outside its range (or not an integer).
    """
    for name, value, low, *high in limits:
        top = high[0] if high else MAX_INT
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")
        if value > top:
            raise ConfigError(f"{name} must be <= {top}, got {value}")


def check_number(name: str, value: float | None, low: float, high: float, *, low_open: bool = False) -> None:
    """Check that a float a user gave is finite and within ``[low, high]`` (``(low, high]`` with ``low_open``);
    None was not given and passes.

    Raises:
        ConfigError: NaN, infinity, or a value outside the range, naming the option.
    """
    if value is None:
        return
    import math

    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    below = number <= low if low_open else number < low
    if not math.isfinite(number) or below or number > high:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be a finite number in {bracket}{low:g}, {high:g}], got {value!r}")
