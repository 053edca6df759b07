"""Verify an exported ONNX graph against the eager model with ONNX Runtime on the CPU.

Inputs are seeded synthetic image-like tensors (see :func:`resnest_deploy.models.synthetic.synthetic_images`).
Each case is judged like every other comparison of the tool (:mod:`resnest_deploy.metrics`): the export limit is
``max_abs_rel <= 1e-4`` (:func:`~resnest_deploy.metrics.max_abs_rel`).
"""

from __future__ import annotations

import onnx
import torch

from resnest_deploy import interrupts
from resnest_deploy.checks import Check
from resnest_deploy.metrics import Tolerances, compare_logits, judge
from resnest_deploy.models.synthetic import synthetic_images
from resnest_deploy.ort_session import ort_session, run_graph

from .graph_index import set_dynamic_hw

EXPORT_LIMITS = Tolerances(max_abs_rel=1e-4)


def compare_with_eager(
    eager: torch.nn.Module, model: onnx.ModelProto, *, cases: list[tuple[int, int]], seed: int = 0,
    threads: int | None = None,
) -> list[Check]:
    """Run the eager model and the ONNX graph on the same seeded inputs for each (batch, size) case.

    Sizes other than the graph's own input size run on a copy with dynamic height and width.

    Args:
        eager: The eager model in eval mode.
        model: The exported graph.
        cases: (batch, size) pairs.
        seed: Seed of the synthetic inputs.
        threads: ONNX Runtime intra-op threads (default: torch's, so both sides use the same count).

    Returns:
        One :class:`Check` per case, named ``batch B @ S``: its value is ``max_abs_rel``, its limit the export's.
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
        actual = run_graph(sessions[key], x.numpy(), step=None)
        verdict = judge(compare_logits(expected, actual), EXPORT_LIMITS)[0] if actual.shape == expected.shape else \
            Check("max_abs_rel", False, f"shape {list(actual.shape)} vs eager {list(expected.shape)}", float("inf"),
                  EXPORT_LIMITS.max_abs_rel)
        results.append(Check(f"batch {batch} @ {size}", verdict.passed, f"max_abs_rel {verdict.detail}",
                             verdict.value, verdict.limit))
    return results


def _dynamic_hw_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    set_dynamic_hw(out)
    return out
