"""Open the right runner for an artifact file."""

from __future__ import annotations

from pathlib import Path

from ..errors import ArtifactError
from .base import Runner


def open_artifact_runner(path: str | Path, *, provider: str = "auto", threads: int | None = None,
                         cuda_graph: bool = False) -> Runner:
    """A runner for an ``.onnx`` file (ONNX Runtime) or an ``.engine``/``.plan`` file (TensorRT).

    Raises:
        ArtifactError: Missing file or unknown kind.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from .ort_runner import OrtRunner

        return OrtRunner(path, provider=provider, threads=threads)
    if suffix in (".engine", ".plan", ".trt"):
        from .trt_runner import TrtRunner

        return TrtRunner(path, cuda_graph=cuda_graph)
    raise ArtifactError(f"{path}: not an ONNX model or TensorRT engine (expected .onnx, .engine or .plan)")
