"""The engine inspector's JSON, read in both majors' layouts (the shapes TensorRT 10.x and 11.x write, as their
documentation and the engines built in tests/gpu show), and what the summary says when there is nothing to read."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.xdist_group("resnet18")  # shares the resnet18 export of the builder tests
from resnest_deploy.exporters.tensorrt_inspect import output_precision, summarize_layers


@pytest.mark.parametrize(("output", "precision"), [
    ({"Format/Datatype": "Row major linear FP32 format"}, "FP32"),
    ({"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}, "FP16"),
    ({"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}, "INT8"),
    ({"Format": "Row major linear", "DataType": "Float"}, "FP32"),
    ({"Format": "Channel major where channel % 8 == 0", "DataType": "Half"}, "FP16"),
    ({"Format": "Row major linear", "DataType": "BFloat16"}, "BF16"),
    ({"Format": "Row major linear", "DataType": "Int8"}, "INT8"),
    ({"Format": "Row major linear", "DataType": "FP8"}, "FP8"),
    ({"Format": "Row major linear", "DataType": "Int32"}, "INT32"),
    ({"Format": "Row major linear", "DataType": "Int64"}, "INT64"),
    ({"Format": "Row major linear", "DataType": "Bool"}, "BOOL"),
    ({"Format/Datatype": "N/A due to dynamic shapes"}, "unknown"),
    ({"Format": "N/A due to dynamic shapes", "DataType": "Float"}, "unknown"),
    ({"Format": "Channel major, dynamic range from calibration", "DataType": "Int8"}, "INT8"),  # only the marker
    ({"Format": "N/A", "DataType": "Half"}, "FP16"),
    ({"Format/Datatype": "Something new"}, "unknown"),
    ({}, "unknown"),
    ("Row major linear FP32 format", "unknown"),
    (None, "unknown"),
])
def test_output_precision_in_either_layout(output, precision):
    assert output_precision(output) == precision


def test_bf16_is_not_read_as_float_and_int8_wins_over_a_float_word():
    assert output_precision({"DataType": "BFloat16 (float)"}) == "BF16"
    assert output_precision({"Format": "Int8 with float scales", "DataType": ""}) == "INT8"


def test_the_summary_counts_layers_by_type_and_first_output_precision_most_common_first():
    layers = [{"LayerType": "CaskConvolution", "Outputs": [{"Format/Datatype": "Int8 format"}]},
              {"LayerType": "CaskConvolution", "Outputs": [{"DataType": "Half"}, {"DataType": "Float"}]},
              "not a layer",
              {"LayerType": "Reformat", "Outputs": [{"DataType": "Half"}]},
              {"LayerType": "CaskConvolution", "Outputs": [{"DataType": "Half"}]},
              {"Outputs": []}]
    summary = summarize_layers(json.dumps({"Layers": layers}))
    assert summary == {"count": 5, "by_type": {"CaskConvolution": 3, "Reformat": 1, "unknown": 1},
                       "by_output_precision": {"FP16": 3, "INT8": 1, "unknown": 1}}
    assert list(summary["by_type"]) == ["CaskConvolution", "Reformat", "unknown"]
    assert list(summary["by_output_precision"]) == ["FP16", "INT8", "unknown"]


@pytest.mark.parametrize("raw", ["", "not json", None, "[1, 2]", "3"])
def test_no_json_is_said_not_crashed_on(raw):
    assert summarize_layers(raw) == {"error": "engine inspector returned no JSON"}


def test_json_without_layers_is_an_empty_summary():
    assert summarize_layers("{}") == {"count": 0, "by_type": {}, "by_output_precision": {}}


def test_inspect_engine_needs_host_code_for_a_version_compatible_plan(monkeypatch, tmp_path, export_cache):
    """Against the TensorRT double (tests/tensorrt_double.py) and a faked GPU: a version-compatible plan is
    inspected only with host code allowed; without it the summary says the engine could not be read."""
    from resnest_deploy.exporters.tensorrt_builder import build_engine
    from resnest_deploy.exporters.tensorrt_env import GpuInfo
    from resnest_deploy.exporters.tensorrt_inspect import inspect_engine
    from resnest_deploy.exporters.tensorrt_options import BuildOptions
    from tests.tensorrt_double import install_double

    model = export_cache("resnet18", 64).path  # exported before the double takes tensorrt's place
    trt = install_double(monkeypatch, "11", GpuInfo("Test GPU (faked)", "8.6", "555.42"))
    engine = build_engine(BuildOptions(model=model, batch="1:4:8", version_compatible=True,
                                       output=tmp_path / "m.engine")).path
    logger = trt.Logger(trt.Logger.WARNING)
    data = engine.read_bytes()
    assert inspect_engine(trt, logger, data, "input", (4, 3, 64, 64)) == {
        "error": "the built engine could not be deserialized for inspection"}
    summary = inspect_engine(trt, logger, data, "input", (4, 3, 64, 64), version_compatible=True)
    assert summary["count"] == 2 and summary["by_output_precision"] == {"FP16": 1, "FP32": 1}
    assert trt.inspected[-1] == (4, 3, 64, 64)
