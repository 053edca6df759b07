"""The engine inspector's per-layer summary: layer count, counts by layer type and by output precision."""

from __future__ import annotations

import json
from collections import Counter
from types import ModuleType
from typing import Any


def inspect_engine(trt: ModuleType, logger: Any, data: bytes) -> dict[str, Any]:
    """Per-layer summary from the engine inspector: layer count, counts by layer type and by output precision."""
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        return {"error": "the built engine could not be deserialized for inspection"}
    inspector = engine.create_engine_inspector()
    raw = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        layers = json.loads(raw).get("Layers", [])
    except (TypeError, ValueError):
        return {"error": "engine inspector returned no JSON"}
    kinds: Counter[str] = Counter()
    precisions: Counter[str] = Counter()
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        kinds[str(layer.get("LayerType", "unknown"))] += 1
        outputs = layer.get("Outputs") or [{}]
        fmt = str(outputs[0].get("Format/Datatype", "")) if isinstance(outputs[0], dict) else ""
        precisions[next((p for p in ("Int8", "FP16", "FP32", "BF16", "FP8") if p.lower() in fmt.lower()),
                        "other")] += 1
    return {"count": len(layers), "by_type": dict(kinds.most_common()),
            "by_output_precision": dict(precisions.most_common())}
