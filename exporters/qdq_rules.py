"""Checks of a Q/DQ graph against TensorRT's explicit-quantization placement rules.

Used by ``inspect`` and by ``quantize`` on its own output, and usable on Q/DQ files from other tools
(ModelOpt, ONNX Runtime) to see whether TensorRT will fuse them as intended.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class RuleCheck:
    name: str
    passed: bool
    detail: str


def has_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in QDQ for n in model.graph.node)


def check_qdq_rules(model: onnx.ModelProto) -> list[RuleCheck]:
    """One verdict per rule: weights, activations, Conv outputs, residual Adds. Float Convs are reported."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def const(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def zero_point_ok(node: onnx.NodeProto) -> bool:
        if len(node.input) < 3 or not node.input[2]:
            return False  # default zero-point is uint8, not the int8 TensorRT takes
        zp = const(node.input[2])
        return zp is not None and zp.dtype == np.int8 and not np.any(zp)

    weighted = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    bad_weights, bad_acts, float_inputs = [], [], []
    for node in weighted:
        w = producers.get(node.input[1])
        x = producers.get(node.input[0])
        w_q = w is not None and w.op_type == "DequantizeLinear"
        x_q = x is not None and x.op_type == "DequantizeLinear"
        if not w_q and not x_q:
            float_inputs.append(node.name)  # a layer kept in float on purpose
            continue
        if not w_q:
            bad_weights.append(f"{node.name}: quantized input but float weights")
            continue
        q = const(w.input[0])
        scale = const(w.input[1])
        src = producers.get(w.input[0])
        if q is None and src is not None and src.op_type == "QuantizeLinear":
            q, scale = const(src.input[0]), const(src.input[1])  # Q->DQ on float weights is also valid
            zp_ok = zero_point_ok(src) and zero_point_ok(w)
        else:
            zp_ok = zero_point_ok(w) and (q is not None and q.dtype == np.int8)
        channels = None if q is None else q.shape[_axis(w)]
        if scale is None or scale.ndim != 1 or scale.shape[0] != channels or not zp_ok:
            bad_weights.append(f"{node.name}: weights not per-channel symmetric INT8")
        if not x_q:
            bad_acts.append(f"{node.name}: INT8 weights but a float input")
            continue
        scale = const(x.input[1])
        if scale is None or scale.size != 1 or not zero_point_ok(x):
            bad_acts.append(f"{node.name}: activation not per-tensor symmetric INT8")
    checks = [
        RuleCheck("weights: INT8, per output channel, symmetric", not bad_weights,
                  bad_weights[0] if bad_weights else f"{len(weighted)} Conv/Gemm"),
        RuleCheck("activations: per tensor, symmetric, zero-point 0", not bad_acts,
                  bad_acts[0] if bad_acts else
                  f"{len(weighted) - len(float_inputs)} quantized inputs, {len(float_inputs)} left float"
                  + (f" (e.g. {float_inputs[0]})" if float_inputs else "")),
    ]
    after_conv = []
    for node in weighted:
        for q in consumers.get(node.output[0], []):
            if q.op_type != "QuantizeLinear":
                continue
            for dq in consumers.get(q.output[0], []):
                fused = [c.name for c in consumers.get(dq.output[0], [])
                         if c.op_type in ("Relu", "BatchNormalization", "Clip")]
                after_conv += [f"{q.name} (before {fused[0]})"] if fused else []
    batchnorm = [n.name for n in graph.node if n.op_type == "BatchNormalization"]
    checks.append(RuleCheck("nothing between Conv and BatchNorm/ReLU", not after_conv and not batchnorm,
                            f"Q/DQ on Conv output at {after_conv[0]}" if after_conv else
                            f"unfolded BatchNormalization {batchnorm[0]}" if batchnorm else "Conv outputs float"))
    bad_adds, good_adds, float_adds = [], 0, 0
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or any(i in inits for i in node.input):
            continue
        if not any(c.op_type == "Relu" for c in consumers.get(node.output[0], [])):
            continue
        kinds = [producers[i].op_type if i in producers else "input" for i in node.input]
        dq = kinds.count("DequantizeLinear")
        if dq == 1:
            good_adds += 1
        elif dq == 2:
            bad_adds.append(f"{node.name}: both inputs quantized, the conv branch cannot fuse")
        else:
            float_adds += 1
    checks.append(RuleCheck("residual Add: identity quantized, conv branch float", not bad_adds,
                            bad_adds[0] if bad_adds else f"{good_adds} residual Adds quantized, {float_adds} float"))
    return checks


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def int8_type_ok(model: onnx.ModelProto) -> bool:
    """Every QuantizeLinear produces INT8 (TensorRT takes INT8 Q/DQ, not UINT8)."""
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            if inits[node.input[2]].data_type != TensorProto.INT8:
                return False
    return True
