"""Triton configs for graphs of other shapes: dynamic height/width, labels, a target with no pinned GPU."""

from __future__ import annotations

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from resnest_deploy.deploy.targets import Target
from tests import golden
from resnest_deploy.deploy.triton import render_config, repository_entries, write_repository


def _graph(path):
    weight = numpy_helper.from_array(np.ones((5, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                         ["batch", 3, "height", "width"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_dynamic_sizes_labels_and_a_target_without_a_pinned_gpu(tmp_path):
    model = _graph(tmp_path / "m.onnx")
    targets = [Target("any", None, None, ("fp16",), "2:4:16"), Target("l4", "8.9", 10, ("fp16", "int8"), "1:8:64")]
    entries = repository_entries("tiny", model, targets, labels=list("abcde"))
    write_repository(tmp_path / "repo", entries, model, labels=list("abcde"))
    assert [e.name for e in entries] == ["tiny_onnx", "tiny_trt_fp16", "tiny_trt_int8"]
    # No plan built yet: only the ONNX model is served (a stock server exits on a model folder without its file).
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["tiny_onnx"]
    plan = tmp_path / "repo" / "tiny_trt_fp16" / "1" / "model.sm89.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"plan")
    write_repository(tmp_path / "repo", entries, model, labels=list("abcde"))
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["tiny_onnx", "tiny_trt_fp16"]
    configs = {e.name: text_format.Parse(render_config(e), model_config_pb2.ModelConfig()) for e in entries}
    fp16 = configs["tiny_trt_fp16"]
    assert (tmp_path / "repo" / "tiny_trt_fp16" / "config.pbtxt").read_text() == render_config(entries[1])
    assert list(fp16.input[0].dims) == [3, -1, -1] and list(fp16.output[0].dims) == [5]
    assert fp16.output[0].label_filename == "labels.txt"
    assert (tmp_path / "repo" / "tiny_trt_fp16" / "labels.txt").read_text().split() == list("abcde")
    assert fp16.default_model_filename == "model.plan" and dict(fp16.cc_model_filenames) == {"8.9": "model.sm89.plan"}
    assert fp16.max_batch_size == 16 and list(fp16.dynamic_batching.preferred_batch_size) == [4]
    assert not fp16.model_warmup  # no warm-up input can be made for a dynamic height/width
    assert configs["tiny_onnx"].max_batch_size == 64
    assert golden.served_copy_of(tmp_path / "repo" / "tiny_onnx" / "1" / "model.onnx", model)
