"""The one place ONNX Runtime sessions are made, so verification, quantization, parity and latency share settings.

``onnxruntime`` (and torch, for the default thread count) are imported lazily: ``--help``, model building and
graph checks never load them.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import ArtifactError


def default_threads() -> int:
    """torch's intra-op thread count, so eager PyTorch and ONNX Runtime run with the same number of threads."""
    import torch

    return torch.get_num_threads()


def ort_session(model: Any, *, providers: list[str] | None = None, threads: int | None = None,
                optimization: str | None = None, spinning: bool = True) -> Any:
    """An ONNX Runtime ``InferenceSession`` for a ModelProto or a file path.

    Args:
        model: ``onnx.ModelProto``, or the path of an ``.onnx`` file.
        providers: Execution providers in order of preference [default: CPU].
        threads: Intra-op threads [default: :func:`default_threads`].
        optimization: Graph optimization level name (``disable``, ``basic``, ``extended``, ``all``) [default:
            ONNX Runtime's].
        spinning: Let idle intra-op threads spin. Off for interleaved timing: an idle session's spinning pool
            takes a core from the contender timed next (resnest50 FP32 at batch 1: 50 ms interleaved with
            spinning, 27 ms without, 25 ms alone on this project's 2-core machines).

    Raises:
        ArtifactError: ONNX Runtime cannot load the model.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimization:
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
    source = str(model) if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for invalid graphs and files
        first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"ONNX Runtime cannot load the model: {first}") from None


def run_graph(session: Any, x: Any, *, step: int | None = 16) -> Any:
    """The first output of a session (or of a ModelProto/file, opened with :func:`ort_session`) on ``x``, in
    chunks of ``step`` images; a graph with a fixed batch runs in chunks of its own batch, the last one padded.

    Returns:
        float64 array [N, ...] (the comparisons in :mod:`resnest_deploy.metrics` work in float64).
    """
    import numpy as np

    from .batching import run_batched

    if not hasattr(session, "run"):
        session = ort_session(session)
    first = session.get_inputs()[0]
    fixed = first.shape[0] if isinstance(first.shape[0], int) else None
    return run_batched(lambda a: session.run(None, {first.name: a})[0], x, fixed=fixed, step=step).astype(np.float64)
