"""ONNX export of every architecture: graph contract, ONNX Runtime verification, metadata, atomic writes."""

from __future__ import annotations

import hashlib

import json
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from resnest_deploy.exporters import onnx_export
from resnest_deploy.exporters.graph import inspect_onnx, load_onnx
from resnest_deploy.exporters.graph_index import default_opset
from resnest_deploy.exporters.metadata import manifest_path, read_manifest, read_metadata
from resnest_deploy.exporters.onnx_export import ExportOptions, export_onnx
from resnest_deploy.errors import VerificationError
from resnest_deploy.models import create_model, get_config, list_models
from resnest_deploy.models.synthetic import synthetic_images
from tests.conftest import ROOT, TRIPWIRE, assert_one_line_error

SMALL = 64


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.xdist_group(a)) for a in list_models()])
def test_every_arch_exports_and_verifies(export_cache, arch):
    result = export_cache(arch, SMALL)
    assert result.report.ok, [c for c in result.report.failures]
    assert [c.name for c in result.comparisons] == [f"batch 1 @ {SMALL}", f"batch 3 @ {SMALL}",
                                                     f"batch 1 @ {SMALL + 1}"]
    assert all(c.passed for c in result.comparisons), result.comparisons
    histogram = result.report.op_histogram
    for op in ("Shape", "Gather", "Concat", "Expand", "ScatterND", "BatchNormalization", "Constant"):
        assert op not in histogram, f"{arch}: {op} in graph"
    cfg = get_config(arch)
    if cfg.mixer == "splat" and cfg.radix > 1:
        assert histogram["Softmax"] == histogram["Transpose"] == sum(cfg.layers)


