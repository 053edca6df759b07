"""INT8 for ONNX Runtime's CPU provider (``quantize --precision int8 --runtime cpu``).

TensorRT's INT8 (signed symmetric activations, Q/DQ only on Conv/Gemm inputs) runs slower than FP32 on ONNX
Runtime's CPU kernels. This graph is made for those kernels instead, with ONNX Runtime's own quantizer, chosen by
measurement (docs/quantization.md):

1. exact float rewrites, so every op has a fast integer kernel: ``ReduceMean`` over H and W becomes
   ``GlobalAveragePool`` (QLinearGlobalAveragePool), and ``AveragePool`` becomes a depthwise ``Conv`` with constant
   weights 1/k² where that is the same computation (padding counted, or no padding and no partial window), since
   ONNX Runtime's QLinearAveragePool is several times slower than a depthwise QLinearConv; and split-attention's
   grouped convolution followed by a Split into radix parts becomes one pair of convolutions per part
   (:func:`separate_radix_parts`), since ONNX Runtime's grouped QLinearConv is far slower than separate ones;
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from resnest_deploy.exporters.graph_index import (GraphIndex, attr, default_opset, drop_unused_initializers,
                                                  name_nodes, set_nodes)
from resnest_deploy.models.config import HEAD
from resnest_deploy.progress import ProgressFn

from .int8 import Method, collect_ranges
from .layers import PART_MARK, LayerMap, layer_map

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


_PER_CHANNEL = ("Relu", "AveragePool", "MaxPool")  # ops that work on each channel alone, with no weights


@dataclass(frozen=True)
class _RadixSite:
    """Split-attention's radix cut: ``[conv_a ->] between... -> conv_b -> relu_b -> split``.

    ``conv_b`` is grouped with a multiple of the parts as groups; ``between`` are per-channel ops (Relu, pools,
    depthwise Conv: avd's pooling before the grouped conv) from the top down; ``conv_a`` is the ungrouped Conv
    above them, or None when there is none to cut (the parts then read slices of ``conv_b``'s input).
    """

    split: onnx.NodeProto
    relu_b: onnx.NodeProto
    conv_b: onnx.NodeProto
    between: tuple[onnx.NodeProto, ...]
    conv_a: onnx.NodeProto | None


def _const_weights(node: onnx.NodeProto, index: GraphIndex) -> bool:
    return all(index.const(name) is not None for name in node.input[1:3] if name)


def _depthwise(node: onnx.NodeProto, index: GraphIndex) -> bool:
    weight = index.const(node.input[1]) if node.op_type == "Conv" else None
    return weight is not None and weight.shape[1] == 1 and attr(node, "group", 1) == weight.shape[0] > 1


def _single(name: str, index: GraphIndex, op: str | tuple[str, ...]) -> onnx.NodeProto | None:
    """The producer of ``name`` when it is an ``op`` with one output that only one node uses (not a graph output)."""
    node = index.producer(name)
    ops = (op,) if isinstance(op, str) else op
    if (node is None or node.op_type not in ops or len(node.output) != 1 or len(index.users(name)) != 1
            or any(output.name == name for output in index.graph.output)):
        return None
    return node


def _radix_site(split: onnx.NodeProto, index: GraphIndex, opset: int) -> _RadixSite | None:
    """The radix cut ending at ``split`` (see :class:`_RadixSite`), or None when ``split`` is something else."""
    if split.op_type != "Split" or attr(split, "axis", 0) not in (1, -3) or len(split.output) < 2:
        return None
    sizes = index.const(split.input[1]) if len(split.input) > 1 and split.input[1] else attr(split, "split", None)
    if (len(split.input) > 1 and split.input[1] and sizes is None) or (sizes is not None and len(set(sizes)) != 1):
        return None  # sizes computed at run time, or unequal parts
    parts = len(split.output)
    relu_b = _single(split.input[0], index, "Relu")
    conv_b = _single(relu_b.input[0], index, "Conv") if relu_b is not None else None
    if conv_b is None or attr(conv_b, "group", 1) % parts or not _const_weights(conv_b, index):
        return None
    between: list[onnx.NodeProto] = []
    node = _single(conv_b.input[0], index, (*_PER_CHANNEL, "Conv"))
    while node is not None and (node.op_type in _PER_CHANNEL or _depthwise(node, index)):
        if node.op_type == "Conv" and (attr(node, "group", 1) % parts or not _const_weights(node, index)):
            break
        between.insert(0, node)
        node = _single(node.input[0], index, (*_PER_CHANNEL, "Conv"))
    if node is not None and node.op_type == "Conv" and attr(node, "group", 1) == 1 and _const_weights(node, index):
        return _RadixSite(split, relu_b, conv_b, tuple(between), node)
    if opset < 10:
        return None  # Slice takes its bounds as inputs from opset 10 on
    return _RadixSite(split, relu_b, conv_b, (), None)


def _part_of(node: onnx.NodeProto, index: GraphIndex, source: str, output: str, part: int, parts: int,
             weights: list[onnx.TensorProto]) -> onnx.NodeProto:
    """Output channels ``part`` of ``parts`` of ``node`` as a node of their own, reading ``source``.

    A Conv's weight and bias are cut along their first axis; a grouped Conv keeps the part's groups (which read
    only the part's share of the input channels), an ungrouped one reads all of ``source``.
    """
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name, copy.input[0], copy.output[0] = f"{node.name}{PART_MARK}{part}", source, output
    if node.op_type != "Conv":
        return copy
    for i, name in enumerate(node.input[1:3], start=1):
        if name:
            whole = index.const(name)
            size = whole.shape[0] // parts
            weights.append(numpy_helper.from_array(np.ascontiguousarray(whole[part * size:(part + 1) * size]),
                                                   f"{name}{PART_MARK}{part}"))
            copy.input[i] = weights[-1].name
    groups = attr(node, "group", 1)
    kept = [a for a in copy.attribute if a.name != "group"]
    del copy.attribute[:]
    copy.attribute.extend([*kept, helper.make_attribute("group", groups // parts if groups > 1 else 1)])
    return copy


def _channel_slice(source: str, part: int, parts: int, channels: int,
                   weights: list[onnx.TensorProto]) -> onnx.NodeProto:
    """A Slice of ``source``'s channels for ``part`` (when there is no Conv above to cut)."""
    size = channels // parts
    bounds = [numpy_helper.from_array(np.asarray([v], np.int64), f"{source}{PART_MARK}{part}_{what}")
              for what, v in (("start", part * size), ("end", (part + 1) * size), ("axis", 1))]
    weights.extend(bounds)
    return helper.make_node("Slice", [source, *(b.name for b in bounds)], [f"{source}{PART_MARK}{part}"],
                            name=f"{source}{PART_MARK}{part}_slice")


def _part_nodes(site: _RadixSite, index: GraphIndex, part: int,
                weights: list[onnx.TensorProto]) -> list[onnx.NodeProto]:
    """The nodes computing radix part ``part`` of ``site`` on their own, ending in the Split's output ``part``."""
    parts = len(site.split.output)
    if site.conv_a is not None:
        nodes = [_part_of(site.conv_a, index, site.conv_a.input[0], f"{site.conv_a.output[0]}{PART_MARK}{part}",
                          part, parts, weights)]
    else:
        channels = index.const(site.conv_b.input[1]).shape[1] * attr(site.conv_b, "group", 1)
        nodes = [_channel_slice(site.conv_b.input[0], part, parts, channels, weights)]
    for node in (*site.between, site.conv_b, site.relu_b):
        output = site.split.output[part] if node is site.relu_b else f"{node.output[0]}{PART_MARK}{part}"
        nodes.append(_part_of(node, index, nodes[-1].output[0], output, part, parts, weights))
    return nodes


def separate_radix_parts(model: onnx.ModelProto) -> onnx.ModelProto:
    """Compute each radix part of split-attention with convolutions of its own (exact, in place).

    ``Conv -> Relu [-> avd pool] -> grouped Conv -> Relu -> Split`` becomes, per part, the part's output channels
    of the first Conv -> Relu [-> pool] -> the part's groups of the grouped Conv -> Relu. A part's groups read only
    the part's own input channels, so this is the same arithmetic without the Split and with ungrouped (or
    fewer-group) convolutions: ONNX Runtime runs a grouped integer convolution well below the speed of separate
    ones (docs/quantization.md). With no Conv above to cut, each part reads a Slice of the grouped Conv's input.
    Weight slices are named ``<weight>#part<k>`` so they keep their module's layer name.
    """
    name_nodes(model)
    index = GraphIndex(model.graph)
    replaced: dict[str, list[onnx.NodeProto]] = {}
    removed: set[str] = set()
    weights: list[onnx.TensorProto] = []
    opset = default_opset(model)
    for split in model.graph.node:
        site = _radix_site(split, index, opset)
        if site is None:
            continue
        first = site.conv_a if site.conv_a is not None else site.conv_b
        replaced[first.name] = [n for part in range(len(split.output))
                                for n in _part_nodes(site, index, part, weights)]
        removed.update(n.name for n in (*site.between, site.conv_b, site.relu_b, split) if n is not first)
    set_nodes(model.graph, [n for node in model.graph.node if node.name not in removed
                            for n in replaced.get(node.name, [node])])
    model.graph.initializer.extend(weights)
    drop_unused_initializers(model.graph)
    return model


def cpu_rewrite(model: onnx.ModelProto, *, radix_parts: bool = True) -> onnx.ModelProto:
    """A copy of a float graph with the exact rewrites of step 1 (module docstring); ``radix_parts`` False keeps
    split-attention's grouped convolutions (for measuring what the cut gains)."""
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
    set_nodes(out.graph, nodes)
    out.graph.initializer.extend(weights)
    drop_unused_initializers(out.graph)
    return separate_radix_parts(out) if radix_parts else out


def quantize_for_cpu(model: onnx.ModelProto, data: np.ndarray, *, method: str, stage_names: Sequence[str],
                     exclude: Sequence[str] = (), progress: ProgressFn | None = None) -> onnx.ModelProto:
    """The INT8 graph for ONNX Runtime's CPU provider (see the module docstring).

    Args:
        model: The FP32 graph.
        data: Preprocessed calibration images [N, 3, H, W].
        method: ``max``, ``entropy`` or ``percentile``.
        stage_names: The model's stages, for ``exclude``.
        exclude: ``--exclude`` patterns (layers or stages kept in float), checked to match something.
        progress: Called with (``calibrate``, images done, total) during calibration.

    Raises:
        ConfigError: An ``exclude`` pattern matches nothing.
    """
    return prepare_cpu(model, data, method=method, stage_names=stage_names, exclude=exclude,
                       progress=progress).build()


@dataclass(frozen=True)
class CpuQuantizer:
    """A float graph rewritten, pre-processed and calibrated once, quantized as often as asked with different
    stages kept float (the accuracy-budget search builds many mixes from one calibration).

    Attributes:
        prepared: The pre-processed graph (serialized, nodes named).
        layers: Its layer map.
        ranges: ONNX Runtime ``TensorsData`` over the calibration images.
        method: The calibration method.
        exclude: ``--exclude`` patterns, always kept float.
    """

    prepared: bytes
    layers: LayerMap
    ranges: Any
    method: str
    exclude: tuple[str, ...]

    def blocks(self) -> list[str]:
        """Stages with something to quantize: every stage but the classifier (always float) and those
        ``--exclude`` keeps float whole."""
        patterns = (*self.exclude, HEAD)
        quantized = {self.layers.stages[n] for n in self.layers.layers if not self.layers.matches(n, patterns)}
        return [s for s in self.layers.stage_names if s in quantized]

    def build(self, keep_float: Sequence[str] = ()) -> onnx.ModelProto:
        """The INT8 graph with ``--exclude``, the classifier and the ``keep_float`` stages in float."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.calibrate import save_tensors_data

        patterns = (*self.exclude, *keep_float, HEAD)  # the classifier stays float: 8-bit logits flip top-1
        kept_float = [name for name in self.layers.layers if self.layers.matches(name, patterns)]
        with tempfile.TemporaryDirectory(prefix="resnest-deploy-cpu-int8-") as tmp:
            pre, cache, out = (Path(tmp) / n for n in ("pre.onnx", "ranges.json", "int8.onnx"))
            pre.write_bytes(self.prepared)
            save_tensors_data(self.ranges, cache)
            with _quiet():
                quantize_static(
                    str(pre), str(out), None, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, calibration_cache_path=str(cache),
                    calibrate_method=getattr(CalibrationMethod, _ORT_METHOD[self.method]),
                    nodes_to_exclude=kept_float)
            return onnx.load(str(out))


def prepare_cpu(model: onnx.ModelProto, data: np.ndarray, *, method: str, stage_names: Sequence[str],
                exclude: Sequence[str] = (), progress: ProgressFn | None = None) -> CpuQuantizer:
    """Rewrite, pre-process and calibrate ``model`` once (arguments as :func:`quantize_for_cpu`).

    Raises:
        ConfigError: An ``exclude`` pattern matches nothing.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="resnest-deploy-cpu-int8-") as tmp:
        rewritten, pre = Path(tmp) / "rewritten.onnx", Path(tmp) / "pre.onnx"
        onnx.save_model(cpu_rewrite(model), str(rewritten))
        with _quiet():
            quant_pre_process(str(rewritten), str(pre))
        prepared = onnx.load(str(pre))
    name_nodes(prepared)
    layers = layer_map(prepared, stage_names)
    layers.check_patterns(exclude, "--exclude")
    ranges = collect_ranges(prepared, None, data, method=Method(method).value, symmetric=False, per_call=8,
                            progress=progress)
    return CpuQuantizer(prepared.SerializeToString(), layers, ranges, Method(method).value, tuple(exclude))


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
