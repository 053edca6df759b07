"""FP16-typed ONNX (what TensorRT 11 builds as FP16, and TensorRT 10 with STRONGLY_TYPED).

The conversion is ONNX Runtime's ``onnxruntime.transformers.float16`` (maintained with ORT; no extra
dependency): initializers and tensors become float16, the graph keeps FP32 input and output with Casts, and
node types in ``keep_fp32_ops`` (plus nodes whose owner matches an ``exclude`` pattern) stay float32 behind
Casts. Softmax stays a native Softmax op either way. Exclusions use the same layer rule as INT8
(:mod:`resnest_deploy.calibration.layers`): ``--exclude layer4.*`` keeps every node of those blocks in float32.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence

import onnx

from resnest_deploy.errors import ConfigError
from resnest_deploy.exporters.graph_index import (default_opset, drop_unused_initializers, name_nodes, set_nodes,
                                                  sort_topologically)
from resnest_deploy.exporters.opset import convert_opset

from .layers import LayerMap, layer_map

# Measured on the trained resnest14d and resnest50 (docs/quantization.md): the whole graph in FP16 meets the
# FP16 tolerances; nothing has to stay FP32 by default. Users can keep op types or blocks in FP32.
DEFAULT_KEEP_FP32_OPS: tuple[str, ...] = ()


def convert_fp16(
    model: onnx.ModelProto, stage_names: Sequence[str], *, keep_fp32_ops: Sequence[str] = DEFAULT_KEEP_FP32_OPS,
    exclude: Sequence[str] = (),
) -> onnx.ModelProto:
    """An FP16-typed copy of an FP32 graph with FP32 input and output.

    Args:
        model: The FP32 graph.
        stage_names: The model's stages (``ModelConfig.stage_names()``), for ``exclude``.
        keep_fp32_ops: Op types left in float32 (e.g. ``Softmax``, ``ReduceMean``, ``Gemm``).
        exclude: fnmatch patterns on layers or stages (``layer4.*``, ``fc``, ``stem``) left in float32.

    Raises:
        ConfigError: An op type in ``keep_fp32_ops`` or a pattern in ``exclude`` matches nothing in the graph.
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source = onnx.ModelProto()
    source.CopyFrom(model)
    name_nodes(source)
    present = {n.op_type for n in source.graph.node}
    absent = [op for op in keep_fp32_ops if op not in present]
    if absent:
        raise ConfigError(f"--keep-fp32 {absent[0]!r}: no such op in this graph; its ops are "
                          f"{', '.join(sorted(present))}")
    layers: LayerMap = layer_map(source, stage_names)
    layers.check_patterns(exclude, "--exclude")
    blocked_nodes = [n.name for n in source.graph.node if exclude and layers.matches(n.name, exclude)]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        converted = convert_float_to_float16(
            source, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(keep_fp32_ops),
            node_block_list=blocked_nodes,
        )
    del converted.graph.value_info[:]  # stale shapes/types from the conversion's own inference
    fold_constant_casts(converted.graph)  # blocked layers get Cast(fp16 weight -> fp32): store fp32 weights
    sort_topologically(converted.graph)  # the converter appends its input/output Casts at the end
    return converted


# QuantizeLinear/DequantizeLinear take FP16 input and scales from opset 19 on.
FP16_QDQ_OPSET = 19


def fp16_around_qdq(model: onnx.ModelProto, stage_names: Sequence[str], *,
                    keep_fp32_ops: Sequence[str] = DEFAULT_KEEP_FP32_OPS) -> onnx.ModelProto:
    """An INT8 Q/DQ graph whose float parts (everything outside the Q/DQ pairs: the split-attention Mul/Add and
    Softmax, ReduceMean, the float attention convs, pooling, layers kept out of INT8) are typed FP16; input and
    output stay FP32 behind Casts.

    TensorRT builds a strongly typed network exactly as typed, so this is what makes it run those parts in FP16
    (TensorRT 11 has no other way). Q/DQ scales become FP16 (opset 19); insert them with ``fp16_scales`` so that
    FP16 holds them exactly. The same conversion and the same ``keep_fp32_ops`` rule as the FP16 graph.

    Raises:
        ConfigError: An op type in ``keep_fp32_ops`` matches nothing; the graph's opset cannot be raised to 19.
    """
    if default_opset(model) < FP16_QDQ_OPSET:
        try:
            model = convert_opset(model, FP16_QDQ_OPSET)
        except Exception as error:  # ONNX's converter raises bare RuntimeErrors/ValidationErrors per adapter
            raise ConfigError(f"the INT8 graph (opset {default_opset(model)}) cannot be raised to opset "
                              f"{FP16_QDQ_OPSET} for FP16 around its Q/DQ ({error}); use --high-precision fp32 "
                              "or export at the default opset") from None
        constants_to_initializers(model.graph)  # the converter writes new axes/splits as Constant nodes
    return convert_fp16(model, stage_names, keep_fp32_ops=keep_fp32_ops)


def constant_tensors(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Constant nodes holding a plain tensor (``value``)."""
    return [n for n in graph.node if n.op_type == "Constant" and len(n.attribute) == 1
            and n.attribute[0].name == "value"]


def constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Store each Constant node's tensor as an initializer of the same name (the graph contract wants no
    Constant nodes: TensorRT and the checks read initializers)."""
    found = constant_tensors(graph)
    for node in found:
        tensor = onnx.TensorProto()
        tensor.CopyFrom(node.attribute[0].t)
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
    drop = {id(n) for n in found}
    set_nodes(graph, [n for n in graph.node if id(n) not in drop])


def fold_constant_casts(graph: onnx.GraphProto) -> None:
    """Replace each Cast of an initializer by the cast initializer; drop initializers nothing uses any more."""
    from onnx import helper, numpy_helper

    initializers = {i.name: i for i in graph.initializer}
    folded, keep, sources = [], [], {}
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in initializers:
            to = next(a.i for a in node.attribute if a.name == "to")
            value = numpy_helper.to_array(initializers[node.input[0]])
            folded.append(numpy_helper.from_array(value.astype(helper.tensor_dtype_to_np_dtype(to)), node.output[0]))
            sources[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    if not folded:
        return
    # A weight whose only use was the Cast keeps its own name (fc.weight), so exclusions stay readable.
    still_used = {name for node in keep for name in node.input}
    renames = {}
    for tensor in folded:
        source = sources[tensor.name]
        if source not in still_used and source not in renames.values():
            renames[tensor.name] = source
            tensor.name = source
    for node in keep:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    set_nodes(graph, keep)
    folded_names = {t.name for t in folded}
    graph_initializers = [i for i in graph.initializer if i.name not in folded_names]
    del graph.initializer[:]
    graph.initializer.extend(graph_initializers)
    graph.initializer.extend(folded)
    drop_unused_initializers(graph)
