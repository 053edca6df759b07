"""INT8 for ONNX Runtime's CPU provider (--runtime cpu): exact float rewrites, the U8S8 graph and its checks, and
every command naming a model used on the runtime it was not made for."""

from __future__ import annotations

import os
import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from resnest_deploy.calibration.cpu_int8 import cpu_rewrite, separate_radix_parts
from resnest_deploy.calibration.layers import PART_MARK, layer_map
from resnest_deploy.calibration.quantize import QuantizeOptions, quantize_onnx
from resnest_deploy.errors import ConfigError
from resnest_deploy.exporters.graph_index import GraphIndex, attr
from resnest_deploy.exporters.qdq_rules import check_cpu_qdq
from resnest_deploy.models.registry import get_config
from resnest_deploy.ort_session import ort_session
from tests.conftest import assert_one_line_error

SMALL = 64
pytestmark = pytest.mark.xdist_group("resnest50")


@pytest.mark.parametrize("arch, radix, avd_first", [("resnest50", 2, 0), ("resnest50_fast_4s2x40d", 4, 1)])
def test_float_rewrites_compute_the_same_thing(export_cache, arch, radix, avd_first):
    """ReduceMean -> GlobalAveragePool, AveragePool -> depthwise Conv and the radix parts computed apart leave the
    outputs unchanged (radix 2; radix 4 with cardinality 2 and avd's pool before the grouped conv), and every
    node of a cut layer keeps its layer's name (what --exclude matches)."""
    model = onnx.load(str(export_cache(arch, SMALL).path))
    rewritten = cpu_rewrite(model)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "ReduceMean" not in ops and "AveragePool" not in ops and ops.count("GlobalAveragePool") == 17
    feature_splits = [n for n in rewritten.graph.node if n.op_type == "Split" and
                      GraphIndex(rewritten.graph).producer(n.input[0]).op_type == "Relu"]
    assert not feature_splits and "Slice" not in ops
    # 16 blocks x (conv1, conv2) per part, and the 3 stride-2 blocks' avd pools (depthwise Convs) when they come first
    assert sum(PART_MARK in n.name and n.op_type == "Conv" for n in rewritten.graph.node) == (16 * 2 + 3 * avd_first) * radix
    x = np.random.default_rng(0).normal(size=(3, 3, SMALL, SMALL)).astype(np.float32)
    before, after = (ort_session(m).run(None, {"input": x})[0] for m in (model, rewritten))
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-4 * max(1.0, float(np.abs(before).max())))
    stages = get_config(arch).stage_names()
    original, cut = (layer_map(m, stages) for m in (model, rewritten))
    assert set(cut.layers.values()) == set(original.layers.values())
    assert {cut.layers[n.name] for n in rewritten.graph.node if PART_MARK in n.name} >= {
        "layer1.0.conv1", "layer1.0.conv2.conv", "layer4.2.conv2.conv"}


