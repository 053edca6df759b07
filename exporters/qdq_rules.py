"""Checks of a Q/DQ graph against TensorRT's explicit-quantization placement rules.

Used by ``inspect`` and by ``quantize`` on its own output, and usable on Q/DQ files from other tools
(ModelOpt, ONNX Runtime) to see whether TensorRT will fuse them as intended.
"""

from __future__ import annotations

import numpy as np
import onnx

from resnest_deploy.checks import Check

from .graph_index import GraphIndex, attr

QDQ = ("QuantizeLinear", "DequantizeLinear")
WEIGHTED = ("Conv", "Gemm")


def has_qdq(model: onnx.ModelProto) -> bool:
    """Whether the graph holds any QuantizeLinear/DequantizeLinear node."""
    return any(n.op_type in QDQ for n in model.graph.node)


def check_qdq_rules(model: onnx.ModelProto) -> list[Check]:
    """One verdict per rule: weights, activations, Conv outputs, residual Adds. Float Convs are reported."""
    index = GraphIndex(model.graph)
    weighted = [n for n in model.graph.node if n.op_type in WEIGHTED]
    return [*_input_rules(index, weighted), _conv_output_rule(index, weighted), _residual_rule(index)]


def _zero_point_ok(index: GraphIndex, node: onnx.NodeProto) -> bool:
    """An explicit INT8 zero-point of 0 (the default zero-point is uint8, which TensorRT does not take)."""
    if len(node.input) < 3 or not node.input[2]:
        return False
    zp = index.const(node.input[2])
    return zp is not None and zp.dtype == np.int8 and not np.any(zp)


def _weights_ok(index: GraphIndex, dq: onnx.NodeProto) -> bool:
    """INT8 weights (stored, or float through Q -> DQ) with one symmetric scale per output channel."""
    q, scale = index.const(dq.input[0]), index.const(dq.input[1])
    src = index.producer(dq.input[0])
    if q is None and src is not None and src.op_type == "QuantizeLinear":
        q, scale = index.const(src.input[0]), index.const(src.input[1])
        zp_ok = _zero_point_ok(index, src) and _zero_point_ok(index, dq)
    else:
        zp_ok = _zero_point_ok(index, dq) and q is not None and q.dtype == np.int8
    channels = None if q is None else q.shape[attr(dq, "axis", 1)]
    return scale is not None and scale.ndim == 1 and scale.shape[0] == channels and zp_ok


def _input_rules(index: GraphIndex, weighted: list[onnx.NodeProto]) -> list[Check]:
    """Weights per-channel symmetric INT8; activation inputs per-tensor symmetric INT8."""
    bad_weights, bad_acts, float_inputs = [], [], []
    for node in weighted:
        w, x = index.producer(node.input[1]), index.producer(node.input[0])
        w_q = w is not None and w.op_type == "DequantizeLinear"
        x_q = x is not None and x.op_type == "DequantizeLinear"
        if not w_q and not x_q:
            float_inputs.append(node.name)  # a layer kept in float on purpose
            continue
        if not w_q:
            bad_weights.append(f"{node.name}: quantized input but float weights")
            continue
        if not _weights_ok(index, w):
            bad_weights.append(f"{node.name}: weights not per-channel symmetric INT8")
        if not x_q:
            bad_acts.append(f"{node.name}: INT8 weights but a float input")
            continue
        scale = index.const(x.input[1])
        if scale is None or scale.size != 1 or not _zero_point_ok(index, x):
            bad_acts.append(f"{node.name}: activation not per-tensor symmetric INT8")
    quantized = len(weighted) - len(float_inputs)
    return [
        Check("weights: INT8, per output channel, symmetric", not bad_weights,
              bad_weights[0] if bad_weights else f"{len(weighted)} Conv/Gemm"),
        Check("activations: per tensor, symmetric, zero-point 0", not bad_acts,
              bad_acts[0] if bad_acts else f"{quantized} quantized inputs, {len(float_inputs)} left float"
              + (f" (e.g. {float_inputs[0]})" if float_inputs else "")),
    ]


