"""Runners: eager PyTorch, ONNX Runtime and (on GPU hosts) TensorRT behind one interface."""

from .base import Runner, TensorSpec
from .factory import open_artifact_runner
from .ort_runner import OrtRunner
from .torch_runner import TorchRunner

__all__ = ["OrtRunner", "Runner", "TensorSpec", "TorchRunner", "open_artifact_runner"]
