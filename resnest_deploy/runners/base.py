"""The runner interface shared by eager PyTorch, ONNX Runtime and TensorRT.

A runner is a context manager; ``infer(feed)`` takes and returns ``{name: ndarray}`` and checks names, dtypes and
shapes before running, so that parity and latency code can treat every backend alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..errors import ResnestDeployError


class InputMismatchError(ResnestDeployError):
    """A feed does not match the runner's inputs (names, dtype or shape)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of an input; ``None`` in the shape marks a dynamic axis."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


class Runner(ABC):
    """Base of all runners.

    Attributes:
        name: Short label for reports, e.g. ``eager[cpu,fp32]`` or ``onnxruntime[CPUExecutionProvider]``.
    """

    name: str = "runner"

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate(self) -> None:
        """Acquire resources (sessions, device memory). Called by ``__enter__``."""

    def deactivate(self) -> None:
        """Release resources. Called by ``__exit__``."""

    @property
    @abstractmethod
    def input_specs(self) -> list[TensorSpec]:
        """The inputs this runner expects."""

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference on a checked feed."""

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check ``feed`` against :attr:`input_specs`, run, and return outputs by name.

        Raises:
            InputMismatchError: Missing or unexpected names, wrong dtype, wrong rank or a wrong static axis.
        """
        specs = {s.name: s for s in self.input_specs}
        if set(feed) != set(specs):
            raise InputMismatchError(f"{self.name}: feed has {sorted(feed)}, expected {sorted(specs)}")
        for name, array in feed.items():
            spec = specs[name]
            if array.dtype != spec.dtype:
                raise InputMismatchError(f"{self.name}: input {name} is {array.dtype}, expected {spec.dtype}")
            if array.ndim != len(spec.shape) or any(
                want is not None and got != want for got, want in zip(array.shape, spec.shape)
            ):
                shown = ["?" if d is None else d for d in spec.shape]
                raise InputMismatchError(f"{self.name}: input {name} has shape {list(array.shape)}, expected {shown}")
        return self._infer(feed)