def _radix_graph(parts: int, groups: int, per_group: tuple[int, int], above: str, between: tuple[str, ...],
                 bias: bool, size: int, sizes: list[int] | None = None) -> onnx.ModelProto:
    """``[Conv -> Relu ->] between -> Conv(groups x parts) -> Relu -> Split(parts)``, the split parts as outputs;
    ``above`` is ``conv``, ``shared`` (its output also a graph output, so it cannot be cut) or ``none``; the Split
    has ``num_outputs``, or ``sizes`` as its second input."""
    rng = np.random.default_rng(size * 31 + parts)
    channels = parts * groups * per_group[0]
    inits, nodes, outputs = [], [], []

    def weight(name, shape):
        inits.append(numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name))
        return name

    source, width = "input", channels if above == "none" else 3
    if above != "none":
        inputs = ["input", weight("a.weight", (channels, 3, 1, 1))] + ([weight("a.bias", (channels,))] if bias else [])
        nodes += [helper.make_node("Conv", inputs, ["a"], name="a"), helper.make_node("Relu", ["a"], ["ra"], name="ra")]
        source = "ra"
        if above == "shared":
            outputs.append("ra")
    for i, op in enumerate(between):
        if op == "depthwise":
            nodes.append(helper.make_node("Conv", [source, weight(f"d{i}.weight", (channels, 1, 3, 3))], [f"m{i}"],
                                          group=channels, pads=[1, 1, 1, 1], name=f"m{i}"))
        else:
            nodes.append(helper.make_node(op, [source], [f"m{i}"], name=f"m{i}", **(
                {} if op == "Relu" else {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]})))
        source = f"m{i}"
    out_channels = parts * groups * per_group[1]
    inputs = [source, weight("b.weight", (out_channels, per_group[0], 3, 3))]
    nodes += [helper.make_node("Conv", inputs + ([weight("b.bias", (out_channels,))] if bias else []), ["b"],
                               group=parts * groups, pads=[1, 1, 1, 1], name="b"),
              helper.make_node("Relu", ["b"], ["rb"], name="rb"),
              helper.make_node("Split", ["rb", "sizes"] if sizes else ["rb"], [f"part{p}" for p in range(parts)],
                               axis=1, name="split", **({} if sizes else {"num_outputs": parts}))]
    if sizes:
        inits.append(numpy_helper.from_array(np.asarray(sizes, np.int64), "sizes"))
    outputs += [f"part{p}" for p in range(parts)]
    graph = helper.make_graph(nodes, "radix", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             [2, width, size, size])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * 4) for o in outputs],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


# The two choices that pick the rewrite's code path (what sits above the Split, how its sizes are given) are
# enumerated, so every path is run on every `make test`; hypothesis draws the other seven dimensions within each.
# HYPOTHESIS_PROFILE=long draws 500 per path (docs/testing.md).
RADIX_EXAMPLES = 500 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 50


@pytest.mark.parametrize("sizes_input", [False, True], ids=["num_outputs", "sizes"])
@pytest.mark.parametrize("above", ["conv", "shared", "none"])
@settings(max_examples=RADIX_EXAMPLES, deadline=None)
@given(parts=st.integers(2, 4), groups=st.integers(1, 3), per_group=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       between=st.lists(st.sampled_from(["Relu", "AveragePool", "MaxPool", "depthwise"]), max_size=2).map(tuple),
       bias=st.booleans(), size=st.integers(3, 9), named=st.booleans())
def test_radix_parts_are_computed_apart_exactly(parts, groups, per_group, above, between, bias, size, sizes_input,
                                                named):
    """Any number of parts, groups per part and channels, with or without a Conv above to cut (else Slices of
    the grouped Conv's input), per-channel ops between, biases or not, nodes named or not: the same outputs, no
    Split left, and no convolution but depthwise ones with more groups than one part's."""
    sizes = [groups * per_group[1]] * parts if sizes_input else None
    model = _radix_graph(parts, groups, per_group, above, between, bias, size, sizes)
    source = onnx.load_from_string(model.SerializeToString())
    for node in source.graph.node if not named else ():
        node.name = ""
    rewritten = separate_radix_parts(source)
    onnx.checker.check_model(rewritten, full_check=True)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "Split" not in ops
    assert ("Slice" in ops) == (above != "conv")
    assert all(attr(n, "group", 1) <= groups for n in rewritten.graph.node  # d*: the depthwise convs between
               if n.op_type == "Conv" and not n.input[1].startswith("d"))
    x = np.random.default_rng(size).normal(size=(2, model.graph.input[0].type.tensor_type.shape.dim[1].dim_value,
                                                  size, size)).astype(np.float32)
    for before, after in zip(*(ort_session(m).run(None, {"input": x}) for m in (model, rewritten))):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-4)


