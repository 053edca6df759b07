"""What ``bench`` times: its options, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class Backend(str, Enum):
    """What ``bench`` times: the eager model (on the GPU where there is one), torch.compile (CUDA only), ONNX
    files on ONNX Runtime, engines on TensorRT."""

    eager = "eager"
    compile = "compile"
    ort = "ort"
    trt = "trt"


@dataclass(frozen=True)
class BenchOptions:
    """What to time. See ``resnest-deploy bench --help``."""

    artifacts: tuple[Path, ...]
    arch: str | None = None
    weights: Path | None = None
    backends: tuple[Backend | str, ...] = (Backend.eager, Backend.ort)
    batches: tuple[int, ...] = (1, 8)
    warmup: int = 3
    iters: int = 20
    threads: int | None = None
    seed: int = 0
    cuda_graph: bool = False  # TensorRT engines replay a captured CUDA graph per batch size
