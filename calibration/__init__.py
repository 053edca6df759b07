"""Calibration: image data and eval preprocessing shared with parity, and FP16/INT8 ONNX production."""
