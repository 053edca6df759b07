"""Verify an exported ONNX graph against the eager model with ONNX Runtime on the CPU.

Inputs are seeded synthetic image-like tensors (see :func:`resnest_deploy.models.synthetic.synthetic_images`).
The tolerance is relative to the logits' scale: max-abs <= 1e-4 * max(1, max|logit|).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
import torch

from resnest_deploy import interrupts
from resnest_deploy.models.synthetic import synthetic_images
from resnest_deploy.ort_session import ort_session

from .graph import INPUT_NAME, OUTPUT_NAME
from .graph_index import set_dynamic_hw

RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Comparison:
    """One eager-vs-ONNX Runtime comparison: passes when ``max_abs`` is finite and within ``tolerance``."""

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
        return {**asdict(self), "passed": self.passed}


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
        interrupts.check()
        key = size == static_hw
        if key not in sessions:
            sessions[key] = ort_session(model if key else _dynamic_hw_copy(model), threads=threads)
        x = synthetic_images(batch, size, generator)
        with torch.no_grad():
            expected = eager(x).numpy()
        actual = sessions[key].run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        max_logit = float(np.abs(expected).max())
        error = float(np.abs(actual.astype(np.float64) - expected).max()) if actual.shape == expected.shape else np.inf
        results.append(Comparison(f"batch {batch} @ {size}", batch, size, error, max_logit,
                                  RELATIVE_TOLERANCE * max(1.0, max_logit)))
    return results


def _dynamic_hw_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    set_dynamic_hw(out)
    return out
