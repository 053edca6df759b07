"""resnest-deploy: ResNeSt-family classifiers from PyTorch to ONNX, FP16/INT8 and TensorRT, with parity reports."""

__version__ = "0.1.0"