def test_unequal_or_unknown_radix_splits_are_left_alone():
    """A Split into unequal parts is not a radix cut: the graph is returned as it was."""
    model = _radix_graph(2, 2, (2, 2), "conv", (), True, 5, sizes=[3, 5])
    rewritten = separate_radix_parts(onnx.load_from_string(model.SerializeToString()))
    assert [n.op_type for n in rewritten.graph.node] == [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("size, ceil_mode, count_include_pad, pads, replaced", [
    (8, 1, 0, [0, 0, 0, 0], True), (7, 1, 0, [0, 0, 0, 0], False),  # ceil_mode: an odd size, a partial window
    (8, 0, 1, [1, 1, 1, 1], True), (8, 0, 0, [1, 1, 1, 1], False),  # padding not counted: border windows differ
    (8, 1, 1, [1, 1, 1, 1], False),
])
def test_average_pools_are_rewritten_only_where_exact(size, ceil_mode, count_include_pad, pads, replaced):
    kernel = [2, 2] if not any(pads) else [3, 3]
    pool = helper.make_node("AveragePool", ["input"], ["y"], kernel_shape=kernel, strides=[2, 2], pads=pads,
                            ceil_mode=ceil_mode, count_include_pad=count_include_pad, name="pool")
    graph = helper.make_graph([pool], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                          [1, 4, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    rewritten = cpu_rewrite(model)
    assert (rewritten.graph.node[0].op_type == "Conv") is replaced
    x = np.random.default_rng(1).normal(size=(1, 4, size, size)).astype(np.float32)
    np.testing.assert_allclose(ort_session(rewritten).run(None, {"input": x})[0],
                               ort_session(model).run(None, {"input": x})[0], atol=1e-6)


def test_cpu_graph_is_u8s8_and_recorded(export_cache, tmp_path):
    source = export_cache("resnest50", SMALL).path
    result = quantize_onnx(QuantizeOptions(model=source, precision="int8", target="cpu", calib_data="synthetic",
                                           calib_size=13, method="percentile", output=tmp_path / "m.int8-cpu.onnx"))
    model = onnx.load(str(result.path))
    assert result.meta.target == "cpu" and result.meta.extra["quantization"]["target"] == "cpu"
    assert all(c.passed for c in check_cpu_qdq(model)), check_cpu_qdq(model)
    zero_points = {numpy_helper.to_array(i).dtype for i in model.graph.initializer if i.name.endswith("zero_point")}
    assert np.dtype(np.uint8) in zero_points
    assert result.agreement.cosine_mean > 0.99 and result.agreement.samples == 13
    with pytest.raises(ConfigError, match="--runtime cpu makes an INT8 graph"):
        quantize_onnx(QuantizeOptions(model=source, precision="fp16", target="cpu"))


def test_each_command_names_a_model_used_on_the_runtime_it_was_not_made_for(export_cache, cli, tmp_path):
    source = export_cache("resnest50", SMALL).path
    cpu = cli("quantize", str(source), "--precision", "int8", "--runtime", "cpu", "--calib-data", "synthetic",
              "--calib-size", "4", "--output", str(tmp_path / "m.int8-cpu.onnx"))
    trt = cli("quantize", str(source), "--precision", "int8", "--calib-data", "synthetic", "--calib-size", "4",
              "--output", str(tmp_path / "m.int8.onnx"))
    assert cpu.returncode == 0 and trt.returncode == 0, cpu.stderr + trt.stderr
    assert_one_line_error(cli("build", str(tmp_path / "m.int8-cpu.onnx"), "--emit-script", str(tmp_path / "job")),
                          "INT8 graph for ONNX Runtime's CPU provider", "--runtime tensorrt")
    assert not (tmp_path / "job").exists()
    parity = cli("parity", str(tmp_path / "m.int8.onnx"), "--samples", "4", "--output", str(tmp_path / "p.json"))
    assert parity.returncode == 0 and "INT8 made for TensorRT" in parity.stdout
    notes = json.loads((tmp_path / "p.json").read_text())["notes"]
    assert any("INT8 made for TensorRT" in n and "--runtime cpu" in n for n in notes), notes
    bench = cli("bench", str(tmp_path / "m.int8.onnx"), str(tmp_path / "m.int8-cpu.onnx"), "--bench-batch", "1",
                "--iters", "1", "--warmup", "0", "--output", str(tmp_path / "b.json"))
    assert bench.returncode == 0, bench.stderr
    data = json.loads((tmp_path / "b.json").read_text())
    assert any("INT8 made for TensorRT" in n for n in data["notes"]), data["notes"]
    assert any(r["name"].endswith("int8-cpu (m.int8-cpu.onnx)") for r in data["rows"])
