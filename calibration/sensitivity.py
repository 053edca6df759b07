"""``quantize --sensitivity``: quantize one block at a time and rank blocks by the error each adds alone."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from resnest_deploy import interrupts
from resnest_deploy.metrics import ParityMetrics, compare_logits
from resnest_deploy.ort_session import run_graph
from resnest_deploy.progress import ProgressFn

from .int8 import QdqPlacement, insert_qdq


@dataclass(frozen=True)
class BlockSensitivity:
    """The error one block adds when it alone is quantized."""

    block: str
    sites: int
    error: float  # 1 - mean cosine vs FP32 with only this block quantized
    top1_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compare_graphs(reference: onnx.ModelProto, candidate: onnx.ModelProto, x: np.ndarray) -> ParityMetrics:
    """Run both graphs on ``x`` with ONNX Runtime (CPU) and compare the candidate's logits with the reference's."""
    return compare_logits(run_graph(reference, x), run_graph(candidate, x))


def block_sensitivity(
    model: onnx.ModelProto, plan: QdqPlacement, amax: dict[str, float], x: np.ndarray,
    *, progress: ProgressFn | None = None,
) -> tuple[list[BlockSensitivity], list[str]]:
    """Quantize one block at a time; rank blocks by the error (1 - mean cosine vs FP32) each adds alone.

    Returns the ranking (worst first) and suggested ``--exclude`` patterns: blocks whose error is at least
    three times the median block's and among the three worst.
    """
    ref = run_graph(model, x)
    blocks = plan.blocks()
    ranking = []
    for i, block in enumerate(blocks):
        interrupts.check()
        sub = plan.only([block])
        agreement = compare_logits(ref, run_graph(insert_qdq(model, sub, amax), x))
        ranking.append(BlockSensitivity(block, len(sub.uses), max(0.0, 1.0 - agreement.cosine_mean),
                                        agreement.top1_agreement))
        if progress:
            progress("sensitivity", i + 1, len(blocks))
    ranking.sort(key=lambda s: s.error, reverse=True)
    median = statistics.median(s.error for s in ranking) if ranking else 0.0
    suggestions = [s.block if s.block in ("stem", "fc") else f"{s.block}.*"
                   for s in ranking[:3] if s.error > 0 and s.error >= 3 * median]
    return ranking, suggestions
