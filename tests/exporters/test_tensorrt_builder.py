"""`build` without a GPU: the builder against the strict TensorRT test double (10.16 and 11.4), the GPU check,
the emitted script, and the engine/host compatibility rules.

The double (tests/tensorrt_double.py) is a fake standing in for TensorRT, generated from the real API name
lists; a GPU is faked by patching ``exporters.tensorrt_env.gpu_info``. Both are said where used. Real builds are
in tests/gpu (``pytest -m gpu``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess

import onnx
import pytest
from onnx import helper

from resnest_deploy.exporters.build_script import emit_script
from resnest_deploy.exporters.tensorrt_builder import build_engine
from resnest_deploy.exporters.tensorrt_options import BuildOptions, parse_batch
from resnest_deploy.exporters.metadata import ArtifactMeta
from resnest_deploy.exporters.tensorrt_env import GpuInfo
from resnest_deploy.models import get_config
from resnest_deploy.errors import ArtifactError, ConfigError, EngineBuildError, EngineMismatchError
from resnest_deploy.exporters.tensorrt_env import check_engine_host
from resnest_deploy.runners.trt_runner import TrtRunner
from tests.conftest import assert_one_line_error, no_gpu_env
from tests.tensorrt_double import TensorRTDouble, install_double

SMALL = 64
FAKE_GPU = GpuInfo("Test GPU (faked for the double)", "8.6", "555.42")
pytestmark = pytest.mark.xdist_group("resnet18")


@pytest.fixture
def onnx_model(export_cache):
    return export_cache("resnet18", SMALL).path


def _use_double(monkeypatch, major, **kwargs):
    return install_double(monkeypatch, major, FAKE_GPU, **kwargs)  # the double, and a GPU, faked


@pytest.mark.parametrize("major", ["10", "11"])
def test_build_one_code_path_for_10_and_11(monkeypatch, tmp_path, onnx_model, major):
    trt = _use_double(monkeypatch, major)
    cache = tmp_path / "timing.cache"
    options = BuildOptions(model=onnx_model, batch="1:8:32", timing_cache=cache, output=tmp_path / "m.engine",
                           hardware_compat="ampere+", opt_level=4, workspace_gib=2, tf32=True)
    result = build_engine(options)
    built = trt.built[-1]
    # Strongly typed network (the flag is required on 10.x and implied on 11.x); no precision flags at all.
    assert built["network_flags"] == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert built["flags_set"] == ["TF32"] and built["flags_cleared"] == []
    assert built["profiles"] == [{"input": ((1, 3, SMALL, SMALL), (8, 3, SMALL, SMALL), (32, 3, SMALL, SMALL))}]
    assert built["workspace"] == ("WORKSPACE", 2 << 30)
    assert built["config"] == {"builder_optimization_level": 4, "profiling_verbosity": "DETAILED",
                               "hardware_compatibility_level": "AMPERE_PLUS"}
    # Engine and manifest.
    assert result.path.read_bytes().startswith(b"TRTDOUBLE")
    manifest = json.loads(result.manifest.read_text())
    engine = manifest["engine"]
    assert engine["tensorrt"] == trt.__version__ and engine["gpu"] == FAKE_GPU.to_dict()
    assert engine["hardware_compat"] == "ampere+" and engine["precision"] == "fp32"
    assert engine["onnx"]["sha256"] == hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    assert engine["engine_bytes"] == result.path.stat().st_size and engine["build_seconds"] >= 0
    assert engine["profiles"][0]["max"] == [32, 3, SMALL, SMALL]
    assert engine["layers"]["count"] == 2 and engine["layers"]["by_output_precision"] == {"FP16": 1, "FP32": 1}
    assert manifest["arch"] == "resnet18" and manifest["input"]["size"] == SMALL
    # The inspector saw a context at the profile's opt shape (the shape the layer formats are reported for).
    assert trt.inspected[-1] == (8, 3, SMALL, SMALL)
    # Timing cache: set on the config before the build (the build's timings went into it), saved after the first
    # build, loaded and merged by the second.
    tag = trt.cache_tag()
    assert built["timing_cache_used"]
    assert cache.read_bytes() == tag + b"|timings" and engine["timing_cache"]["loaded_bytes"] == 0
    again = build_engine(options)
    assert trt.built[-1]["timing_cache_used"]
    assert again.record.extra["timing_cache"]["loaded_bytes"] == len(tag + b"|timings")
    assert cache.read_bytes() == tag + b"|timings|timings"
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("major", ["10", "11"])
def test_a_timing_cache_from_another_gpu_is_refused_not_silently_used(monkeypatch, tmp_path, onnx_model, major):
    trt = _use_double(monkeypatch, major)
    cache = tmp_path / "timing.cache"
    foreign = TensorRTDouble(major)
    object.__setattr__(foreign, "gpu_cc", "8.0")  # the cache a build on another GPU saved
    cache.write_bytes(foreign.cache_tag() + b"|timings")
    with pytest.raises(ConfigError, match="timing cache does not fit"):
        build_engine(BuildOptions(model=onnx_model, timing_cache=cache, output=tmp_path / "m.engine"))
    assert trt.built == [] and cache.read_bytes() == foreign.cache_tag() + b"|timings"
    assert not (tmp_path / "m.engine").exists()


def test_the_stage_list_shown_is_the_stages_run(monkeypatch, tmp_path, onnx_model):
    from resnest_deploy.exporters.tensorrt_builder import BUILD_STAGES

    _use_double(monkeypatch, "11")
    seen = []
    build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine"), progress=lambda phase, done, total: seen.append(phase))
    assert tuple(seen) == BUILD_STAGES


@pytest.mark.parametrize("major", ["10", "11"])
def test_version_compatible_and_no_tf32(monkeypatch, tmp_path, onnx_model, major):
    trt = _use_double(monkeypatch, major)
    build_engine(BuildOptions(model=onnx_model, batch="4", version_compatible=True, tf32=False,
                              hardware_compat="same-cc", output=tmp_path / "m.engine"))
    built = trt.built[-1]
    assert built["flags_set"] == ["VERSION_COMPATIBLE"] and built["flags_cleared"] == ["TF32"]
    assert built["profiles"][0]["input"][0] == built["profiles"][0]["input"][2] == (4, 3, SMALL, SMALL)
    assert built["config"]["hardware_compatibility_level"] == "SAME_COMPUTE_CAPABILITY"


def test_the_double_is_strict_like_the_real_module():
    trt10, trt11 = TensorRTDouble("10"), TensorRTDouble("11")
    assert trt10.BuilderFlag.FP16 is not None and trt10.IInt8EntropyCalibrator2 is not None
    for name in ("FP16", "INT8"):
        with pytest.raises(AttributeError):
            getattr(trt11.BuilderFlag, name)
    with pytest.raises(AttributeError):
        trt11.IInt8EntropyCalibrator2  # noqa: B018
    with pytest.raises(AttributeError):
        trt11.NetworkDefinitionCreationFlag.EXPLICIT_BATCH  # noqa: B018
    config = trt11.Builder(None).create_builder_config()
    with pytest.raises(AttributeError):
        config.int8_calibrator = object()


@pytest.mark.parametrize("major", ["10", "11"])
def test_parser_errors_name_nodes_and_op_types(monkeypatch, tmp_path, onnx_model, major):
    _use_double(monkeypatch, major, reject_ops=("Gemm",))
    with pytest.raises(EngineBuildError) as caught:
        build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine"))
    assert any("(Gemm)" in d and "node_linear" in d for d in caught.value.details), caught.value.details
    assert not (tmp_path / "m.engine").exists()


def test_unsupported_ops_are_listed_before_tensorrt(tmp_path, onnx_model):
    model = onnx.load(str(onnx_model))
    model.graph.node.append(helper.make_node("DynamicQuantizeLinear", ["logits"], ["q", "s", "z"], name="dql"))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ArtifactError, match=r"dql \(DynamicQuantizeLinear\)"):
        emit_script(BuildOptions(model=bad), tmp_path / "out")


def test_option_errors(tmp_path, onnx_model):
    for text in ("0:1:2", "8:4:16", "a:b:c", "1:2"):
        with pytest.raises(ConfigError):
            parse_batch(text)
    assert parse_batch("8") == (8, 8, 8)
    for options in (BuildOptions(model=onnx_model, hardware_compat="turing"), BuildOptions(model=onnx_model,
                    opt_level=9), BuildOptions(model=onnx_model, img_size=128)):
        with pytest.raises(ConfigError):
            emit_script(options, tmp_path / "x")


def test_without_gpu_build_is_one_line_and_exit_2(cli, onnx_model, tmp_path):
    # The CLI runs with the tripwire tensorrt first on the path: importing tensorrt would exit 97.
    result = cli("build", str(onnx_model), "--output", str(tmp_path / "m.engine"))
    assert_one_line_error(result, "needs an NVIDIA GPU", "--emit-script")
    assert not (tmp_path / "m.engine").exists()


def test_emit_script_is_valid_bash_with_relative_paths(cli, onnx_model, tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache")
    out = tmp_path / "gpu-job"
    result = cli("build", str(onnx_model), "--profile", "1:4:16", "--timing-cache", str(cache), "--emit-script",
                 str(out))
    assert result.returncode == 0, result.stderr
    script = out / "build.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert str(tmp_path) not in text and "/work/" not in text  # only paths relative to the folder
    for name in (onnx_model.name, "timing.cache", "tool/resnest_deploy/__init__.py",
                 "tool/resnest_deploy/exporters/graph.py", "tool/resnest_deploy/calibration/int8.py"):
        assert (out / name).exists(), name
    assert f"build {onnx_model.name} --profile 1:4:16" in text and "--timing-cache timing.cache" in text
    # On this machine (no GPU) the script stops at its first check, with a clear message.
    no_gpu = no_gpu_env()["PATH"].split(":")[0]  # a failing nvidia-smi first, as on a host without a driver
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                         env={"PATH": f"{no_gpu}:/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 2 and "no NVIDIA GPU" in run.stderr


def test_emitted_script_quotes_awkward_file_names(cli, onnx_model, tmp_path):
    model = tmp_path / "my model [v2].onnx"
    model.write_bytes(onnx_model.read_bytes())
    out = tmp_path / "job dir"
    assert cli("build", str(model), "--emit-script", str(out)).returncode == 0
    text = (out / "build.sh").read_text()
    assert subprocess.run(["bash", "-n", str(out / "build.sh")]).returncode == 0
    assert "parity 'my model [v2].engine'" in text and "--output 'my model [v2].engine.parity.json'" in text


def test_engine_host_rules():
    record = {"tensorrt": "10.16.1.11", "gpu": FAKE_GPU.to_dict(), "hardware_compat": "none",
              "version_compatible": False}
    check_engine_host(record, FAKE_GPU, "10.16.1.11", "m.engine")
    other = GpuInfo("NVIDIA L4", "8.9", "555.42")
    with pytest.raises(EngineMismatchError, match="compute capability 8.6 on Test GPU.*this host has NVIDIA L4"):
        check_engine_host(record, other, "10.16.1.11", "m.engine")
    with pytest.raises(EngineMismatchError, match="TensorRT 10.16.1.11; this host has TensorRT 11.4.0.106"):
        check_engine_host(record, FAKE_GPU, "11.4.0.106", "m.engine")
    check_engine_host({**record, "version_compatible": True}, FAKE_GPU, "11.4.0.106", "m.engine")
    with pytest.raises(EngineMismatchError):  # an 11 engine never runs on a 10 runtime
        check_engine_host({**record, "tensorrt": "11.4.0.106", "version_compatible": True}, FAKE_GPU, "10.16.1.11",
                          "m.engine")
    check_engine_host({**record, "hardware_compat": "ampere+"}, other, "10.16.1.11", "m.engine")
    with pytest.raises(EngineMismatchError, match="Ampere or newer"):
        check_engine_host({**record, "hardware_compat": "ampere+"}, GpuInfo("T4", "7.5", "x"), "10.16.1.11", "m")
    with pytest.raises(EngineMismatchError, match="compute capability 8.6"):
        check_engine_host({**record, "hardware_compat": "same-cc"}, other, "10.16.1.11", "m.engine")


def test_engine_runner_and_parity_without_gpu(cli, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(ArtifactError, match="no manifest"):
        TrtRunner(engine).activate()
    meta = ArtifactMeta(arch="resnet18", num_classes=1000, input=get_config("resnet18").input, weights="random-init",
                        seed=0)
    (tmp_path / "m.engine.json").write_text(json.dumps({**meta.to_dict(), "engine": {"tensorrt": "10.16.1.11"}}))
    assert_one_line_error(cli("parity", str(engine), "--arch", "resnet18", "--samples", "2"), "needs an NVIDIA GPU")