def _conv_output_rule(index: GraphIndex, weighted: list[onnx.NodeProto]) -> Check:
    """No Q/DQ between a Conv and the BatchNorm/ReLU TensorRT fuses it with."""
    after_conv = []
    for node in weighted:
        for q in index.users(node.output[0]):
            if q.op_type != "QuantizeLinear":
                continue
            for dq in index.users(q.output[0]):
                fused = [c.name for c in index.users(dq.output[0])
                         if c.op_type in ("Relu", "BatchNormalization", "Clip")]
                after_conv += [f"{q.name} (before {fused[0]})"] if fused else []
    batchnorm = [n.name for n in index.graph.node if n.op_type == "BatchNormalization"]
    detail = (f"Q/DQ on Conv output at {after_conv[0]}" if after_conv else
              f"unfolded BatchNormalization {batchnorm[0]}" if batchnorm else "Conv outputs float")
    return Check("nothing between Conv and BatchNorm/ReLU", not after_conv and not batchnorm, detail)


def _residual_rule(index: GraphIndex) -> Check:
    """At each residual Add, exactly one input (the identity) is quantized, so the branch's Conv fuses with it."""
    bad_adds, good_adds, float_adds = [], 0, 0
    for node in index.graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or any(i in index.initializers for i in node.input):
            continue
        if not any(c.op_type == "Relu" for c in index.users(node.output[0])):
            continue
        dq = sum(1 for i in node.input if (p := index.producer(i)) is not None and p.op_type == "DequantizeLinear")
        if dq == 1:
            good_adds += 1
        elif dq == 2:
            bad_adds.append(f"{node.name}: both inputs quantized, the conv branch cannot fuse")
        else:
            float_adds += 1
    return Check("residual Add: identity quantized, conv branch float", not bad_adds,
                 bad_adds[0] if bad_adds else f"{good_adds} residual Adds quantized, {float_adds} float")


FLOAT_TYPES = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16"}


def float_types(model: onnx.ModelProto) -> dict[str, list[str]]:
    """``fp32``/``fp16`` -> the op types whose float outputs have that type, one entry per output, leaving out
    Casts and QuantizeLinear and the graph's own input and output: what a strongly typed TensorRT build computes
    in each precision."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    io = {v.name for v in (*model.graph.input, *model.graph.output)}
    found: dict[str, list[str]] = {"fp32": [], "fp16": []}
    for node in model.graph.node:
        if node.op_type in ("Cast", "QuantizeLinear"):
            continue
        for name in node.output:
            kind = FLOAT_TYPES.get(types.get(name, 0))
            if kind and name not in io:
                found[kind].append(node.op_type)
    return found


def check_float_type(model: onnx.ModelProto, expected: str, keep_fp32_ops=()) -> Check:
    """Every float tensor outside the Q/DQ pairs has the ``expected`` type, but for op types kept in FP32."""
    found = float_types(model)
    other = "fp32" if expected == "fp16" else "fp16"
    stray = [op for op in found[other] if not (other == "fp32" and op in keep_fp32_ops)]
    kept = len(found[other]) - len(stray)
    detail = (f"{len(stray)} {other} tensors, e.g. the output of a {stray[0]}" if stray else
              f"{len(found[expected])} float tensors {expected}" + (f", {kept} kept fp32" if kept else ""))
    return Check(f"float outside Q/DQ: {expected}", not stray, detail)


def check_cpu_qdq(model: onnx.ModelProto) -> list[Check]:
    """The Q/DQ layout ONNX Runtime's CPU kernels run fastest (U8S8): unsigned 8-bit activations, signed 8-bit
    per-channel weights on every quantized Conv/Gemm."""
    index = GraphIndex(model.graph)
    signed = [n.name for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
              and (zp := index.const(n.input[2])) is not None and zp.dtype != np.uint8]
    weighted = [n for n in model.graph.node if n.op_type in WEIGHTED]
    bad_weights, quantized = [], 0
    for node in weighted:
        dq = index.producer(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        quantized += 1
        q, scale = index.const(dq.input[0]), index.const(dq.input[1])
        if q is None or q.dtype != np.int8 or scale is None or scale.ndim != 1:
            bad_weights.append(node.name)
    return [
        Check("CPU Q/DQ: activations unsigned 8-bit (U8S8)", not signed,
              f"{len(signed)} signed, e.g. {signed[0]}" if signed else "all QuantizeLinear outputs uint8"),
        Check("CPU Q/DQ: weights signed 8-bit, per output channel", not bad_weights and quantized > 0,
              f"not per-channel INT8: {bad_weights[0]}" if bad_weights else f"{quantized} of {len(weighted)} "
              "Conv/Gemm quantized"),
    ]
