"""The engine inspector's per-layer summary: layer count, counts by layer type and by output precision.

With a dynamic batch, the inspector only knows layer formats once an execution context with every input shape
set is attached ("N/A due to dynamic shapes" otherwise), so one is made at the profile's opt shape. A
version-compatible plan embeds the lean runtime, so the inspecting runtime must allow host code too. The JSON
layout differs by major: TensorRT 10.x writes each output's ``Format/Datatype`` in one field, 11.x splits it into
``Format`` and ``DataType``; both are read.
"""

from __future__ import annotations

import json
from collections import Counter
from types import ModuleType
from typing import Any

# Output precision by the words either layout uses, most specific first ("BFloat16" before "Float").
_PRECISION_WORDS = (("INT8", ("int8",)), ("BF16", ("bf16", "bfloat16")), ("FP8", ("fp8",)),
                    ("FP16", ("fp16", "half")), ("INT32", ("int32",)), ("INT64", ("int64",)), ("BOOL", ("bool",)),
                    ("FP32", ("fp32", "float")))


def output_precision(output: Any) -> str:
    """The precision of one layer output in the inspector's JSON (10.x or 11.x layout), or ``unknown``."""
    if not isinstance(output, dict):
        return "unknown"
    text = " ".join(str(output.get(key, "")) for key in ("DataType", "Format/Datatype", "Format")).lower()
    if "n/a" in text and "dynamic" in text:
        return "unknown"
    return next((name for name, words in _PRECISION_WORDS if any(w in text for w in words)), "unknown")


def summarize_layers(raw: str) -> dict[str, Any]:
    """Counts by layer type and by output precision from the inspector's JSON text."""
    try:
        layers = json.loads(raw).get("Layers", [])
    except (TypeError, ValueError, AttributeError):
        return {"error": "engine inspector returned no JSON"}
    kinds: Counter[str] = Counter()
    precisions: Counter[str] = Counter()
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        kinds[str(layer.get("LayerType", "unknown"))] += 1
        outputs = layer.get("Outputs") or [{}]
        precisions[output_precision(outputs[0])] += 1
    return {"count": sum(kinds.values()), "by_type": dict(kinds.most_common()),
            "by_output_precision": dict(precisions.most_common())}


def inspect_engine(trt: ModuleType, logger: Any, data: bytes, input_name: str, opt_shape: tuple[int, ...], *,
                   version_compatible: bool = False) -> dict[str, Any]:
    """Per-layer summary of a serialized engine, inspected with a context at ``opt_shape``."""
    runtime = trt.Runtime(logger)
    if version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        return {"error": "the built engine could not be deserialized for inspection"}
    context = engine.create_execution_context()
    context.set_input_shape(input_name, tuple(opt_shape))
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    return summarize_layers(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
