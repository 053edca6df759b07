"""Runners: eager PyTorch, ONNX Runtime and (on GPU hosts) TensorRT behind one interface."""

from ..lazy import lazy_exports

_NAMES = {"Runner": "base", "TensorSpec": "base", "open_artifact_runner": "factory", "OrtRunner": "ort_runner",
          "Provider": "ort_runner", "TorchRunner": "torch_runner"}
__all__ = sorted(_NAMES)
__getattr__ = lazy_exports(__name__, _NAMES)
