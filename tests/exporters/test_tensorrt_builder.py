"""`build` without a GPU: the builder against the strict TensorRT test double (10.16 and 11.4), the GPU check,
the emitted script, and the engine/host compatibility rules.

The double (tests/tensorrt_double.py) is a fake standing in for TensorRT, generated from the real API name
lists; a GPU is faked by patching ``exporters.tensorrt_env.gpu_info``. Both are said where used. Real builds are
in tests/gpu (``pytest -m gpu``).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone

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
from tests.standin_host import calls
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
    build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine"),
                 progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert seen == [(stage, i, len(BUILD_STAGES)) for i, stage in enumerate(BUILD_STAGES)]


@pytest.mark.parametrize("cached", [True, False])
def test_the_manifest_records_every_build_setting_under_the_names_its_readers_use(monkeypatch, tmp_path, onnx_model,
                                                                                  cached):
    """The whole ``engine`` record, field by field: the runner, parity, the bundle's version check and Triton's
    repository read these names."""
    import types

    from resnest_deploy.exporters import tensorrt_builder

    trt = _use_double(monkeypatch, "10")
    clock = iter([100.0, 101.23456])  # a stand-in clock: the build "took" 1.23456 s
    monkeypatch.setattr(tensorrt_builder, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    cache = tmp_path / "t.cache" if cached else None
    options = BuildOptions(model=onnx_model, batch="2:4:8", timing_cache=cache, output=tmp_path / "m.engine",
                           opt_level=2, workspace_gib=1.5)
    result = build_engine(options)
    engine = json.loads(result.manifest.read_text(encoding="utf-8"))["engine"]
    seconds = engine.pop("build_seconds")
    assert seconds == 1.23 and isinstance(seconds, float)
    shape = [3, SMALL, SMALL]
    assert engine == {
        "tensorrt": trt.__version__, "gpu": FAKE_GPU.to_dict(), "hardware_compat": "none",
        "version_compatible": False, "tf32": False, "precision": "fp32",
        "profiles": [{"input": "input", "min": [2, *shape], "opt": [4, *shape], "max": [8, *shape]}],
        "workspace_gib": 1.5, "opt_level": 2, "network_flags": ["STRONGLY_TYPED"],
        "onnx": {"file": onnx_model.name, "sha256": hashlib.sha256(onnx_model.read_bytes()).hexdigest()},
        "engine_bytes": result.path.stat().st_size,
        "layers": {"count": 2, "by_type": engine["layers"]["by_type"], "by_output_precision": {"FP16": 1, "FP32": 1}},
        "timing_cache": {"path": str(cache), "loaded_bytes": 0, "saved_bytes": cache.stat().st_size}
        if cached else None}
    assert sum(engine["layers"]["by_type"].values()) == 2
    assert result.record.to_dict() == {**engine, "build_seconds": seconds}


def test_a_graph_without_this_tools_metadata_gets_a_manifest_that_says_so(monkeypatch, tmp_path, onnx_model):
    _use_double(monkeypatch, "11")
    foreign = onnx.load(str(onnx_model))
    del foreign.metadata_props[:]
    path = tmp_path / "foreign.onnx"
    onnx.save(foreign, str(path))
    manifest = json.loads(build_engine(BuildOptions(model=path, batch="1:2:4", output=tmp_path / "f.engine"))
                          .manifest.read_text())
    assert (manifest["arch"], manifest["num_classes"], manifest["weights"]) == ("unknown", 0, "unknown")
    assert manifest["input"]["size"] == SMALL and manifest["precision"] == "fp32"


class _ParserError:
    def __init__(self, **answers):
        for name, value in answers.items():
            setattr(self, name, value if callable(value) else (lambda v=value: v))


def _raises():
    raise RuntimeError("not tied to a node")


@pytest.mark.parametrize(("error", "line"), [
    (_ParserError(node_name="conv1", node_operator="Conv", desc="kernel weights must be constant"),
     "node conv1 (Conv): kernel weights must be constant"),
    (_ParserError(node_name="", node=7, node_operator="", desc="unsupported"), "node 7: unsupported"),
    (_ParserError(node_name=_raises, node=_raises, node_operator=_raises, desc=_raises), "node ?: no description"),
    (object(), "node ?: no description"),
    (_ParserError(node_name="a", desc="x", node_operator=3), "node a (3): x"),
])
def test_parser_errors_are_one_line_each_whatever_the_binding_offers(error, line):
    from resnest_deploy.exporters.tensorrt_builder import describe_parser_error

    assert describe_parser_error(error) == line


def test_every_way_a_build_stops_is_one_clear_message_and_no_file(monkeypatch, tmp_path, onnx_model):
    from resnest_deploy.errors import GpuUnavailableError, OutputError
    from resnest_deploy.exporters import tensorrt_env

    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda index=0: None)
    monkeypatch.setattr(tensorrt_env, "torch_gpu_mismatch", lambda: None)
    with pytest.raises(GpuUnavailableError) as info:
        build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine"))
    assert str(info.value) == ("building a TensorRT engine needs an NVIDIA GPU and none was found (no CUDA device 0 "
                               "visible to PyTorch); use --emit-script DIR to prepare the build for a GPU host")
    trt = _use_double(monkeypatch, "10", reject_ops=("Gemm",))
    with pytest.raises(EngineBuildError) as info:
        build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine"))
    assert str(info.value).splitlines()[0] == f"TensorRT's ONNX parser rejected {onnx_model.name}"
    trt = _use_double(monkeypatch, "10", fail_build=True)
    with pytest.raises(EngineBuildError) as info:
        build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine"))
    assert str(info.value) == f"TensorRT could not build {onnx_model.name} (see the messages above)"
    # A timing cache that could not be saved is found before the build, not after it.
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    trt = _use_double(monkeypatch, "10")
    with pytest.raises(OutputError):
        build_engine(BuildOptions(model=onnx_model, output=tmp_path / "m.engine",
                                  timing_cache=not_a_folder / "t.cache"))
    assert trt.built == [] and not list(tmp_path.glob("m.engine*"))


def test_a_timing_cache_that_does_not_fit_is_named_with_what_to_do(monkeypatch, tmp_path, onnx_model):
    _use_double(monkeypatch, "10")
    cache = tmp_path / "old.cache"
    foreign = TensorRTDouble("11")
    cache.write_bytes(foreign.cache_tag() + b"|timings")
    with pytest.raises(ConfigError) as info:
        build_engine(BuildOptions(model=onnx_model, timing_cache=cache, output=tmp_path / "m.engine"))
    assert str(info.value) == (f"{cache}: timing cache does not fit this TensorRT version or GPU; delete it or pass "
                               "another --timing-cache")


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
    config = trt11.Builder(trt11.Logger(trt11.Logger.WARNING)).create_builder_config()
    with pytest.raises(AttributeError):
        config.int8_calibrator = object()
    # Arguments are type-checked as pybind11 checks them.
    for bad in (lambda: trt11.Logger(None), lambda: trt11.Builder(None), lambda: trt11.Runtime("logger"),
                lambda: config.set_timing_cache(config.create_timing_cache(b""), None)):
        with pytest.raises(TypeError):
            bad()


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


@pytest.mark.parametrize("checkpoint", [False, True], ids=["random-init", "checkpoint"])
def test_the_emitted_script_runs_the_same_build_then_parity_on_a_stand_in_gpu_host(tmp_path, onnx_model, host,
                                                                                   checkpoint, monkeypatch):
    """build.sh run end to end on the stand-in host of tests/standin_host.py (no GPU, no TensorRT): the build it
    asks for has the options given here, parity follows on the engine it names, the record says what was asked."""
    from resnest_deploy.exporters.metadata import read_metadata, write_metadata

    env, recorded = host
    model_path = tmp_path / "src" / "m.onnx"
    model_path.parent.mkdir()
    model = onnx.load(str(onnx_model))
    if checkpoint:
        meta = read_metadata(model)
        write_metadata(model, meta.with_changes(weights_sha256="ab" * 32, seed=None))
    # The weights in a file beside the graph (ONNX external data): the bundle carries that file too.
    onnx.save(model, str(model_path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    cache = tmp_path / "src" / "t.cache"
    cache.write_bytes(b"timings")
    tf32 = not checkpoint  # both ways across the two runs
    options = BuildOptions(model=model_path, batch="2:4:8", timing_cache=cache, opt_level=5, workspace_gib=0.5,
                           hardware_compat="same-cc", version_compatible=True, tf32=tf32, img_size=SMALL)
    folder = tmp_path / "job"
    monkeypatch.setenv("TZ", "Etc/GMT-9")  # a host nine hours from UTC: the header still says UTC time
    time.tzset()
    try:
        script = emit_script(options, folder)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert script == folder / "build.sh" and (folder / "t.cache").read_bytes() == b"timings"
    assert (folder / "m.onnx.data").read_bytes() == (tmp_path / "src" / "m.onnx.data").read_bytes()
    args = ["build", "m.onnx", "--profile", "2:4:8", "--workspace", "0.5", "--opt-level", "5", "--hardware-compat",
            "same-cc", "--tf32" if tf32 else "--no-tf32", "--output", "m.engine", "--img-size", str(SMALL),
            "--version-compatible", "--timing-cache", "t.cache"]
    sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    record = {"onnx": "m.onnx", "onnx_sha256": sha, "precision": "fp32",
              "profile": [[2, 3, SMALL, SMALL], [4, 3, SMALL, SMALL], [8, 3, SMALL, SMALL]], "args": args}
    assert (folder / "build-options.json").read_text() == json.dumps(record, indent=2) + "\n"
    from resnest_deploy import __version__

    header = script.read_text().split("\n# Build and verify", 1)[1].splitlines()
    written = re.search(r"on (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", header[1]).group(1)
    now = datetime.now(timezone.utc)
    assert abs(datetime.strptime(written, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc) - now) < timedelta(minutes=5)
    assert header[0] == " the TensorRT engine for m.onnx (fp32) on a GPU host."
    assert re.fullmatch(rf"# Written by resnest-deploy {re.escape(__version__)} on \d{{4}}-\d\d-\d\d \d\d:\d\d "
                        rf"UTC; ONNX sha256 {sha}\.", header[1]), header[1]
    assert "#   bash build.sh                      build m.engine, then check it against the eager model" in header
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "done: m.engine and m.engine.json"
    parity = ["parity", "m.engine", "--batch", "4", "--output", "m.engine.parity.json"]
    seen = [c["args"] for c in calls(recorded)]
    assert all(c["cwd"] == str(folder) and c["path"].startswith(f"{folder}/tool") for c in calls(recorded))
    if checkpoint:  # parity needs the checkpoint: without WEIGHTS it is skipped, with it the file is passed
        assert "WEIGHTS is not set" in run.stderr and "ab" * 32 in script.read_text()
        assert seen == [["-m", "resnest_deploy", "doctor", "--gpu"], ["-m", "resnest_deploy", *args]]
        rerun = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                               env={**env, "WEIGHTS": "/w/my ckpt.pth", "DATA": "/d"})
        assert rerun.returncode == 0, rerun.stderr
        assert [c["args"] for c in calls(recorded)][-1] == ["-m", "resnest_deploy", *parity[:4], "--weights",
                                                            "/w/my ckpt.pth", "--data", "/d", *parity[4:]]
    else:
        assert "WEIGHTS" not in script.read_text()
        assert seen == [["-m", "resnest_deploy", "doctor", "--gpu"], ["-m", "resnest_deploy", *args],
                        ["-m", "resnest_deploy", *parity]]
    assert (folder / "m.engine").is_file() and (folder / "m.engine.json").is_file()


def test_an_emitted_bundle_that_cannot_be_finished_is_not_left(tmp_path, onnx_model, monkeypatch):
    from resnest_deploy.exporters import build_script

    def fail(_):
        raise OSError("disk full")

    monkeypatch.setattr(build_script, "copy_tool", fail)
    with pytest.raises(OSError):
        emit_script(BuildOptions(model=onnx_model), tmp_path / "job")
    assert not (tmp_path / "job").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    with pytest.raises(OSError):
        emit_script(BuildOptions(model=onnx_model), existing)
    assert (existing / "keep.txt").read_text() == "x"


def test_a_graph_without_metadata_cannot_get_a_bundle(tmp_path, onnx_model):
    foreign = onnx.load(str(onnx_model))
    del foreign.metadata_props[:]
    path = tmp_path / "foreign.onnx"
    onnx.save(foreign, str(path))
    with pytest.raises(ArtifactError) as info:
        emit_script(BuildOptions(model=path), tmp_path / "job")
    assert str(info.value) == ("foreign.onnx has no resnest-deploy metadata, so the bundle's parity step could not "
                               "rebuild its eager model on the GPU host; export it with resnest-deploy (or quantize it "
                               "with --arch), or build it on the GPU host without --emit-script")
    assert not (tmp_path / "job").exists()


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
