"""Exporters: PyTorch -> ONNX (with graph checks and verification) and ONNX -> TensorRT engine."""
