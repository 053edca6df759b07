"""One ownership rule for --exclude: FP16 and INT8 select the same layers for the same pattern, by the model's own
stage names."""

from __future__ import annotations

import onnx
import pytest

from resnest_deploy.calibration.fp16 import convert_fp16
from resnest_deploy.calibration.int8 import place_qdq
from resnest_deploy.calibration.layers import layer_map
from resnest_deploy.errors import ConfigError
from resnest_deploy.exporters.graph_index import name_nodes
from resnest_deploy.models import create_model, get_config

SMALL = 64
pytestmark = pytest.mark.xdist_group("resnest50")


@pytest.fixture(scope="module")
def graph(export_cache):
    model = onnx.load(str(export_cache("resnest50", SMALL).path))
    name_nodes(model)
    return model


def test_stages_are_the_models_own(graph):
    cfg = get_config("resnest50")
    assert [name for name, _ in create_model("resnest50").stages()] == list(cfg.stage_names()[:-1])
    layers = layer_map(graph, cfg.stage_names())
    assert set(layers.stages.values()) == set(cfg.stage_names())
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    assert {layers.stages[n.name] for n in convs if n.input[1].startswith("conv1.")} == {"stem"}
    gemm = next(n for n in graph.graph.node if n.op_type == "Gemm")
    assert layers.stages[gemm.name] == "fc"
    # A block's residual Add and its rSoftMax belong to that block, found through the data flow, not node names.
    adds = [n for n in graph.graph.node if n.op_type == "Add" and layers.layers[n.name].endswith("conv3")]
    assert [layers.stages[n.name] for n in adds] == list(cfg.stage_names()[1:-1])


@pytest.mark.parametrize("pattern", ["layer2.*", "layer4.0", "*.conv2.fc1", "stem", "fc"])
def test_fp16_and_int8_keep_the_same_layers_float(graph, pattern):
    stages = get_config("resnest50").stage_names()
    fp16 = convert_fp16(graph, stages, exclude=(pattern,))
    fp16_float = {n.input[1].removesuffix(".weight") for n in fp16.graph.node
                  if n.op_type in ("Conv", "Gemm")
                  and any(i.name == n.input[1] and i.data_type == onnx.TensorProto.FLOAT
                          for i in fp16.graph.initializer)}
    plan = place_qdq(graph, layer_map(graph, stages), exclude=(pattern,), quantize_attention=True)
    int8_float = {u.owner for u in plan.excluded if u.kind == "weight"}
    assert fp16_float and fp16_float == int8_float


def test_patterns_that_match_nothing_are_refused(graph):
    layers = layer_map(graph, get_config("resnest50").stage_names())
    layers.check_patterns(["layer1.*", "*.fc2", "stem"], "--exclude")
    for typo in ("layer5.*", "Layer1.0", "conv99"):
        with pytest.raises(ConfigError, match=f"--exclude '{typo}' matches no layer"):
            layers.check_patterns([typo], "--exclude")
