"""Verify an exported ONNX graph against the eager model with ONNX Runtime on the CPU.

Inputs are seeded synthetic image-like tensors (see :func:`resnest_deploy.models.batchnorm.synthetic_images`).
The tolerance is relative to the logits' scale: max-abs <= 1e-4 * max(1, max|logit|).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import torch

from resnest_deploy.models.batchnorm import synthetic_images

from .graph import INPUT_NAME, OUTPUT_NAME

RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Comparison:
    """One eager-vs-ONNX Runtime comparison."""

    label: str
    batch: int
    size: int
    max_abs: float
    max_logit: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs)) and self.max_abs <= self.tolerance

    def to_dict(self) -> dict[str, object]:
        return {**self.__dict__, "passed": self.passed}


def fit_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """``x`` cut or padded (by repeating its last sample) to exactly ``batch`` samples."""
    if len(x) >= batch:
        return x[:batch]
    return np.concatenate([x, np.repeat(x[-1:], batch - len(x), axis=0)])


def run_batched(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, *, fixed: int | None,
                step: int | None = None) -> np.ndarray:
    """Run ``x`` in chunks: of a graph's fixed batch (the last chunk padded, its padding dropped from the
    result), else of ``step`` samples (default: all at once)."""
    size = fixed or step or len(x)
    outputs = []
    for start in range(0, len(x), size):
        chunk = x[start:start + size]
        outputs.append(run(fit_batch(chunk, fixed) if fixed else chunk)[: len(chunk)])
    return np.concatenate(outputs)


def with_dynamic_hw(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose input height and width are named dynamic axes and whose stored inner shapes are dropped.

    Valid only for graphs with no shape-dependent constants, which the graph contract guarantees.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    dims = out.graph.input[0].type.tensor_type.shape.dim
    for index, name in ((2, "height"), (3, "width")):
        dims[index].Clear()
        dims[index].dim_param = name
    del out.graph.value_info[:]
    return out


def ort_session(model: onnx.ModelProto | str, *, providers: list[str] | None = None, threads: int | None = None):
    """An ONNX Runtime session for a ModelProto or a file path, with torch's thread count unless told otherwise.

    The one place sessions are made, so verification, parity and latency use the same settings.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=providers or ["CPUExecutionProvider"])


def compare_with_eager(
    eager: torch.nn.Module, model: onnx.ModelProto, *, cases: list[tuple[int, int]], seed: int = 0,
    threads: int | None = None,
) -> list[Comparison]:
    """Run the eager model and the ONNX graph on the same seeded inputs for each (batch, size) case.

    Sizes other than the graph's own input size run on a copy with dynamic height and width.

    Args:
        eager: The eager model in eval mode.
        model: The exported graph.
        cases: (batch, size) pairs.
        seed: Seed of the synthetic inputs.
        threads: ONNX Runtime intra-op threads (default: torch's, so both sides use the same count).

    Returns:
        One :class:`Comparison` per case.
    """
    dims = model.graph.input[0].type.tensor_type.shape.dim
    static_hw = dims[2].dim_value if dims[2].HasField("dim_value") else None
    sessions = {}
    results = []
    generator = torch.Generator().manual_seed(seed)
    for batch, size in cases:
        key = size == static_hw
        if key not in sessions:
            sessions[key] = ort_session(model if key else with_dynamic_hw(model), threads=threads)
        x = synthetic_images(batch, size, generator)
        with torch.no_grad():
            expected = eager(x).numpy()
        actual = sessions[key].run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        max_logit = float(np.abs(expected).max())
        error = float(np.abs(actual.astype(np.float64) - expected).max()) if actual.shape == expected.shape else np.inf
        results.append(Comparison(f"batch {batch} @ {size}", batch, size, error, max_logit,
                                  RELATIVE_TOLERANCE * max(1.0, max_logit)))
    return results
