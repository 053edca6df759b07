"""ONNX Runtime runner. Reports the execution provider really used, not the one asked for."""

from __future__ import annotations

import os
from enum import Enum
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..ort_session import default_threads, ort_session
from .base import Runner, TensorSpec


class Provider(str, Enum):
    """ONNX Runtime execution provider: ``auto`` (CUDA when present, else CPU) or one named provider."""

    auto = "auto"
    cuda = "cuda"
    tensorrt = "tensorrt"
    cpu = "cpu"


_PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def resolve_providers(wanted: str, available: list[str]) -> list[str]:
    """Providers to ask ONNX Runtime for: ``auto`` = CUDA then CPU as available; or one of tensorrt/cuda/cpu.

    Raises:
        ConfigError: Unknown name, or a provider this onnxruntime build does not have.
    """
    if wanted == Provider.auto:
        return [p for p in (_PROVIDERS["cuda"], _PROVIDERS["cpu"]) if p in available]
    if wanted not in _PROVIDERS:
        raise ConfigError(f"unknown provider {wanted!r}; choose {', '.join(p.value for p in Provider)}")
    provider = _PROVIDERS[Provider(wanted).value]
    if provider not in available:
        raise ConfigError(f"{provider} is not in this onnxruntime build (available: {', '.join(available)})")
    return [provider] + ([_PROVIDERS["cpu"]] if provider != _PROVIDERS["cpu"] else [])


class OrtRunner(Runner):
    """Runs an ONNX model (file or in-memory ModelProto) on ONNX Runtime.

    Args:
        model: Path to an .onnx file, or a ModelProto.
        provider: ``auto``, ``tensorrt``, ``cuda`` or ``cpu``.
        threads: Intra-op threads (default: torch's thread count, the same as the eager runner).
        outputs: Output names to fetch (default: all graph outputs).
        spinning: Let idle threads spin (off when timing interleaved contenders, see ``ort_session``).
    """

    def __init__(self, model: str | os.PathLike[str] | Any, *, provider: str = "cpu", threads: int | None = None,
                 outputs: list[str] | None = None, spinning: bool = True) -> None:
        self.model = model
        self.provider = provider
        self.threads = threads or default_threads()
        self.outputs = outputs
        self.spinning = spinning
        self.session = None
        self.name = "onnxruntime"

    def activate(self) -> None:
        import onnxruntime as ort

        providers = resolve_providers(self.provider, ort.get_available_providers())
        self.session = ort_session(self.model, providers=providers, threads=self.threads, spinning=self.spinning)
        self.name = f"onnxruntime[{self.session.get_providers()[0]}]"

    def deactivate(self) -> None:
        self.session = None

    @property
    def used_provider(self) -> str:
        """The execution provider ONNX Runtime actually placed the session on."""
        return self.session.get_providers()[0] if self.session else "not started"

    @property
    def input_specs(self) -> list[TensorSpec]:
        if self.session is None:
            raise ConfigError("runner used outside its `with` block")
        return [TensorSpec(i.name, np.dtype(_ORT_TYPES.get(i.type, np.float32)),
                           tuple(d if isinstance(d, int) else None for d in i.shape))
                for i in self.session.get_inputs()]

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.outputs or [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feed)))
