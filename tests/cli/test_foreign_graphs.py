"""ONNX files from other tools: what ``--arch`` promises is checked before any calibration, a bundle is only made
for a graph whose checks can run on the GPU host, and ``--localize`` treats the classifier head as a stage."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from resnest_deploy.exporters.metadata import META_PREFIX
from tests.conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.xdist_group("resnet18")


def _foreign(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph as another tool would hand it over: no resnest-deploy metadata."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [p for p in out.metadata_props if not p.key.startswith(META_PREFIX)]
    del out.metadata_props[:]
    out.metadata_props.extend(kept)
    return out


def _rename_input(m: onnx.ModelProto) -> None:
    old = m.graph.input[0].name
    m.graph.input[0].name = "x"
    for node in m.graph.node:
        node.input[:] = ["x" if i == old else i for i in node.input]


def _unfolded_batchnorm(m: onnx.ModelProto) -> None:
    first = m.graph.node[0]
    channels = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == first.input[1])).shape[0]
    for name, value in (("s", 1.0), ("b", 0.0), ("mu", 0.0), ("var", 1.0)):
        m.graph.initializer.append(numpy_helper.from_array(np.full(channels, value, np.float32), f"bn_{name}"))
    out = first.output[0]
    first.output[0] = "pre_bn"
    m.graph.node.insert(1, helper.make_node("BatchNormalization", ["pre_bn", "bn_s", "bn_b", "bn_mu", "bn_var"],
                                            [out], name="bn"))


def _shape_chain(m: onnx.ModelProto) -> None:
    logits = m.graph.output[0].name
    last = next(n for n in m.graph.node if logits in n.output)
    last.output[:] = ["pre" if o == logits else o for o in last.output]
    m.graph.node.extend([helper.make_node("Shape", ["pre"], ["shape"], name="shape"),
                         helper.make_node("Reshape", ["pre", "shape"], [logits], name="reshape")])


def _extra_output(m: onnx.ModelProto) -> None:
    m.graph.output.append(helper.make_tensor_value_info(m.graph.node[0].output[0], onnx.TensorProto.FLOAT, None))


DEFECTS = {"input renamed": (_rename_input, "input"), "unfolded BatchNorm": (_unfolded_batchnorm, "BatchNorm"),
           "a Shape chain": (_shape_chain, "Shape"), "a second output": (_extra_output, "output")}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_a_foreign_graph_that_breaks_the_contract_is_refused_before_calibration(export_cache, tmp_path, defect):
    model = _foreign(onnx.load(str(export_cache("resnet18", 64).path)))
    change, says = DEFECTS[defect]
    change(model)
    path = tmp_path / "other.onnx"
    onnx.save(model, str(path))
    trace = tmp_path / "trace.txt"
    result = run_cli("quantize", str(path), "--arch", "resnet18", "--precision", "int8", "--calib-data", "synthetic",
                     "--calib-size", "4", "--output", str(tmp_path / "q.onnx"), env={"RESNEST_DEPLOY_TRACE": str(trace)})
    assert_one_line_error(result, "other.onnx", says)
    assert "calibrate" not in (trace.read_text() if trace.exists() else "")
    assert not list(tmp_path.glob("q.onnx*"))


def test_no_bundle_for_a_graph_whose_checks_cannot_run_on_the_gpu_host(export_cache, tmp_path):
    path = tmp_path / "other.onnx"
    onnx.save(_foreign(onnx.load(str(export_cache("resnet18", 64).path))), str(path))
    result = run_cli("build", str(path), "--emit-script", str(tmp_path / "bundle"))
    assert_one_line_error(result, "other.onnx", "no resnest-deploy metadata", "parity")
    assert not (tmp_path / "bundle").exists()


def test_localize_names_the_head_when_the_classifier_diverges(export_cache, tmp_path):
    model = onnx.load(str(export_cache("resnet18", 64).path))
    weight = next(i for i in model.graph.initializer if i.name == "fc.weight")
    values = numpy_helper.to_array(weight).copy()
    values *= 3.0
    weight.CopyFrom(numpy_helper.from_array(values, "fc.weight"))
    path = tmp_path / "bad-head.onnx"
    onnx.save(model, str(path))
    report = tmp_path / "r.json"
    result = run_cli("parity", str(path), "--samples", "4", "--localize", "--output", str(report))
    assert result.returncode == 1, result.stderr
    loc = json.loads(report.read_text())["localization"]
    assert loc["first_bad"] == "fc" and loc["largest_jump"] == "fc", loc
    assert [s["name"] for s in loc["stages"]][-1] == "fc" and all(s["passed"] for s in loc["stages"][:-1])
