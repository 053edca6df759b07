"""What would fail the first time the TensorRT path meets a GPU host, fixed at the root and checked here against
the strict TensorRT test double (a FAKE generated from the real 10.16 and 11.4 API lists; a GPU is faked by
patching ``tensorrt_env.gpu_info``, and device memory by ``FakeDevice``). Real engines: ``pytest -m gpu``.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from resnest_deploy.errors import ArtifactError, ConfigError, EngineMismatchError
from resnest_deploy.exporters import tensorrt_env
from resnest_deploy.exporters.build_script import emit_script
from resnest_deploy.exporters.metadata import read_manifest
from resnest_deploy.exporters.tensorrt_builder import build_engine
from resnest_deploy.exporters.tensorrt_env import GpuInfo, check_engine_host, version_rule
from resnest_deploy.exporters.tensorrt_options import BuildOptions
from resnest_deploy.exporters.tensorrt_options import EngineRecord
from resnest_deploy.parity.tolerances import judgement_of
from resnest_deploy.runners.base import InputMismatchError
from resnest_deploy.runners.trt_runner import TrtRunner
from tests.tensorrt_double import CLASSES, FakeDevice, install_double

SMALL = 64
ROOT = Path(__file__).resolve().parents[2]
AMPERE = GpuInfo("NVIDIA RTX A6000 (faked)", "8.6", "555.42")
pytestmark = pytest.mark.xdist_group("resnet18")


@pytest.fixture
def onnx_model(export_cache):
    return export_cache("resnet18", SMALL).path


def _use_double(monkeypatch, major, gpu=AMPERE, **kwargs):
    return install_double(monkeypatch, major, gpu, **kwargs)


# 1. TF32 ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("major", ["10", "11"])
def test_fp32_engines_are_built_without_tf32_and_judged_by_what_they_compute(monkeypatch, tmp_path, onnx_model,
                                                                             major):
    trt = _use_double(monkeypatch, major)
    plain = build_engine(BuildOptions(model=onnx_model, output=tmp_path / "plain.engine"))
    assert trt.built[-1]["flags_cleared"] == ["TF32"] and "TF32" not in trt.built[-1]["flags_set"]
    manifest = read_manifest(plain.path)
    assert manifest["engine"]["tf32"] is False
    assert judgement_of(_meta(manifest), EngineRecord.from_dict(manifest["engine"])).preset == "fp32"
    tf32 = build_engine(BuildOptions(model=onnx_model, output=tmp_path / "tf32.engine", tf32=True))
    manifest = read_manifest(tf32.path)
    assert "TF32" in trt.built[-1]["flags_set"] and manifest["engine"]["tf32"] is True
    meta, engine = _meta(manifest), EngineRecord.from_dict(manifest["engine"])
    assert judgement_of(meta, engine).preset == "tf32-random-init"  # the export is random-init
    checkpoint = meta.with_changes(weights_sha256="ab" * 32, seed=None)
    assert judgement_of(checkpoint, engine).preset == "tf32"
    assert judgement_of(checkpoint, engine).tolerances.max_abs_rel == 5e-3


def _meta(manifest):
    from resnest_deploy.exporters.metadata import meta_from_manifest

    return meta_from_manifest(manifest)


# 2. provenance chooses the judgement -------------------------------------------------------------------------

def test_random_init_int8_is_judged_by_cosine_and_kl_everywhere(export_cache, tmp_path):
    from resnest_deploy.calibration.quantize import QuantizeOptions, quantize_onnx

    int8 = quantize_onnx(QuantizeOptions(model=export_cache("resnet18", SMALL).path, precision="int8",
                                         calib_data="synthetic", calib_size=4, output=tmp_path / "m.int8.onnx"))
    judgement = judgement_of(int8.meta)
    assert judgement.preset == "int8-random-init" and judgement.tolerances.top1_agreement is None
    checkpoint = int8.meta.with_changes(weights_sha256="ab" * 32, seed=None)
    assert judgement_of(checkpoint).preset == "int8" and judgement_of(checkpoint).tolerances.top1_agreement == 0.97
    # No caller writes a limit by hand: not the emitted script, not the main job.
    script = emit_script(BuildOptions(model=int8.path), tmp_path / "job").read_text()
    assert "--tol" not in script and "parity" in script
    assert "--tol" not in (ROOT / "Makefile").read_text()


# 3. the engine's layer summary --------------------------------------------------------------------------------

@pytest.mark.parametrize("major", ["10", "11"])
def test_layer_summary_of_a_dynamic_version_compatible_engine(monkeypatch, tmp_path, onnx_model, major):
    _use_double(monkeypatch, major)
    result = build_engine(BuildOptions(model=onnx_model, batch="1:4:8", version_compatible=True,
                                       output=tmp_path / "m.engine"))
    layers = result.record.extra["layers"]
    assert layers["count"] == 2 and layers["by_output_precision"] == {"FP16": 1, "FP32": 1}, layers


# 4. --device N -------------------------------------------------------------------------------------------------

def test_device_n_is_current_before_any_tensorrt_object(monkeypatch, tmp_path, onnx_model):
    trt = _use_double(monkeypatch, "11")
    result = build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine", device=1))
    kinds = [(c[0], c[1]) for c in trt.calls]
    assert kinds.index(("cuda", "set_device")) < kinds.index(("Builder", "__init__"))
    assert ("cuda", "set_device", (1,), {}) in trt.calls
    assert result.record.gpu["index"] == 1
    runner = TrtRunner(result.path, device=1, backend=FakeDevice(trt))
    trt.calls.clear()
    runner.activate()
    kinds = [(c[0], c[1]) for c in trt.calls]
    assert kinds.index(("cuda", "set_device")) < kinds.index(("Runtime", "__init__"))


# 5. CUDA graphs: one context per captured shape ------------------------------------------------------------------

def _expected(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).mean(axis=1, keepdims=True) * np.arange(1, CLASSES + 1)


@pytest.mark.parametrize("major", ["10", "11"])
def test_cuda_graphs_of_several_shapes_each_replay_their_own_inputs(monkeypatch, tmp_path, onnx_model, major):
    trt = _use_double(monkeypatch, major)
    engine = build_engine(BuildOptions(model=onnx_model, batch="1:4:8", output=tmp_path / "m.engine")).path
    rng = np.random.default_rng(0)
    feeds = [rng.normal(size=(n, 3, SMALL, SMALL)).astype(np.float32) for n in (2, 3, 2, 3, 2)]  # A B A B A
    device = FakeDevice(trt)
    built_contexts = len(trt.contexts)  # the build's inspector made one
    with TrtRunner(engine, cuda_graph=True, backend=device) as graphs, \
            TrtRunner(engine, backend=FakeDevice(trt)) as plain:
        for x in feeds:
            got = graphs.infer({"input": x})["logits"]
            np.testing.assert_allclose(got, plain.infer({"input": x})["logits"], rtol=1e-6)
            np.testing.assert_allclose(got, _expected(x), rtol=1e-5)
    assert device.captures == 2  # one capture per shape, replayed afterwards
    # The graph runner's plain context and one per captured shape, and the plain runner's one shared context.
    assert len(trt.contexts) - built_contexts == 1 + 2 + 1


@pytest.mark.parametrize("major", ["10", "11"])
def test_every_launch_is_on_the_devices_stream_and_capture_follows_a_plain_run(monkeypatch, tmp_path, onnx_model,
                                                                                major):
    """The double records launches during capture without running them and fails a capture that no plain run
    preceded (TensorRT's lazy initialisation); it knows only the device's own stream."""
    trt = _use_double(monkeypatch, major)
    engine = build_engine(BuildOptions(model=onnx_model, batch="1:4:8", output=tmp_path / "m.engine")).path
    device = FakeDevice(trt)
    trt.calls.clear()
    with TrtRunner(engine, cuda_graph=True, backend=device) as runner:
        x = np.ones((2, 3, SMALL, SMALL), np.float32)
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], _expected(x), rtol=1e-6)
    launches = [c[2] for c in trt.calls if c[1] == "execute_async_v3"]
    assert launches and {stream for _, stream in launches} == {device.stream_handle}
    # A plain run, the captured launch (recorded only), then the replay: three launches of one context.
    assert len(launches) == 3 and len({context for context, _ in launches}) == 1


@pytest.mark.parametrize("major", ["10", "11"])
def test_the_runner_runs_a_version_compatible_engine(monkeypatch, tmp_path, onnx_model, major):
    trt = _use_double(monkeypatch, major)
    engine = build_engine(BuildOptions(model=onnx_model, batch="1:4:8", version_compatible=True,
                                       output=tmp_path / "m.engine")).path
    with TrtRunner(engine, backend=FakeDevice(trt)) as runner:
        x = np.full((3, 3, SMALL, SMALL), 0.5, np.float32)
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], _expected(x), rtol=1e-6)
    assert ("Runtime", "engine_host_code_allowed=", (True,), {}) in trt.calls


@pytest.mark.parametrize("major", ["10", "11"])
def test_the_runner_refuses_an_engine_from_another_gpu_naming_both(monkeypatch, tmp_path, onnx_model, major):
    _use_double(monkeypatch, major)
    engine = build_engine(BuildOptions(model=onnx_model, batch="1:4:8", output=tmp_path / "m.engine")).path
    ada = GpuInfo("NVIDIA L4 (faked)", "8.9", "555.42")
    trt = _use_double(monkeypatch, major, gpu=ada)  # the same TensorRT on another GPU
    with pytest.raises(EngineMismatchError, match=r"built for compute capability 8\.6 .* this host has NVIDIA L4"):
        TrtRunner(engine, backend=FakeDevice(trt)).activate()
    assert not any(c[0] == "Runtime" for c in trt.calls)  # refused before TensorRT saw the plan


def test_a_failed_launch_during_capture_is_an_error(monkeypatch, tmp_path, onnx_model):
    trt = _use_double(monkeypatch, "11")
    engine = build_engine(BuildOptions(model=onnx_model, batch="1:4:8", output=tmp_path / "m.engine")).path
    trt.fail_execute = True
    with TrtRunner(engine, cuda_graph=True, backend=FakeDevice(trt)) as runner, \
            pytest.raises(ArtifactError, match="execute_async_v3 returned False"):
        runner.infer({"input": np.zeros((2, 3, SMALL, SMALL), np.float32)})


def test_engine_only_timing_call_launches_without_copies(monkeypatch, tmp_path, onnx_model):
    trt = _use_double(monkeypatch, "11")
    engine = build_engine(BuildOptions(model=onnx_model, batch="1:4:8", output=tmp_path / "m.engine")).path
    with TrtRunner(engine, backend=FakeDevice(trt)) as runner:
        run, sync = runner.engine_call({"input": np.ones((4, 3, SMALL, SMALL), np.float32)})
        before = sum(1 for c in trt.calls if c[1] == "execute_async_v3")
        run()
        sync()
        assert sum(1 for c in trt.calls if c[1] == "execute_async_v3") == before + 1


# 6. engine/host rules -------------------------------------------------------------------------------------------

def test_same_compute_capability_is_the_same_engine_whatever_the_product_name():
    record = {"tensorrt": "10.16.1.11", "gpu": AMPERE.to_dict(), "hardware_compat": "none"}
    check_engine_host(record, GpuInfo("NVIDIA GeForce RTX 3090", "8.6", "560.1"), "10.16.1.11", "m.engine")
    with pytest.raises(EngineMismatchError, match="compute capability 8.6"):
        check_engine_host(record, GpuInfo("NVIDIA A100", "8.0", "560.1"), "10.16.1.11", "m.engine")


def test_ampere_plus_is_refused_on_a_pre_ampere_builder(monkeypatch, tmp_path, onnx_model):
    trt = _use_double(monkeypatch, "10", gpu=GpuInfo("Tesla T4 (faked)", "7.5", "535.1"))
    with pytest.raises(ConfigError, match="ampere\\+ needs an Ampere or newer GPU.*sm 7.5"):
        build_engine(BuildOptions(model=onnx_model, hardware_compat="ampere+", output=tmp_path / "m.engine"))
    assert ("Builder", "__init__", (), {}) not in trt.calls and not (tmp_path / "m.engine").exists()


def test_version_compatibility_follows_the_documented_rule():
    assert version_rule("10.16.1.11", "10.16.1.11", False) is None
    assert "plain engine runs only" in version_rule("10.15.1", "10.16.1.11", False)
    assert version_rule("10.9.0", "10.16.1.11", True) is None  # later runtime, same major
    assert version_rule("10.16.1.11", "11.4.0.106", True) is None  # 10 -> 11 from 11.1 on
    assert "of 10.x from 11.1 on" in version_rule("10.16.1.11", "11.0.0", True)
    assert "same or a later" in version_rule("11.4.0.106", "10.16.1.11", True)
    assert "same or a later" in version_rule("10.16.1.11", "10.9.0", True)


# 7. wheels per CUDA major --------------------------------------------------------------------------------------

def test_a_cuda13_tensorrt_on_an_r535_driver_is_one_line_naming_the_extra(monkeypatch, tmp_path, onnx_model):
    _use_double(monkeypatch, "11", gpu=GpuInfo("NVIDIA L4 (faked)", "8.9", "535.104"))
    monkeypatch.setattr(tensorrt_env, "installed_tensorrt", lambda: ("11.4.0.106", 13))
    monkeypatch.setattr(tensorrt_env, "driver_cuda_major", lambda gpu: 12)
    with pytest.raises(ConfigError, match=r"CUDA 13 build, which needs driver r580\+.*535.104.*gpu-cu12"):
        build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine"))


def test_extras_per_cuda_major_pin_the_oldest_tensorrt_the_code_uses():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "tensorrt-cu12>=10.9" in extras["gpu-cu12"] and "tensorrt-cu13>=10.13.2" in extras["gpu-cu13"]
    assert any(r.startswith("onnxruntime-gpu") for r in extras["gpu-cu12"] + extras["gpu-cu13"])
    assert tensorrt_env.MIN_TENSORRT == (10, 9)


def test_driver_branch_maps_to_the_cuda_it_runs(monkeypatch):
    import torch

    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: 0, raising=False)
    assert tensorrt_env.driver_cuda_major(GpuInfo("x", "8.6", "535.104.05")) == 12
    assert tensorrt_env.driver_cuda_major(GpuInfo("x", "8.6", "580.65")) == 13
    assert tensorrt_env.driver_cuda_major(GpuInfo("x", "8.6", "unknown")) is None


def _installed(tmp_path, monkeypatch, name: str, version: str) -> None:
    """A real installed-package record (``*.dist-info/METADATA``) on sys.path: what pip leaves behind."""
    import importlib

    dist = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


@pytest.mark.parametrize("name, version, cuda", [("tensorrt-cu13", "11.4.0.106", 13),
                                                 ("tensorrt_cu12", "10.9.0.34", 12),
                                                 ("tensorrt", "10.16.1.11", None),
                                                 ("tensorrt-bindings", "10.16.1.11", None)])
def test_the_installed_tensorrt_is_read_from_its_package_record(tmp_path, monkeypatch, name, version, cuda):
    assert tensorrt_env.installed_tensorrt() is None  # this environment has none, and other packages are not it
    _installed(tmp_path, monkeypatch, name, version)
    assert tensorrt_env.installed_tensorrt() == (version, cuda)


@pytest.mark.parametrize("wheel, reported, refused", [("tensorrt-cu13", 12040, True), ("tensorrt-cu13", 13000, False),
                                                      ("tensorrt-cu12", 12040, False), ("tensorrt", 12040, False)])
def test_the_wheel_is_checked_against_the_cuda_the_driver_reports(tmp_path, monkeypatch, wheel, reported, refused):
    import torch

    _installed(tmp_path, monkeypatch, wheel, "10.16.1.11")
    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: reported, raising=False)
    gpu = GpuInfo("NVIDIA L4 (faked)", "8.9", "550.54.15")
    if refused:
        with pytest.raises(ConfigError, match=r"CUDA 13 build.*550\.54\.15 runs CUDA 12 at most.*gpu-cu12"):
            tensorrt_env.check_wheel_fits_driver(gpu)
    else:
        tensorrt_env.check_wheel_fits_driver(gpu)


def test_manifest_json_is_valid(monkeypatch, tmp_path, onnx_model):
    _use_double(monkeypatch, "10")
    result = build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine"))
    assert json.loads(result.manifest.read_text())["engine"]["precision"] == "fp32"


# 7. the runner's own contract, on both surfaces (the double and FakeDevice stand in for TensorRT and the GPU) -----

@pytest.mark.parametrize("major", ["10", "11"])
def test_the_runner_reports_what_it_runs_and_refuses_shapes_outside_the_profile(monkeypatch, tmp_path, onnx_model,
                                                                                 major):
    trt = _use_double(monkeypatch, major)
    dynamic = build_engine(BuildOptions(model=onnx_model, batch="2:4:8", output=tmp_path / "d.engine")).path
    static = build_engine(BuildOptions(model=onnx_model, batch="4", output=tmp_path / "s.engine")).path
    runner = TrtRunner(dynamic, backend=FakeDevice(trt))
    assert (runner.name, runner.input_specs, runner.device) == ("tensorrt", [], 0)
    trt.calls.clear()
    with runner:
        assert ("cuda", "set_device", (0,), {}) in trt.calls  # device 0 unless told
        assert runner.name == f"tensorrt[{trt.__version__},fp32]"
        (spec,) = runner.input_specs
        assert (spec.name, spec.dtype, spec.shape) == ("input", np.dtype(np.float32), (None, 3, SMALL, SMALL))
        for batch in (1, 9):
            with pytest.raises(InputMismatchError) as info:
                runner.infer({"input": np.zeros((batch, 3, SMALL, SMALL), np.float32)})
            assert str(info.value) == (f"{runner.name}: input input shape [{batch}, 3, {SMALL}, {SMALL}] is outside "
                                       f"the engine's profile [2, 3, {SMALL}, {SMALL}]..[8, 3, {SMALL}, {SMALL}]")
        for batch in (2, 8):
            x = np.random.default_rng(batch).normal(size=(batch, 3, SMALL, SMALL)).astype(np.float32)
            np.testing.assert_allclose(runner.infer({"input": x})["logits"], _expected(x), rtol=1e-5)
    with TrtRunner(static, backend=FakeDevice(trt)) as fixed:
        assert fixed.input_specs[0].shape == (4, 3, SMALL, SMALL)


def test_deactivate_lets_go_of_tensorrt_and_the_runner_can_start_again(monkeypatch, tmp_path, onnx_model):
    trt = _use_double(monkeypatch, "10")
    engine = build_engine(BuildOptions(model=onnx_model, batch="1:4:8", output=tmp_path / "m.engine")).path
    runner = TrtRunner(engine, cuda_graph=True, backend=FakeDevice(trt))
    runner.activate()
    x = np.ones((2, 3, SMALL, SMALL), np.float32)
    runner.infer({"input": x})
    runner.deactivate()
    assert not any(hasattr(runner, a) for a in ("_context", "_engine", "_runtime")) and runner._bound == {}
    runner.deactivate()  # twice is harmless
    runner.activate()
    np.testing.assert_allclose(runner.infer({"input": 2 * x})["logits"], _expected(2 * x), rtol=1e-6)
    runner.deactivate()


def test_an_engine_without_its_manifest_or_that_does_not_deserialize_is_one_clear_error(monkeypatch, tmp_path,
                                                                                        onnx_model):
    trt = _use_double(monkeypatch, "11")
    engine = build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine")).path
    lone = tmp_path / "lone.plan"
    lone.write_bytes(engine.read_bytes())
    with pytest.raises(ArtifactError) as info:
        TrtRunner(lone, backend=FakeDevice(trt)).activate()
    assert str(info.value) == (f"{lone}: no manifest (lone.plan.json) beside the engine; engines are checked against "
                               "the GPU and TensorRT version they were built with")
    engine.write_bytes(b"garbage")
    with pytest.raises(EngineMismatchError) as info:
        TrtRunner(engine, backend=FakeDevice(trt)).activate()
    assert str(info.value) == ("m.engine: TensorRT could not deserialize the engine (corrupt file, or built for "
                               "another TensorRT version or GPU)")


def test_a_mismatched_engine_is_named_by_its_file(monkeypatch, tmp_path, onnx_model):
    _use_double(monkeypatch, "10")
    engine = build_engine(BuildOptions(model=onnx_model, output=tmp_path / "mine.plan")).path
    trt = _use_double(monkeypatch, "11")
    with pytest.raises(EngineMismatchError) as info:
        TrtRunner(engine, backend=FakeDevice(trt)).activate()
    assert str(info.value).startswith(f"mine.plan was built with TensorRT 10.16.1.11; this host has TensorRT "
                                      f"{trt.__version__}: ")


def test_without_a_gpu_the_runner_says_what_needed_one(tmp_path, onnx_model, monkeypatch):
    from resnest_deploy.errors import GpuUnavailableError

    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda index=0: None)
    monkeypatch.setattr(tensorrt_env, "torch_gpu_mismatch", lambda: None)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    (tmp_path / "m.engine.json").write_text(json.dumps({"engine": {"tensorrt": "10.16.1.11"}}))
    with pytest.raises(GpuUnavailableError) as info:
        TrtRunner(engine, device=3).activate()
    assert str(info.value).startswith("running a TensorRT engine needs an NVIDIA GPU and none was found (no CUDA "
                                      "device 3 visible")
