"""TensorRT's Q/DQ placement rules and ONNX Runtime's CPU layout, checked on small graphs built to break one rule.

Each graph is a residual block, ``x -> [Q/DQ] -> Conv(W) -> [Q/DQ] -> Relu -> Add(identity) -> Relu``, with knobs
for how the weights, the activation, the Conv output and the Add's inputs are quantized. Every graph passes the
ONNX checker and runs on ONNX Runtime, so the rules are judged on graphs a runtime accepts; the quantizer's own
output is checked against the same rules in tests/calibration.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from resnest_deploy.exporters.qdq_rules import check_cpu_qdq, check_float_type, check_qdq_rules, float_types, has_qdq

C = 4
INT8, UINT8 = np.int8, np.uint8


class Block:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def qdq(self, tensor: str, name: str, *, zp_dtype=INT8, scale_shape=(), zp: bool = True, q_only_dtype=None,
            axis: int | None = None) -> str:
        scale = self.const(f"{name}.scale", np.full(scale_shape, 0.05, np.float32))
        zero = [self.const(f"{name}.zp", np.zeros(scale_shape, zp_dtype))] if zp else []
        kw = {"axis": axis} if axis is not None else {}
        q = self.node("QuantizeLinear", [tensor, scale, *zero], f"{name}.q", **kw)
        return self.node("DequantizeLinear", [q, scale, *zero], f"{name}.dq", **kw)


def block(*, weights: str = "qdq", act: str = "int8", conv_out: bool = False, batchnorm: bool = False,
          add: str = "identity", gemm: bool = False) -> onnx.ModelProto:
    """weights: qdq (float through Q->DQ, per channel), stored (INT8 initializer -> DQ), per-tensor, uint8, no-zp,
    float; act: int8, float, per-channel, uint8; add: identity (one quantized input), both, none."""
    b = Block()
    w = np.random.default_rng(0).normal(0, 0.2, (C, C, 3, 3)).astype(np.float32)
    if weights == "float":
        w_in = b.const("W", w)
    elif weights == "stored":
        q = b.const("W.int8", np.clip(np.round(w / 0.01), -127, 127).astype(INT8))
        scale, zp = b.const("W.scale", np.full(C, 0.01, np.float32)), b.const("W.zp", np.zeros(C, INT8))
        w_in = b.node("DequantizeLinear", [q, scale, zp], "W.dq", axis=0)
    else:
        shape = () if weights == "per-tensor" else (C,)
        w_in = b.qdq(b.const("W", w), "W", zp_dtype=UINT8 if weights == "uint8" else INT8, scale_shape=shape,
                     zp=weights != "no-zp", axis=0)
    x = "x"
    if act != "float":
        x = b.qdq(x, "x", zp_dtype=UINT8 if act == "uint8" else INT8, scale_shape=(C,) if act == "per-channel" else (),
                  axis=1 if act == "per-channel" else None)
    y = b.node("Conv", [x, w_in], "conv", pads=[1, 1, 1, 1])
    if batchnorm:
        stats = [b.const(f"bn.{k}", np.full(C, v, np.float32)) for k, v in
                 (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0))]
        y = b.node("BatchNormalization", [y, *stats], "bn")
    if conv_out:
        y = b.qdq(y, "conv_out")
    y = b.node("Relu", [y], "relu1")
    if add in ("both", "identity"):
        identity = b.qdq("x", "identity")
        branch = b.qdq(y, "branch") if add == "both" else y
    else:
        identity, branch = "x", y
    out = b.node("Relu", [b.node("Add", [branch, identity], "add")], "out_relu")
    if gemm:
        flat = b.node("Flatten", [out], "flat")
        gw = b.const("G", np.ones((3, C * 4), np.float32))
        out = b.node("Gemm", [flat, gw], "fc", transB=1)
    shape = ["N", 3] if gemm else ["N", C, 2, 2]
    graph = helper.make_graph(b.nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, 2, 2])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, shape)], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _runs(model: onnx.ModelProto) -> None:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.random.default_rng(1).normal(size=(2, C, 2, 2)).astype(np.float32)})[0]
    assert np.isfinite(out).all()


def _verdicts(model: onnx.ModelProto) -> dict[str, tuple[bool | None, str]]:
    return {c.name: (c.passed, c.detail) for c in check_qdq_rules(model)}


W, A = "weights: INT8, per output channel, symmetric", "activations: per tensor, symmetric, zero-point 0"
CONV, ADD = "nothing between Conv and BatchNorm/ReLU", "residual Add: identity quantized, conv branch float"


@pytest.mark.parametrize("weights", ["qdq", "stored"])
def test_a_graph_that_follows_every_rule_passes_each_with_its_counts(weights):
    model = block(weights=weights)
    _runs(model)
    assert has_qdq(model)
    assert _verdicts(model) == {W: (True, "1 Conv/Gemm"), A: (True, "1 quantized inputs, 0 left float"),
                                CONV: (True, "Conv outputs float"),
                                ADD: (True, "1 residual Adds quantized, 0 float")}


@pytest.mark.parametrize(("knobs", "rule", "detail"), [
    ({"weights": "per-tensor"}, W, "conv: weights not per-channel symmetric INT8"),
    ({"weights": "uint8"}, W, "conv: weights not per-channel symmetric INT8"),
    ({"weights": "no-zp"}, W, "conv: weights not per-channel symmetric INT8"),
    ({"weights": "float"}, W, "conv: quantized input but float weights"),
    ({"act": "float"}, A, "conv: INT8 weights but a float input"),
    ({"act": "per-channel"}, A, "conv: activation not per-tensor symmetric INT8"),
    ({"act": "uint8"}, A, "conv: activation not per-tensor symmetric INT8"),
    ({"conv_out": True}, CONV, "Q/DQ on Conv output at conv_out.q (before relu1)"),
    ({"batchnorm": True}, CONV, "unfolded BatchNormalization bn"),
    ({"add": "both"}, ADD, "add: both inputs quantized, the conv branch cannot fuse"),
], ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None)
def test_each_broken_rule_fails_alone_naming_the_node(knobs, rule, detail):
    model = block(**knobs)
    _runs(model)
    verdicts = _verdicts(model)
    assert verdicts[rule] == (False, detail)
    assert [name for name, (ok, _) in verdicts.items() if not ok] == [rule]


def test_float_layers_and_float_adds_are_reported_not_failed():
    model = block(weights="float", act="float", add="none")
    assert not has_qdq(model)
    assert _verdicts(model) == {W: (True, "1 Conv/Gemm"), A: (True, "0 quantized inputs, 1 left float (e.g. conv)"),
                                CONV: (True, "Conv outputs float"),
                                ADD: (True, "0 residual Adds quantized, 1 float")}


def test_an_add_without_a_relu_after_it_or_with_a_constant_is_not_a_residual():
    model = block()
    for node in model.graph.node:
        if node.op_type == "Relu" and node.input[0] == "add":
            node.op_type = "Sigmoid"
    assert _verdicts(model)[ADD] == (True, "0 residual Adds quantized, 0 float")
    both = block(add="both")
    for node in both.graph.node:
        if node.op_type == "Add":
            both.graph.initializer.append(numpy_helper.from_array(np.zeros((1, C, 1, 1), np.float32), "bias"))
            node.input[1] = "bias"
    assert _verdicts(both)[ADD] == (True, "0 residual Adds quantized, 0 float")


def test_gemm_layers_are_checked_like_convs():
    model = block(gemm=True)
    _runs(model)
    assert _verdicts(model)[W] == (True, "2 Conv/Gemm")
    assert _verdicts(model)[A] == (True, "1 quantized inputs, 1 left float (e.g. fc)")


def test_the_cpu_layout_wants_unsigned_activations_and_signed_per_channel_weights():
    names = ("CPU Q/DQ: activations unsigned 8-bit (U8S8)", "CPU Q/DQ: weights signed 8-bit, per output channel")

    def verdicts(model):
        checks = check_cpu_qdq(model)
        assert [c.name for c in checks] == list(names)
        return [(c.passed, c.detail) for c in checks]

    cpu = block(weights="stored", act="uint8", add="none")
    _runs(cpu)
    assert verdicts(cpu) == [(True, "all QuantizeLinear outputs uint8"), (True, "1 of 1 Conv/Gemm quantized")]
    assert verdicts(block(weights="stored", act="uint8", add="none", gemm=True)) == [
        (True, "all QuantizeLinear outputs uint8"), (True, "1 of 2 Conv/Gemm quantized")]
    assert verdicts(block(weights="stored", act="int8", add="none")) == [
        (False, "1 signed, e.g. x.q"), (True, "1 of 1 Conv/Gemm quantized")]
    # Float weights through Q -> DQ are not stored INT8; per-tensor INT8 weights are not per channel.
    assert verdicts(block(weights="qdq", act="uint8", add="none"))[1] == (False, "not per-channel INT8: conv")
    per_tensor = block(weights="stored", act="uint8", add="none")
    for init in per_tensor.graph.initializer:
        if init.name == "W.scale":
            init.CopyFrom(numpy_helper.from_array(np.array(0.01, np.float32), "W.scale"))
    assert verdicts(per_tensor)[1] == (False, "not per-channel INT8: conv")
    assert verdicts(block(weights="float", act="float", add="none")) == [
        (True, "all QuantizeLinear outputs uint8"), (False, "0 of 1 Conv/Gemm quantized")]


def _fp16_block(cast_back: bool) -> onnx.ModelProto:
    """x (fp32) -> Cast fp16 -> Relu -> Sigmoid -> [Cast fp32 ->] Add(fp32 or fp16) -> Cast fp32 -> y"""
    b = Block()
    h = b.node("Cast", ["x"], "to16", to=TensorProto.FLOAT16)
    h = b.node("Relu", [h], "relu")
    h = b.node("Sigmoid", [h], "sig")
    if cast_back:
        h = b.node("Cast", [h], "to32", to=TensorProto.FLOAT)
        h = b.node("Softmax", [h], "soft")
        h = b.node("Cast", [h], "to16b", to=TensorProto.FLOAT16)
    h = b.node("Neg", [h], "neg")
    y = b.node("Cast", [h], "y", to=TensorProto.FLOAT)
    graph = helper.make_graph(b.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_float_types_count_each_output_by_type_leaving_out_casts_and_graph_outputs():
    assert float_types(_fp16_block(False)) == {"fp32": [], "fp16": ["Relu", "Sigmoid", "Neg"]}
    assert float_types(_fp16_block(True)) == {"fp32": ["Softmax"], "fp16": ["Relu", "Sigmoid", "Neg"]}
    check = check_float_type(_fp16_block(False), "fp16")
    assert (check.name, check.passed, check.detail) == ("float outside Q/DQ: fp16", True, "3 float tensors fp16")
    stray = check_float_type(_fp16_block(True), "fp16")
    assert (stray.passed, stray.detail) == (False, "1 fp32 tensors, e.g. the output of a Softmax")
    kept = check_float_type(_fp16_block(True), "fp16", keep_fp32_ops=("Softmax",))
    assert (kept.passed, kept.detail) == (True, "3 float tensors fp16, 1 kept fp32")
    fp32 = check_float_type(_fp16_block(True), "fp32", keep_fp32_ops=("Neg",))
    assert (fp32.name, fp32.passed, fp32.detail) == ("float outside Q/DQ: fp32", False,
                                                     "3 fp16 tensors, e.g. the output of a Relu")


# Several layers: each rule must look at every node, count every one, and report the first offender.
def _layer(b: Block, x: str, name: str, *, weights: str = "qdq", act: str = "int8", after: str = "Relu",
           conv_out: bool = False, side_use: bool = False, axis: int | None = 0) -> str:
    w = np.random.default_rng(len(b.nodes)).normal(0, 0.2, (C, C, 3, 3)).astype(np.float32)
    if weights == "float":
        w_in = b.const(f"{name}.W", w)
    elif weights in ("stored", "stored-no-zp", "stored-uint8"):
        dtype = UINT8 if weights == "stored-uint8" else INT8
        q = b.const(f"{name}.Wq", np.clip(np.round(w / 0.01), 0 if dtype is UINT8 else -127, 127).astype(dtype))
        inputs = [q, b.const(f"{name}.Ws", np.full(C, 0.01, np.float32))]
        if weights != "stored-no-zp":
            inputs.append(b.const(f"{name}.Wz", np.zeros(C, INT8)))  # (for uint8 weights: not their type)
        w_in = b.node("DequantizeLinear", inputs, f"{name}.Wdq", axis=0)
    else:
        w_in = b.qdq(b.const(f"{name}.W", w), f"{name}.W", scale_shape=() if weights == "per-tensor" else (C,),
                     axis=axis)
        if weights == "nonzero-zp":
            for init in b.inits:
                if init.name == f"{name}.W.zp":
                    init.CopyFrom(numpy_helper.from_array(np.arange(C, dtype=INT8), init.name))
    if act == "int8":
        x = b.qdq(x, f"{name}.x")
    elif act == "uint8":
        x = b.qdq(x, f"{name}.x", zp_dtype=UINT8)
    elif act == "no-zp":
        x = b.qdq(x, f"{name}.x", zp=False)
    y = b.node("Conv", [x, w_in], name, pads=[1, 1, 1, 1])
    if side_use:
        b.node("Relu", [y], f"{name}.side")
    if conv_out:
        y = b.qdq(y, f"{name}.out")
    if after == "BatchNormalization":
        stats = [b.const(f"{name}.bn.{k}", np.full(C, v, np.float32)) for k, v in
                 (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0))]
        return b.node("BatchNormalization", [y, *stats], f"{name}.bn")
    if after == "Clip":
        return b.node("Clip", [y], f"{name}.clip")
    return b.node(after, [y], f"{name}.{after.lower()}")


def _residual(b: Block, branch: str, identity: str, name: str, *, quantized: int, relu: bool = True) -> str:
    if quantized >= 1:
        identity = b.qdq(identity, f"{name}.id")
    if quantized == 2:
        branch = b.qdq(branch, f"{name}.br")
    out = b.node("Add", [branch, identity], name)
    return b.node("Relu", [out], f"{name}.relu") if relu else out


def _model(b: Block, out: str, *, check: bool = True) -> onnx.ModelProto:
    graph = helper.make_graph(b.nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, 2, 2])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", C, 2, 2])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize(("first", "second", "rule", "detail"), [
    ({"weights": "float", "act": "float"}, {"weights": "per-tensor"}, W,
     "conv2: weights not per-channel symmetric INT8"),
    ({"weights": "float"}, {"weights": "per-tensor"}, W, "conv1: quantized input but float weights"),
    ({"act": "float"}, {"act": "no-zp"}, A, "conv1: INT8 weights but a float input"),
    ({"weights": "float", "act": "float"}, {"act": "no-zp"}, A, "conv2: activation not per-tensor symmetric INT8"),
    ({"weights": "float", "act": "float"}, {"weights": "nonzero-zp"}, W,
     "conv2: weights not per-channel symmetric INT8"),
    ({"weights": "float", "act": "float"}, {"weights": "stored-no-zp"}, W,
     "conv2: weights not per-channel symmetric INT8"),
    ({"weights": "float"}, {"act": "no-zp"}, A, "conv2: activation not per-tensor symmetric INT8"),
    ({"act": "float"}, {"weights": "per-tensor"}, W, "conv2: weights not per-channel symmetric INT8"),
])
def test_every_layer_is_checked_and_the_first_offender_named(first, second, rule, detail):
    b = Block()
    y = _layer(b, _layer(b, "x", "conv1", **first), "conv2", **second)
    model = _model(b, y)
    _runs(model)
    assert _verdicts(model)[rule] == (False, detail)


def test_per_channel_weights_along_the_default_axis_pass():
    b = Block()
    model = _model(b, _layer(b, "x", "conv1", axis=None))  # QuantizeLinear's axis defaults to 1
    _runs(model)
    assert _verdicts(model)[W] == (True, "1 Conv/Gemm")


def test_weights_that_are_no_constant_or_of_another_type_fail():
    b = Block()
    y = _layer(b, "x", "conv1")
    model = _model(b, y)
    for node in model.graph.node:  # the weights' DequantizeLinear now reads a graph input
        if node.name == "conv1.W.dq":
            node.input[0] = "w_int8"
    model.graph.input.append(helper.make_tensor_value_info("w_int8", TensorProto.INT8, [C, C, 3, 3]))
    assert _verdicts(model)[W] == (False, "conv1: weights not per-channel symmetric INT8")
    b = Block()
    uint8 = _model(b, _layer(b, "x", "conv1", weights="stored-uint8"), check=False)
    assert _verdicts(uint8)[W] == (False, "conv1: weights not per-channel symmetric INT8")
    mixed = block()
    for init in mixed.graph.initializer:  # Q's zero-point int8, DQ's uint8: not one symmetric INT8 pair
        if init.name == "W.zp":
            mixed.graph.initializer.append(numpy_helper.from_array(np.zeros(C, UINT8), "W.zp.u8"))
    for node in mixed.graph.node:
        if node.name == "W.dq":
            node.input[2] = "W.zp.u8"
    assert _verdicts(mixed)[W] == (False, "conv: weights not per-channel symmetric INT8")


@pytest.mark.parametrize("after", ["BatchNormalization", "Clip", "Relu"])
def test_qdq_between_a_conv_and_what_it_fuses_with_is_named_at_its_first_place(after):
    b = Block()
    y = _layer(b, "x", "conv1", weights="float", act="float", side_use=True)
    y = _layer(b, y, "conv2", conv_out=True, after=after, side_use=True)
    y = _layer(b, y, "conv3", conv_out=True)
    model = _model(b, y)
    _runs(model)
    suffix = {"BatchNormalization": "bn", "Clip": "clip", "Relu": "relu"}[after]
    assert _verdicts(model)[CONV] == (False, f"Q/DQ on Conv output at conv2.out.q (before conv2.{suffix})")


def test_residual_adds_are_each_counted_and_only_those_followed_by_a_relu():
    b = Block()
    y = _layer(b, "x", "conv1")
    y = _residual(b, y, "x", "add1", quantized=1, relu=False)  # not a residual block's Add
    y = _residual(b, _layer(b, y, "conv2"), y, "add2", quantized=1)
    y = _residual(b, _layer(b, y, "conv3"), y, "add3", quantized=1)
    y = _residual(b, _layer(b, y, "conv4"), y, "add4", quantized=0)
    y = _residual(b, _layer(b, y, "conv5"), y, "add5", quantized=0)
    model = _model(b, y)
    _runs(model)
    assert _verdicts(model)[ADD] == (True, "2 residual Adds quantized, 2 float")
    b = Block()
    y = _residual(b, _layer(b, "x", "conv1"), "x", "add1", quantized=1)
    y = _residual(b, _layer(b, y, "conv2"), y, "add2", quantized=2)
    y = _residual(b, _layer(b, y, "conv3"), y, "add3", quantized=2)
    assert _verdicts(_model(b, y))[ADD] == (False, "add2: both inputs quantized, the conv branch cannot fuse")


def test_the_cpu_layout_counts_every_quantized_layer_and_reads_a_default_zero_point():
    b = Block()
    y = _layer(b, _layer(b, "x", "conv1", weights="stored", act="uint8"), "conv2", weights="stored", act="no-zp")
    checks = check_cpu_qdq(_model(b, y))
    assert [(c.passed, c.detail) for c in checks] == [(True, "all QuantizeLinear outputs uint8"),
                                                      (True, "2 of 2 Conv/Gemm quantized")]
    b = Block()
    y = _layer(b, _layer(b, "x", "conv1", weights="float", act="float"), "conv2", weights="stored", act="uint8")
    assert check_cpu_qdq(_model(b, y))[1].detail == "1 of 2 Conv/Gemm quantized"
    b = Block()
    bad = _model(b, _layer(b, "x", "conv1", weights="stored-uint8", act="uint8"), check=False)
    assert check_cpu_qdq(bad)[1].detail == "not per-channel INT8: conv1"


def test_float_types_leave_out_graph_outputs_and_tensors_of_unknown_type():
    b = Block()
    h = b.node("Cast", ["x"], "to16", to=TensorProto.FLOAT16)
    h = b.node("Relu", [h], "relu")
    # An op no shape inference knows: its output's type is unknown, so it is not counted as either.
    b.nodes.append(helper.make_node("Mystery", [h], ["mystery"], name="mystery", domain="example.custom"))
    passed = b.node("Identity", ["mystery"], "passed")
    out = b.node("Neg", [h], "neg")  # a graph output made by a float op
    graph = helper.make_graph(b.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT16, [1, 4]),
                               helper.make_tensor_value_info(passed, TensorProto.FLOAT16, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19),
                                                    helper.make_opsetid("example.custom", 1)])
    assert float_types(model) == {"fp32": [], "fp16": ["Relu"]}
