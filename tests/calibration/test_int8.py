"""INT8 Q/DQ graphs of resnest50 and resnet50 checked rule by rule, by walks written here (not the product's checker).

Rules (NVIDIA's explicit quantization guide): INT8 weights per output channel, symmetric; activations per tensor,
symmetric; zero-point 0; Q/DQ on the inputs of every Conv and Gemm; at each residual Add the identity input is
quantized and the conv-branch input stays float; nothing between Conv and BN/ReLU. ONNX Runtime runs each graph.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from resnest_deploy.calibration.int8 import _fp16_exact
from resnest_deploy.calibration.quantize import QuantizeOptions, quantize_onnx
from resnest_deploy.exporters.qdq_rules import check_qdq_rules
from resnest_deploy.ort_session import ort_session

SMALL = 64


def _index(model):
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            consumers[i].append(n)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return producers, consumers, inits


def _weight_name(node, producers):
    """The float weight's original name behind the DequantizeLinear of its INT8 copy."""
    dq = producers[node.input[1]]
    return dq.input[0].removesuffix("_quantized")


def _assert_rules(model, *, float_owners=()):
    producers, consumers, inits = _index(model)
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    quantized = 0
    for node in convs:
        w_src = producers.get(node.input[1])
        if w_src is None:  # kept float: its weight is a plain initializer
            assert node.input[1] in inits and any(node.input[1].startswith(o) for o in float_owners), node.name
            assert producers.get(node.input[0]) is None or producers[node.input[0]].op_type != "DequantizeLinear"
            continue
        quantized += 1
        # weights: INT8 initializer -> DequantizeLinear, one scale per output channel, zero-point 0
        assert w_src.op_type == "DequantizeLinear"
        q, scale, zp = (inits[name] for name in w_src.input)
        axis = next(a.i for a in w_src.attribute if a.name == "axis")
        out_channels = q.shape[0] if node.op_type == "Conv" else q.shape[axis]
        assert q.dtype == np.int8 and axis == 0
        assert scale.shape == (out_channels,) and np.all(scale > 0)
        assert zp.dtype == np.int8 and zp.shape == (out_channels,) and not zp.any()
        assert q.min() >= -127 and q.max() <= 127
        # activation input: Q -> DQ, scalar scale, int8 zero-point 0
        x_dq = producers[node.input[0]]
        assert x_dq.op_type == "DequantizeLinear", node.name
        x_q = producers[x_dq.input[0]]
        assert x_q.op_type == "QuantizeLinear"
        for qdq in (x_q, x_dq):
            assert inits[qdq.input[1]].size == 1 and inits[qdq.input[1]] > 0
            assert inits[qdq.input[2]].dtype == np.int8 and inits[qdq.input[2]] == 0
        # nothing between a Conv and the ReLU it feeds
        for user in consumers[node.output[0]]:
            if user.op_type == "QuantizeLinear":
                dq_users = [c for dq in consumers[user.output[0]] for c in consumers[dq.output[0]]]
                assert all(c.op_type == "Add" for c in dq_users), f"Q/DQ between {node.name} and {dq_users}"
    residual = 0
    for node in model.graph.node:
        if node.op_type != "Add" or not any(c.op_type == "Relu" for c in consumers[node.output[0]]):
            continue
        residual += 1
        kinds = [producers[i].op_type for i in node.input]
        assert sorted(kinds) == ["Conv", "DequantizeLinear"], f"{node.name}: {kinds}"
        branch = producers[node.input[kinds.index("Conv")]]
        assert _weight_name(branch, producers).endswith("conv3.weight"), "the float input must be the branch"
        dq = producers[node.input[kinds.index("DequantizeLinear")]]
        quantized_tensor = producers[dq.input[0]].input[0]
        shortcut = producers.get(quantized_tensor)
        # the quantized input is the shortcut: the block input itself or the downsample conv's output
        assert shortcut is not None and (shortcut.op_type in ("Relu", "MaxPool")
                                         or ".downsample." in _weight_name(shortcut, producers)), \
            f"{node.name}: quantized input comes from {shortcut.op_type if shortcut else None}"
    return quantized, residual


