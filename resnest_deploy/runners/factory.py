"""Open the right runner for an artifact file."""

from __future__ import annotations

from pathlib import Path

from ..errors import ArtifactError
from ..kinds import ENGINE_SUFFIXES, is_engine
from .base import Runner


def open_artifact_runner(path: str | Path, *, provider: str = "auto", threads: int | None = None,
                         cuda_graph: bool = False, device: int = 0, spinning: bool = True) -> Runner:
    """A runner for an ``.onnx`` file (ONNX Runtime) or an engine file (TensorRT, on CUDA device ``device``).

    Raises:
        ArtifactError: Missing file or unknown kind.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact")
    if path.suffix.lower() == ".onnx":
        from .ort_runner import OrtRunner

        return OrtRunner(path, provider=provider, threads=threads, spinning=spinning)
    if is_engine(path):
        from .trt_runner import TrtRunner

        return TrtRunner(path, device=device, cuda_graph=cuda_graph)
    raise ArtifactError(f"{path}: not an ONNX model or TensorRT engine (expected .onnx or "
                        f"{', '.join(ENGINE_SUFFIXES)})")


def target_note(meta, runner_name: str) -> str | None:
    """One line when an INT8 artifact runs on the runtime it was not made for (parity and bench print it)."""
    if meta is None or meta.precision != "int8":
        return None
    on_cpu = "CPUExecutionProvider" in runner_name
    if meta.target == "tensorrt" and on_cpu:
        return (f"{meta.arch} INT8 made for TensorRT runs on ONNX Runtime's CPU provider here: its signed Q/DQ are "
                "partly emulated, slower than FP32; for CPU serving make one with quantize --runtime cpu")
    if meta.target == "cpu" and not on_cpu:
        return (f"{meta.arch} INT8 made for ONNX Runtime's CPU provider runs on {runner_name} here; for GPUs use "
                "the --runtime tensorrt INT8 model")
    return None
