"""INT8 for ONNX Runtime's CPU provider (--target cpu): exact float rewrites, the U8S8 graph and its checks, and
every command naming a model used on the runtime it was not made for."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from resnest_deploy.calibration.cpu_int8 import cpu_rewrite
from resnest_deploy.calibration.quantize import QuantizeOptions, quantize_onnx
from resnest_deploy.errors import ConfigError
from resnest_deploy.exporters.qdq_rules import check_cpu_qdq
from resnest_deploy.ort_session import ort_session
from tests.conftest import assert_one_line_error

SMALL = 64
pytestmark = pytest.mark.xdist_group("resnest50")


def test_float_rewrites_compute_the_same_thing(export_cache):
    """ReduceMean -> GlobalAveragePool and AveragePool -> depthwise Conv leave resnest50's outputs unchanged."""
    model = onnx.load(str(export_cache("resnest50", SMALL).path))
    rewritten = cpu_rewrite(model)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "ReduceMean" not in ops and "AveragePool" not in ops and ops.count("GlobalAveragePool") == 17
    x = np.random.default_rng(0).normal(size=(3, 3, SMALL, SMALL)).astype(np.float32)
    before, after = (ort_session(m).run(None, {"input": x})[0] for m in (model, rewritten))
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-4 * max(1.0, float(np.abs(before).max())))


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
    with pytest.raises(ConfigError, match="--target cpu makes an INT8 graph"):
        quantize_onnx(QuantizeOptions(model=source, precision="fp16", target="cpu"))


def test_each_command_names_a_model_used_on_the_runtime_it_was_not_made_for(export_cache, cli, tmp_path):
    source = export_cache("resnest50", SMALL).path
    cpu = cli("quantize", str(source), "--precision", "int8", "--target", "cpu", "--calib-data", "synthetic",
              "--calib-size", "4", "--output", str(tmp_path / "m.int8-cpu.onnx"))
    trt = cli("quantize", str(source), "--precision", "int8", "--calib-data", "synthetic", "--calib-size", "4",
              "--output", str(tmp_path / "m.int8.onnx"))
    assert cpu.returncode == 0 and trt.returncode == 0, cpu.stderr + trt.stderr
    assert_one_line_error(cli("build", str(tmp_path / "m.int8-cpu.onnx"), "--emit-script", str(tmp_path / "job")),
                          "INT8 graph for ONNX Runtime's CPU provider", "--target tensorrt")
    assert not (tmp_path / "job").exists()
    parity = cli("parity", str(tmp_path / "m.int8.onnx"), "--samples", "4", "--report", str(tmp_path / "p.json"))
    assert parity.returncode == 0 and "INT8 made for TensorRT" in parity.stdout
    notes = json.loads((tmp_path / "p.json").read_text())["notes"]
    assert any("INT8 made for TensorRT" in n and "--target cpu" in n for n in notes), notes
    bench = cli("bench", str(tmp_path / "m.int8.onnx"), str(tmp_path / "m.int8-cpu.onnx"), "--batch", "1",
                "--iters", "1", "--warmup", "0", "--report", str(tmp_path / "b.json"))
    assert bench.returncode == 0, bench.stderr
    data = json.loads((tmp_path / "b.json").read_text())
    assert any("INT8 made for TensorRT" in n for n in data["notes"]), data["notes"]
    assert any(r["name"].endswith("int8-cpu (m.int8-cpu.onnx)") for r in data["rows"])
