"""Triton configs for graphs of other shapes: dynamic height/width, labels, a target with no pinned GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from resnest_deploy.deploy.targets import Target
from resnest_deploy.deploy.triton import render_config, repository_entries, write_repository
from tests import golden


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
    assert configs["tiny_onnx"].output[0].label_filename == "labels.txt"
    assert golden.served_copy_of(tmp_path / "repo" / "tiny_onnx" / "1" / "model.onnx", model)


def _static_graph(path, *, dtype=TensorProto.FLOAT, domains=("",), ir=10):
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["p"]), helper.make_node("Flatten", ["p"], ["scores"]),
             helper.make_node("ArgMax", ["scores"], ["top"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", dtype, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("scores", dtype, ["n", 3]),
                               helper.make_tensor_value_info("top", TensorProto.INT64, ["n", 1])])
    opsets = [helper.make_opsetid(d, 18 if d == "" else 1) for d in domains]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir
    onnx.save(model, str(path))
    return path


def test_every_field_of_a_static_graphs_configs_as_triton_parses_them(tmp_path):
    model = _static_graph(tmp_path / "m.onnx", dtype=TensorProto.FLOAT16)
    targets = [Target("t4", "7.5", 10, ("fp16",), "1:2:8"), Target("l4", "8.9", 10, ("fp16", "fp32"), "4:6:16")]
    entries = repository_entries("tiny", model, targets)
    parsed = {e.name: text_format.Parse(render_config(e), model_config_pb2.ModelConfig()) for e in entries}
    assert list(parsed) == ["tiny_onnx", "tiny_trt_fp32", "tiny_trt_fp16"]
    cpu, fp32, fp16 = parsed.values()
    assert (cpu.name, cpu.platform, cpu.max_batch_size) == ("tiny_onnx", "onnxruntime_onnx", 16)
    assert list(cpu.dynamic_batching.preferred_batch_size) == [2] and cpu.dynamic_batching.max_queue_delay_microseconds == 100
    assert [(g.kind, g.count) for g in cpu.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)]
    assert not cpu.model_warmup and not cpu.cc_model_filenames and not cpu.default_model_filename
    for config in parsed.values():
        assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
            ("image", model_config_pb2.TYPE_FP16, [3, 8, 8])]
        assert [(t.name, t.data_type, list(t.dims), t.label_filename) for t in config.output] == [
            ("scores", model_config_pb2.TYPE_FP16, [3], ""), ("top", model_config_pb2.TYPE_INT64, [1], "")]
    assert (fp32.platform, fp32.max_batch_size, list(fp32.dynamic_batching.preferred_batch_size)) == (
        "tensorrt_plan", 16, [6])
    assert dict(fp32.cc_model_filenames) == {"8.9": "model.sm89.plan"} and not fp32.default_model_filename
    assert (fp16.max_batch_size, list(fp16.dynamic_batching.preferred_batch_size)) == (8, [2])
    assert dict(fp16.cc_model_filenames) == {"7.5": "model.sm75.plan", "8.9": "model.sm89.plan"}
    assert [(g.kind, g.count) for g in fp16.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 1)]
    # A static input: Triton warms each plan model up at load with one zero batch of it.
    (warmup,) = fp16.model_warmup
    assert (warmup.name, warmup.batch_size, list(warmup.inputs)) == ("zeros", 1, ["image"])
    sample = warmup.inputs["image"]
    assert (sample.data_type, list(sample.dims), sample.zero_data) == (model_config_pb2.TYPE_FP16, [3, 8, 8], True)
    # Without targets: the ONNX model alone, with the CLI's default profile.
    (alone,) = repository_entries("tiny", model, [])
    assert (alone.max_batch_size, alone.preferred_batch, alone.label_file) == (32, 8, None)


def test_the_repositorys_layout_before_any_graph_is_read():
    from resnest_deploy.deploy.triton import plan_path, repository_files
    from resnest_deploy.deploy.triton_image import repository_files as image_files

    targets = [Target("any", None, None, ("int8",)), Target("l4", "8.9", 10, ("fp16", "int8"))]
    assert repository_files("m", targets) == {"m_onnx": {"model.onnx"}, **image_files("m"),
                                              "m_trt_fp16": {"model.sm89.plan"},
                                              "m_trt_int8": {"model.plan", "model.sm89.plan"}}
    assert plan_path(Path("/r"), "m", "int8", targets[1]) == Path("/r/m_trt_int8/1/model.sm89.plan")
    assert plan_path(Path("/r"), "m", "int8", targets[0]) == Path("/r/m_trt_int8/1/model.plan")


def test_the_served_onnx_copy_reads_on_older_runtimes_and_computes_the_same(tmp_path):
    import onnxruntime as ort

    from resnest_deploy.deploy.triton import triton_onnx

    source = _static_graph(tmp_path / "m.onnx", domains=("", "ai.onnx.ml", "com.microsoft"))
    triton_onnx(source, tmp_path / "out" / "model.onnx")
    copy = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert copy.ir_version == 9 and [(o.domain, o.version) for o in copy.opset_import] == [("", 18)]
    assert copy.graph == onnx.load(str(source)).graph
    older = _static_graph(tmp_path / "old.onnx", ir=8)
    triton_onnx(older, tmp_path / "old" / "model.onnx")
    assert onnx.load(str(tmp_path / "old" / "model.onnx")).ir_version == 8
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": x})
           for p in (source, tmp_path / "out" / "model.onnx")]
    assert all(np.array_equal(a, b) for a, b in zip(*run))
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "model.onnx"]


def test_link_or_copy_puts_the_bytes_in_place_whether_or_not_the_folder_takes_links(tmp_path, monkeypatch):
    from resnest_deploy.deploy import triton

    source = tmp_path / "a.bin"
    source.write_bytes(b"payload")
    triton.link_or_copy(source, tmp_path / "x" / "linked.bin")
    assert (tmp_path / "x" / "linked.bin").read_bytes() == b"payload"
    assert (tmp_path / "x" / "linked.bin").stat().st_ino == source.stat().st_ino

    def no_links(*_):
        raise OSError("cross-device link")

    monkeypatch.setattr(triton.os, "link", no_links)
    triton.link_or_copy(source, tmp_path / "x" / "copied.bin")
    copied = tmp_path / "x" / "copied.bin"
    assert copied.read_bytes() == b"payload" and copied.stat().st_ino != source.stat().st_ino
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["copied.bin", "linked.bin"]


def test_a_repository_without_labels_has_no_label_files(tmp_path):
    model = _static_graph(tmp_path / "m.onnx")
    target = Target("l4", "8.9", 10, ("fp16",))
    entries = repository_entries("tiny", model, [target])
    plan = tmp_path / "repo" / "tiny_trt_fp16" / "1" / "model.sm89.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"plan")
    write_repository(tmp_path / "repo", entries, model)
    assert not list((tmp_path / "repo").rglob("labels.txt"))
    assert sorted(p.name for p in (tmp_path / "repo" / "tiny_trt_fp16").iterdir()) == ["1", "config.pbtxt"]
    assert "label_filename" not in (tmp_path / "repo" / "tiny_onnx" / "config.pbtxt").read_text()


def test_plan_models_appear_once_any_of_their_plans_is_in_place_in_any_order(tmp_path):
    model = _static_graph(tmp_path / "m.onnx")
    targets = [Target("any", None, None, ("fp16", "int8")), Target("l4", "8.9", 10, ("int8",))]
    entries = repository_entries("tiny", model, targets)
    root = tmp_path / "repo"
    (root / "tiny_trt_int8" / "1").mkdir(parents=True)
    (root / "tiny_trt_int8" / "1" / "model.plan").write_bytes(b"plan")  # the unpinned target's default plan
    write_repository(root, entries, model)
    assert sorted(p.name for p in root.iterdir()) == ["tiny_onnx", "tiny_trt_int8"]
    assert (root / "tiny_trt_int8" / "config.pbtxt").read_text() == render_config(entries[2])
    assert [e.to_dict() for e in entries] == [
        {"name": "tiny_onnx", "platform": "onnxruntime_onnx", "max_batch_size": 32, "preferred_batch": 8,
         "files": {}, "default_file": None, "labels": None},
        {"name": "tiny_trt_fp16", "platform": "tensorrt_plan", "max_batch_size": 32, "preferred_batch": 8,
         "files": {}, "default_file": "model.plan", "labels": None},
        {"name": "tiny_trt_int8", "platform": "tensorrt_plan", "max_batch_size": 32, "preferred_batch": 8,
         "files": {"8.9": "model.sm89.plan"}, "default_file": "model.plan", "labels": None}]
    entries[2].files["9.0"] = "x"
    assert entries[2].to_dict()["files"] is not entries[2].files  # a copy, not the entry's own dict


def test_the_served_copy_keeps_the_operator_sets_its_nodes_use_and_its_external_weights(tmp_path):
    from resnest_deploy.deploy.triton import triton_onnx

    weight = numpy_helper.from_array(np.full((3, 3), 0.5, np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("Gelu", ["y"], ["z"], domain="com.microsoft")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx", 18),
                                                    helper.make_opsetid("com.microsoft", 1),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    source = tmp_path / "src" / "m.onnx"
    source.parent.mkdir()
    onnx.save(model, str(source), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    triton_onnx(source, tmp_path / "served" / "model.onnx")
    assert sorted(p.name for p in (tmp_path / "served").iterdir()) == ["model.onnx"]  # weights inside the copy
    copy = onnx.load(str(tmp_path / "served" / "model.onnx"))
    assert sorted((o.domain, o.version) for o in copy.opset_import) == [("ai.onnx", 18), ("com.microsoft", 1)]
    np.testing.assert_array_equal(numpy_helper.to_array(copy.graph.initializer[0]), np.full((3, 3), 0.5))


def test_two_inputs_labels_on_the_first_output_only_and_a_warmup_for_single_channel_images(tmp_path):
    nodes = [helper.make_node("Add", ["image", "mask"], ["s"]), helper.make_node("GlobalAveragePool", ["s"], ["p"]),
             helper.make_node("Flatten", ["p"], ["scores"]), helper.make_node("Identity", ["scores"], ["copy"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, 8, 8]),
                                           helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", 1, 8, 8])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 1]),
                               helper.make_tensor_value_info("copy", TensorProto.FLOAT, ["n", 1])])
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    entries = repository_entries("two", path, [Target("l4", "8.9", 10, ("fp16",))], labels=["only"])
    for entry in entries:
        config = text_format.Parse(render_config(entry), model_config_pb2.ModelConfig())
        assert [t.name for t in config.input] == ["image", "mask"]
        assert [t.label_filename for t in config.output] == ["labels.txt", ""]
        assert bool(config.model_warmup) == entry.gpu  # dims [1, 8, 8] are static: plans warm up
        if entry.gpu:
            assert list(config.model_warmup[0].inputs["image"].dims) == [1, 8, 8]


@pytest.mark.parametrize(("onnx_type", "triton_type"), [
    (TensorProto.BFLOAT16, model_config_pb2.TYPE_BF16), (TensorProto.INT16, model_config_pb2.TYPE_INT16),
    (TensorProto.UINT16, model_config_pb2.TYPE_UINT16), (TensorProto.UINT32, model_config_pb2.TYPE_UINT32),
    (TensorProto.UINT64, model_config_pb2.TYPE_UINT64), (TensorProto.DOUBLE, model_config_pb2.TYPE_FP64),
    (TensorProto.INT32, model_config_pb2.TYPE_INT32), (TensorProto.INT8, model_config_pb2.TYPE_INT8),
    (TensorProto.UINT8, model_config_pb2.TYPE_UINT8), (TensorProto.BOOL, model_config_pb2.TYPE_BOOL),
    (TensorProto.STRING, model_config_pb2.TYPE_STRING)])
def test_every_onnx_type_triton_serves_gets_its_triton_type(onnx_type, triton_type):
    from resnest_deploy.deploy.triton import io_configs

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx_type, ["n", 4])],
                              [helper.make_tensor_value_info("y", onnx_type, ["n", 4])])
    (x,), (y,) = io_configs(helper.make_model(graph))
    assert getattr(model_config_pb2, x.data_type) == getattr(model_config_pb2, y.data_type) == triton_type


def test_a_type_triton_cannot_serve_is_refused_naming_the_tensor():
    from resnest_deploy.deploy.triton import io_configs
    from resnest_deploy.errors import ArtifactError

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT8E4M3FN, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT8E4M3FN, ["n", 4])])
    with pytest.raises(ArtifactError) as info:
        io_configs(helper.make_model(graph))
    assert str(info.value) == "x is a float8e4m3fn tensor, a type Triton cannot serve"
