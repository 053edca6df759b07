"""INT8 for ONNX Runtime's CPU provider (``quantize --precision int8 --target cpu``).

TensorRT's INT8 (signed symmetric activations, Q/DQ only on Conv/Gemm inputs) runs slower than FP32 on ONNX
Runtime's CPU kernels. This graph is made for those kernels instead, with ONNX Runtime's own quantizer, chosen by
measurement (docs/quantization.md):

1. exact float rewrites, so every op has a fast integer kernel: ``ReduceMean`` over H and W becomes
   ``GlobalAveragePool`` (QLinearGlobalAveragePool), and ``AveragePool`` becomes a depthwise ``Conv`` with constant
   weights 1/k² where that is the same computation (padding counted, or no padding and no partial window), since
   ONNX Runtime's QLinearAveragePool is several times slower than a depthwise QLinearConv;
2. ONNX Runtime's pre-processing (symbolic shape inference, graph optimizations);
3. QDQ format, unsigned 8-bit activations with zero points and signed 8-bit per-channel weights (U8S8), on every op
   ONNX Runtime quantizes, so whole stretches of the network stay in INT8 (QLinearConv, QLinearAdd, QLinearMul,
   QLinearSoftmax, QLinearGlobalAveragePool), except the classifier: 8-bit logits flip close top-1 classes (3
   points of top-1 on the trained test model), and the head costs nothing in float.

Activation ranges come from this package's calibration (the same data, sampling, cache and methods as the TensorRT
graph, asymmetric here, for any number of images) and are handed to ``quantize_static`` as its calibration cache.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from resnest_deploy.exporters.graph_index import GraphIndex, attr, drop_unused_initializers, name_nodes
from resnest_deploy.models.config import HEAD

from .int8 import Method, collect_ranges
from .layers import layer_map

ProgressFn = Callable[[int, int], None]
# The quantizer's calibration method for each of ours (the cache names it; ranges are ours either way).
_ORT_METHOD = {"max": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    inferred = shape_inference.infer_shapes(model)
    return {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in (*inferred.graph.value_info, *inferred.graph.input)}


def _pool_as_conv(node: onnx.NodeProto,
                  shape: list[int | None] | None) -> tuple[onnx.NodeProto, onnx.TensorProto] | None:
    """A depthwise Conv computing exactly what an AveragePool computes, or None when it would differ."""
    kernel = list(attr(node, "kernel_shape", []))
    strides = list(attr(node, "strides", [1] * len(kernel)))
    pads = list(attr(node, "pads", [0] * 2 * len(kernel)))
    if len(kernel) != 2 or not shape or len(shape) != 4 or any(d is None for d in shape[1:]):
        return None
    if attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or attr(node, "dilations", None):
        return None
    if any(pads) and not attr(node, "count_include_pad", 0):
        return None  # border windows average fewer values
    if attr(node, "ceil_mode", 0) and any((shape[2 + i] + pads[i] + pads[i + 2] - kernel[i]) % strides[i]
                                          for i in range(2)):
        return None  # a partial last window
    channels = shape[1]
    weight = numpy_helper.from_array(np.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), np.float32),
                                     f"{node.name}_average_weight")
    conv = helper.make_node("Conv", [node.input[0], weight.name], list(node.output), name=node.name,
                            group=channels, kernel_shape=kernel, strides=strides, pads=pads)
    return conv, weight


def cpu_rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a float graph with the exact rewrites of step 1 (module docstring)."""
    shapes = _static_shapes(model)
    index = GraphIndex(model.graph)
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if node.op_type == "ReduceMean" and attr(node, "keepdims", 1) == 1:
            axes = index.const(node.input[1]) if len(node.input) > 1 else np.asarray(attr(node, "axes", []))
            rank = len(shapes.get(node.input[0]) or [])
            if axes is not None and rank == 4 and sorted(int(a) % 4 for a in np.ravel(axes)) == [2, 3]:
                nodes.append(helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name))
                continue
        if node.op_type == "AveragePool":
            replaced = _pool_as_conv(node, shapes.get(node.input[0]))
            if replaced is not None:
                nodes.append(replaced[0])
                weights.append(replaced[1])
                continue
        nodes.append(node)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(weights)
    drop_unused_initializers(out.graph)
    return out


def quantize_for_cpu(model: onnx.ModelProto, data: np.ndarray, *, method: str, stage_names: Sequence[str],
                     exclude: Sequence[str] = (), progress: ProgressFn | None = None) -> onnx.ModelProto:
    """The INT8 graph for ONNX Runtime's CPU provider (see the module docstring).

    Args:
        model: The FP32 graph.
        data: Preprocessed calibration images [N, 3, H, W].
        method: ``max``, ``entropy`` or ``percentile``.
        stage_names: The model's stages, for ``exclude``.
        exclude: ``--exclude`` patterns (layers or stages kept in float), checked to match something.
        progress: Called with (images done, total) during calibration.

    Raises:
        ConfigError: An ``exclude`` pattern matches nothing.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="resnest-deploy-cpu-int8-") as tmp:
        rewritten, pre, cache, out = (Path(tmp) / n for n in ("rewritten.onnx", "pre.onnx", "ranges.json",
                                                              "int8.onnx"))
        onnx.save_model(cpu_rewrite(model), str(rewritten))
        with _quiet():
            quant_pre_process(str(rewritten), str(pre))
        prepared = onnx.load(str(pre))
        name_nodes(prepared)
        onnx.save_model(prepared, str(pre))
        layers = layer_map(prepared, stage_names)
        layers.check_patterns(exclude, "--exclude")
        patterns = (*exclude, HEAD)  # the classifier stays float: 8-bit logits flip close top-1 classes
        kept_float = [name for name in layers.layers if layers.matches(name, patterns)]
        ranges = collect_ranges(prepared, None, data, method=Method(method).value, symmetric=False, per_call=8,
                                progress=progress)
        save_tensors_data(ranges, cache)
        with _quiet():
            quantize_static(
                str(pre), str(out), None, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, per_channel=True, calibration_cache_path=str(cache),
                calibrate_method=getattr(CalibrationMethod, _ORT_METHOD[Method(method).value]),
                nodes_to_exclude=kept_float)
        return onnx.load(str(out))


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantization tools print and log advice as they go; the tool reports for itself."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