def _float_types(model):
    """Op type -> element types of its float outputs, but Casts, QuantizeLinear and the graph's own input/output."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    found = defaultdict(set)
    for node in model.graph.node:
        if node.op_type not in ("Cast", "QuantizeLinear"):
            for name in node.output:
                if types.get(name) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                    found[node.op_type].add(types[name])
    return found


def _assert_fp16_around_qdq(model):
    """FP32 in and out; every float tensor inside typed FP16, Q/DQ scales FP16, opset 19 (FP16 Q/DQ)."""
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    found = _float_types(model)
    if "Softmax" in found:  # split attention: its float ops are the ones that matter
        assert {"Softmax", "ReduceMean", "Mul", "Conv", "Relu"} <= set(found)
    assert all(kinds == {onnx.TensorProto.FLOAT16} for kinds in found.values()), dict(found)
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert inits[node.input[1]].data_type == onnx.TensorProto.FLOAT16, node.name


@pytest.mark.parametrize("arch, blocks, attention", [
    pytest.param("resnest50", 16, 32, marks=pytest.mark.xdist_group("resnest50")),
    pytest.param("resnet50", 16, 0, marks=pytest.mark.xdist_group("resnet50")),
])
def test_int8_graph_follows_every_tensorrt_rule(export_cache, tmp_path, arch, blocks, attention):
    source = export_cache(arch, SMALL).path
    result = quantize_onnx(QuantizeOptions(model=source, precision="int8", calib_data="synthetic", calib_size=16,
                                           method="max", output=tmp_path / "q.onnx"))
    model = onnx.load(str(result.path))
    convs = sum(1 for n in model.graph.node if n.op_type in ("Conv", "Gemm"))
    quantized, residual = _assert_rules(model, float_owners=("layer",))
    _assert_fp16_around_qdq(model)  # the default: TensorRT runs the float parts in FP16
    assert result.meta.extra["quantization"]["high_precision"] == "fp16"
    assert residual == blocks
    assert quantized == convs - attention  # the attention fc1/fc2 convs stay float by default
    assert all(c.passed for c in check_qdq_rules(model)), check_qdq_rules(model)
    # ONNX Runtime runs it. Random-init logits are near-ties, so only a loose closeness bound here; accuracy
    # is measured on the trained model (test_accuracy.py).
    assert result.agreement.cosine_mean > 0.9 and np.isfinite(result.agreement.max_abs_rel)
    x = np.zeros((2, 3, SMALL, SMALL), dtype=np.float32)
    assert np.isfinite(ort_session(model).run(None, {"input": x})[0]).all()


@pytest.mark.xdist_group("resnest50")
def test_attention_and_exclusions(export_cache, tmp_path):
    source = export_cache("resnest50", SMALL).path
    result = quantize_onnx(QuantizeOptions(model=source, precision="int8", calib_data="synthetic", calib_size=8,
                                           method="max", quantize_attention=True, exclude=("layer4.*", "stem"),
                                           output=tmp_path / "q.onnx"))
    model = onnx.load(str(result.path))
    producers, _, _ = _index(model)
    float_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv" and n.input[1] not in producers}
    assert float_weights and all(w.startswith(("layer4.", "conv1.")) for w in float_weights)
    assert any(list(n.input)[1:2] == ["layer1.0.conv2.fc1.weight_dequantized"] for n in model.graph.node)
    assert all(c.passed for c in check_qdq_rules(model))
    recorded = result.meta.extra["quantization"]["float_layers"]
    assert recorded and all(name.startswith(("conv1", "layer4")) for name in recorded)


def test_rule_checker_catches_misplaced_qdq(tmp_path):
    """The product's checker (used by inspect and quantize) flags each broken rule on a small hand-built graph."""
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "w_q")
    ws = numpy_helper.from_array(np.full(4, 0.1, np.float32), "w_s")
    wz = numpy_helper.from_array(np.zeros(4, np.int8), "w_z")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dqx"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="dqw", axis=0),
        helper.make_node("Conv", ["xd", "w"], ["c"], name="conv"),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"], name="qc"),  # between Conv and ReLU: wrong
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"], name="dqc"),
        helper.make_node("Relu", ["cd"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 4, 4])],
                              [w, ws, wz, s, z])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    verdicts = {c.name: c.passed for c in check_qdq_rules(model)}
    assert verdicts["nothing between Conv and BatchNorm/ReLU"] is False
    assert verdicts["weights: INT8, per output channel, symmetric"] is True
    # A per-tensor weight scale breaks the weight rule.
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array(0.1, np.float32), "w_s"))
    assert {c.name: c.passed for c in check_qdq_rules(model)}["weights: INT8, per output channel, symmetric"] is False


@given(st.floats(min_value=2.0 ** -40, max_value=60000.0, allow_subnormal=False, width=32))
@settings(max_examples=300, deadline=None)
def test_fp16_scales_are_exact_in_fp16_never_smaller_and_the_nearest_such(scale):
    """A scale FP16 holds exactly (what the engine uses), never below the calibrated one (no INT8 weight clips),
    and no FP16 value between them (nothing coarser than needed)."""
    out = _fp16_exact(np.asarray([scale], np.float32))[0]
    half = np.float16(out)
    assert np.float32(half) == out and out >= np.float32(scale)
    assert np.float32(np.nextafter(half, np.float16(-np.inf))) < np.float32(scale)


@pytest.mark.xdist_group("resnet18")
def test_high_precision_fp32_and_an_old_opset_source(export_cache, tmp_path):
    """``--high-precision fp32`` leaves the float parts FP32 (scales FP32, opset kept); an opset-13 export is raised
    to opset 19 for the FP16 default and still meets the contract and the rules."""
    source = export_cache("resnet18", SMALL).path
    plain = quantize_onnx(QuantizeOptions(model=source, precision="int8", calib_data="synthetic", calib_size=4,
                                          method="max", output=tmp_path / "fp32.onnx", high_precision="fp32"))
    model = onnx.load(str(plain.path))
    assert all(kinds == {onnx.TensorProto.FLOAT} for kinds in _float_types(model).values())
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 18
    assert plain.meta.extra["quantization"]["high_precision"] == "fp32"
    old = export_cache("resnet18", SMALL, opset=13).path
    raised = quantize_onnx(QuantizeOptions(model=old, precision="int8", calib_data="synthetic", calib_size=4,
                                           method="max", output=tmp_path / "old.onnx"))
    model = onnx.load(str(raised.path))
    _assert_fp16_around_qdq(model)
    assert all(c.passed for c in check_qdq_rules(model)), check_qdq_rules(model)  # basic blocks: no conv3 walk
    assert not [n for n in model.graph.node if n.op_type == "Constant"]
    assert raised.agreement.cosine_mean > 0.99