@pytest.mark.xdist_group("resnest50-native")
def test_resnest50_native_size_graph_and_metadata(export_cache):
    result = export_cache("resnest50")
    path = result.path
    model = load_onnx(path)
    assert default_opset(model) >= 17
    graph_input, graph_output = model.graph.input[0], model.graph.output[0]
    assert [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim] == ["batch", 3, 224, 224]
    assert [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim] == ["batch", 1000]
    meta = read_metadata(model)
    assert meta.arch == "resnest50" and meta.input.size == 224 and meta.input.interpolation == "bicubic"
    assert meta.input.crop_pct == pytest.approx(224 / 256)
    assert meta.weights == "random-init+bn-reestimated(seed=0)" and meta.weights_sha256 is None
    assert set(meta.versions) >= {"resnest-deploy", "torch", "onnx"}
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["arch"] == "resnest50" and manifest["opset"] == meta.opset
    assert manifest["verification"] and all(v["passed"] for v in manifest["verification"])
    assert set(manifest["timings_s"]) == set(onnx_export.EXPORT_STAGES)
    # The file really computes what the eager model computes, at batch sizes the export never saw.
    eager = create_model("resnest50")
    x = synthetic_images(5, 224, torch.Generator().manual_seed(42))
    with torch.no_grad():
        expected = eager(x).numpy()
    assert np.abs(_run(path, x.numpy()) - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    assert result.report.ok


@pytest.mark.parametrize("opset", [13, 17])
def test_older_opsets(tmp_path, opset):
    path = tmp_path / f"r14-{opset}.onnx"
    result = export_onnx(ExportOptions(arch="resnest14d", output=path, opset=opset, img_size=SMALL))
    assert default_opset(load_onnx(path)) == opset
    assert result.report.ok and all(c.passed for c in result.comparisons)


def test_fixed_batch_and_dynamic_hw(tmp_path):
    fixed = export_onnx(ExportOptions(arch="skresnet18", output=tmp_path / "fixed.onnx", img_size=SMALL, batch="4"))
    dims = load_onnx(fixed.path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 3, SMALL, SMALL]
    assert [c.name.split(' @')[0] for c in fixed.comparisons] == ['batch 4', 'batch 4']
    dyn = export_onnx(ExportOptions(arch="resnest26d", output=tmp_path / "dyn.onnx", img_size=SMALL,
                                    dynamic_hw=True))
    eager = create_model("resnest26d")
    for size in (48, 97, 128):
        x = synthetic_images(2, size, torch.Generator().manual_seed(size))
        with torch.no_grad():
            expected = eager(x).numpy()
        assert np.abs(_run(dyn.path, x.numpy()) - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_export_with_weights_records_their_hash(tmp_path):
    source = create_model("resnet18", seed=5)
    weights = tmp_path / "r18.pth"
    torch.save(source.state_dict(), weights)
    result = export_onnx(ExportOptions(arch="resnet18", weights=weights, output=tmp_path / "r18.onnx", img_size=SMALL))
    # The checkpoint file's own SHA-256, as any tool computes it (and what parity compares --weights against).
    assert result.meta.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert read_manifest(result.path)["weights_sha256"] == result.meta.weights_sha256
    x = synthetic_images(2, SMALL, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = source(x).numpy()
    assert np.abs(_run(result.path, x.numpy()) - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_failed_verification_leaves_nothing_unless_kept(tmp_path, monkeypatch):
    # Stand-in for a broken exporter step: scale one weight of the finished graph so it no longer matches eager.
    real_finalize = onnx_export._finalize

    def broken_finalize(proto, meta, **kwargs):
        proto = real_finalize(proto, meta, **kwargs)
        target = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
        array = onnx.numpy_helper.to_array(target) * 3.0
        target.CopyFrom(onnx.numpy_helper.from_array(array, target.name))
        return proto

    monkeypatch.setattr(onnx_export, "_finalize", broken_finalize)
    target = tmp_path / "bad.onnx"
    with pytest.raises(VerificationError) as info:
        export_onnx(ExportOptions(arch="resnet18", output=target, img_size=SMALL))
    assert any("verify" in d for d in info.value.details)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(VerificationError, match="kept as"):
        export_onnx(ExportOptions(arch="resnet18", output=target, img_size=SMALL, keep_failed=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.failed.onnx"]


def test_cli_export_and_inspect(tmp_path, cli):
    path = tmp_path / "out" / "r14.onnx"
    result = cli("export", "--arch", "resnest14d", "--img-size", str(SMALL), "--output", str(path))
    assert result.returncode == 0, result.stderr
    assert path.is_file() and manifest_path(path).is_file()
    assert "batch 3 @ 64" in result.stdout and "FAIL" not in result.stdout
    shown = cli("inspect", str(path), "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["ok"] and report["inputs"][0]["shape"] == ["batch", 3, SMALL, SMALL]
    assert report["op_histogram"]["Softmax"] == 4


def test_cli_bad_input(tmp_path, cli):
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    args = ("export", "--arch", "resnet18", "--img-size", "64")
    assert_one_line_error(cli(*args, "--output", str(a_file / "x.onnx")), "cannot write")
    assert_one_line_error(cli(*args, "--opset", "11"), "--opset 11 refused", "Softmax")
    assert_one_line_error(cli("export", "--arch", "resnet18", "--img-size", "0"), "--img-size")
    assert_one_line_error(cli("export", "--arch", "resnet18", "--img-size", "-5"), "--img-size")
    assert_one_line_error(cli("export", "--arch", "resnet18", "--batch-axis", "0"), "--batch-axis")
    assert_one_line_error(cli("export", "--arch", "resnest5"), "unknown architecture")
    weights = tmp_path / "r34.pth"
    torch.save(create_model("resnet34", bn_batches=1).state_dict(), weights)
    out = tmp_path / "never.onnx"
    assert_one_line_error(cli(*args, "--weights", str(weights), "--output", str(out)), "does not fit resnet18",
                          "resnet34")
    assert not out.exists()
    assert_one_line_error(cli("inspect", str(a_file)), "not an ONNX model")
    assert_one_line_error(cli("inspect", str(tmp_path / "missing.onnx")), "no such file")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_export_leaves_no_file_at_target(tmp_path, sig):
    out_dir = tmp_path / "out"
    target = out_dir / "r50.onnx"
    env = {"PYTHONPATH": f"{TRIPWIRE}:{ROOT}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "resnest_deploy", "export", "--arch", "resnest50", "--output", str(target)],
        cwd=ROOT, env={**__import__("os").environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    # Wait until the export is writing its temporary file, then kill it midway.
    while time.time() < deadline and not list(out_dir.glob(".r50.onnx.*.tmp")):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not target.exists(), "a partial file was left at the target path"
    assert not manifest_path(target).exists()
    if sig == signal.SIGTERM:  # a catchable signal also removes the temporary file
        assert not list(out_dir.glob(".*.tmp"))


def test_inspect_flags_contract_breaks(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    nodes = [
        helper.make_node("Shape", ["input"], ["s"]),
        helper.make_node("BatchNormalization", ["input", "g", "b", "m", "v"], ["bn"]),
        helper.make_node("Reshape", ["bn", "shape"], ["r"]),
        helper.make_node("Softmax", ["r"], ["logits"], axis=-1),
    ]
    inits = [onnx.numpy_helper.from_array(np.ones(3, np.float32), n) for n in "gbmv"]
    inits.append(onnx.numpy_helper.from_array(np.array([2, 10], np.int64), "shape"))
    graph = helper.make_graph(nodes, "bad", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    report = inspect_onnx(path)
    failed = {c.name for c in report.failures}
    assert {"opset >= 13", "no Shape/Gather/Concat/Expand/ScatterND", "BatchNormalization folded",
            "no batch size baked into Reshape", "rSoftMax is Reshape/Transpose/Softmax/Reshape"} <= failed
