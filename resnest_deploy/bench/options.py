"""What ``bench`` times: its options, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ..errors import MAX_BATCH, MAX_ROUNDS, ConfigError, check_minimums
from ..kinds import is_engine
from .contenders import eager_contenders


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


def validate_options(options: BenchOptions) -> None:
    """Check the options before any model is built.

    Raises:
        ConfigError: Unknown backend, bad counts, a backend that does not fit an artifact, or no GPU for trt.
    """
    names = [b.value for b in Backend]
    unknown = [str(b) for b in options.backends if b not in names]
    if unknown:
        raise ConfigError(f"unknown backend {', '.join(unknown)}; choose from {', '.join(names)}")
    if not options.batches:
        raise ConfigError("--bench-batch needs at least one batch size")
    check_minimums(*(("--bench-batch", b, 1, MAX_BATCH) for b in options.batches))
    check_minimums(("--iters", options.iters, 1, MAX_ROUNDS), ("--warmup", options.warmup, 0, MAX_ROUNDS),
                   ("--threads", options.threads, 1, 1024), ("--seed", options.seed, 0))
    if {Backend.trt, Backend.compile} & set(options.backends):  # only these need to ask torch for a GPU
        import torch

        if Backend.trt in options.backends and not torch.cuda.is_available():
            raise ConfigError("the trt backend needs an NVIDIA GPU with TensorRT; no CUDA device found")
        eager_contenders(tuple(str(getattr(b, "value", b)) for b in options.backends), torch.cuda.is_available())
    if not options.artifacts and not {Backend.eager, Backend.compile} & set(options.backends):
        raise ConfigError("nothing to time: give an artifact or the eager backend")
    for path in options.artifacts:
        if Path(path).suffix.lower() == ".onnx" and Backend.ort not in options.backends:
            raise ConfigError(f"{path} is an ONNX file but the ort backend is not selected")
        if is_engine(path) and Backend.trt not in options.backends:
            raise ConfigError(f"{path} is a TensorRT engine: add the trt backend (--backends ...,trt)")
