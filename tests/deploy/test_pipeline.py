"""`resnest-deploy deploy` on a small arch at a small size: the whole run, its Triton repository (parsed with
Triton's own model_config.proto), its bundles, and reruns after nothing, an option, a file on disk or an
interrupt changed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from resnest_deploy.exporters.graph import tensor_info
from tests import golden
from tests.conftest import ROOT, TRIPWIRE, assert_one_line_error, run_cli, wait_for_trace, write_test_images

ARCH, SIZE = "resnest14d", 64
TARGETS = """
[targets.l4]
compute_capability = "8.9"
tensorrt_major = 10
precisions = ["fp16", "int8"]
batch = "1:16:64"

[targets.a100]
compute_capability = "8.0"
tensorrt_major = 11
precisions = ["fp32", "fp16"]
batch = "1:8:32"
hardware_compat = "ampere+"
"""
pytestmark = pytest.mark.xdist_group("deploy")


def _deploy(out: Path, *extra: str, cwd: Path | None = None):
    # One compute thread: BatchNorm re-estimation sums in another order with two, and the golden files hold the bytes
    # one thread gives.
    return run_cli("deploy", "--arch", ARCH, "--img-size", str(SIZE), "--calib-data", "synthetic", "--calib-size",
                   "8", "--samples", "4", "--bench-batch", "1", "--iters", "1", "--warmup", "0", "--output", str(out), *extra,
                   cwd=cwd or out.parent, env={"OMP_NUM_THREADS": "1"})


def assert_matches_golden(out: Path, name: str) -> None:
    """The run wrote exactly what the recorded version of the code wrote for the same command (tests/golden.py):
    the same files, the same artifacts by content, the same configs and scripts byte for byte."""
    recorded = golden.load(name)
    if recorded["versions"] != golden.versions():
        pytest.skip(f"golden {name} was recorded under {recorded['versions']}, not {golden.versions()}")
    assert golden.run_digest(out) == recorded["files"]


def _statuses(result) -> dict[str, str]:
    """Step -> status from the final table (rich draws it with box characters)."""
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 2 and cells[1] in ("ran", "up to date", "failed", "would run"):
            rows[cells[0]] = cells[1]
    return rows


@pytest.fixture(scope="session")  # session: xdist may interleave modules on a worker
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    (root / "targets.toml").write_text(TARGETS)
    out = root / "run"
    result = _deploy(out, "--targets", str(root / "targets.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    return root, out, result


def _copy_run(first_run, tmp_path) -> Path:
    root, out, _ = first_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy, symlinks=True)
    shutil.copy(root / "targets.toml", tmp_path / "targets.toml")
    return copy


def test_first_run_makes_every_artifact_report_bundle_and_the_repository(first_run):
    _, out, result = first_run
    assert set(_statuses(result).values()) == {"ran"}
    steps = list(_statuses(result))
    assert steps == ["export", "quantize fp16", "quantize int8", "parity fp32", "parity fp16", "parity int8",
                     "latency cpu", "bundle l4", "bundle a100", "triton repository", "report"]
    for name in ("onnx/resnest14d.onnx", "onnx/resnest14d.fp16.onnx", "onnx/resnest14d.int8.onnx",
                 "reports/resnest14d.int8.parity.json", "reports/resnest14d.cpu.bench.json", "report.html",
                 "targets/l4/build.sh", "targets/a100/build.sh", "model_repository/resnest14d_onnx/1/model.onnx"):
        assert (out / name).is_file(), name
    assert {p.name for p in (out / "targets" / "l4" / "onnx").iterdir()} == {"resnest14d.fp16.onnx",
                                                                          "resnest14d.int8.onnx"}
    page = (out / "report.md").read_text()
    assert "## Target l4 (compute capability 8.9, TensorRT 10.x)" in page and "## Triton model repository" in page
    assert "## Target a100 (compute capability 8.0, TensorRT 11.x)" in page and "bundle targets/a100/" in page
    assert "| int8 | 1:16:64 | none | 4 GiB | resnest14d_trt_int8/1/model.sm89.plan | to build |" in page
    assert "model.sm89.plan (to build)" in page
    assert not list(out.rglob("*.tmp"))


def test_first_run_writes_what_the_recorded_layout_wrote(first_run):
    assert_matches_golden(first_run[1], "deploy-targets")


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_triton_configs_parse_and_match_the_onnx_and_the_targets(first_run):
    _, out, _ = first_run
    repo = out / "model_repository"
    graph = onnx.load(str(out / "onnx" / "resnest14d.onnx"), load_external_data=False)
    inp, outp = tensor_info(graph.graph.input[0]), tensor_info(graph.graph.output[0])
    # The repository holds only models with their files; a plan model's config waits in each bundle that builds it
    # (identical in every bundle) until build.sh has built the plan.
    image_models = {"resnest14d", "resnest14d_preprocess"}  # the image entry point (tests/serving runs it)
    assert {p.parent.name for p in repo.glob("*/config.pbtxt")} == {"resnest14d_onnx", *image_models}
    image = {name: _config(repo / name / "config.pbtxt") for name in image_models}
    assert image["resnest14d"].platform == "ensemble" and image["resnest14d_preprocess"].backend == "python"
    assert [s.model_name for s in image["resnest14d"].ensemble_scheduling.step] == [
        "resnest14d_preprocess", "resnest14d_onnx"]
    assert list(image["resnest14d_preprocess"].output[0].dims) == [3, SIZE, SIZE]
    assert image["resnest14d_preprocess"].max_batch_size == image["resnest14d"].max_batch_size == 64
    configs = {p.parent.name: _config(p) for p in repo.glob("*/config.pbtxt") if p.parent.name not in image_models}
    for path in sorted(out.glob("targets/*/triton/*/config.pbtxt")):
        config = _config(path)
        assert configs.setdefault(path.parent.name, config) == config, path
    assert set(configs) == {"resnest14d_onnx", "resnest14d_trt_fp32", "resnest14d_trt_fp16", "resnest14d_trt_int8"}
    for name, config in configs.items():
        assert config.name == name
        assert [i.name for i in config.input] == [inp.name] and [o.name for o in config.output] == [outp.name]
        assert list(config.input[0].dims) == [3, SIZE, SIZE] and list(config.output[0].dims) == [outp.shape[1]]
        assert config.input[0].data_type == model_config_pb2.TYPE_FP32
        assert config.output[0].data_type == model_config_pb2.TYPE_FP32
    onnx_model = configs["resnest14d_onnx"]
    assert onnx_model.platform == "onnxruntime_onnx" and onnx_model.max_batch_size == 64
    assert onnx_model.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    # One plan model per precision; each maps every target that builds it, by compute capability.
    fp16 = configs["resnest14d_trt_fp16"]
    assert fp16.platform == "tensorrt_plan" and dict(fp16.cc_model_filenames) == {
        "8.9": "model.sm89.plan", "8.0": "model.sm80.plan"}
    assert fp16.max_batch_size == 32 and list(fp16.dynamic_batching.preferred_batch_size) == [8]
    assert dict(configs["resnest14d_trt_int8"].cc_model_filenames) == {"8.9": "model.sm89.plan"}
    assert configs["resnest14d_trt_int8"].max_batch_size == 64
    assert dict(configs["resnest14d_trt_fp32"].cc_model_filenames) == {"8.0": "model.sm80.plan"}
    # The bundle of each target writes exactly the files its plan models name.
    for target, precisions in (("l4", ("fp16", "int8")), ("a100", ("fp32", "fp16"))):
        script = (out / "targets" / target / "build.sh").read_text()
        assert subprocess.run(["bash", "-n", str(out / "targets" / target / "build.sh")]).returncode == 0
        for precision in precisions:
            plan = configs[f"resnest14d_trt_{precision}"].cc_model_filenames[{"l4": "8.9", "a100": "8.0"}[target]]
            assert f'"$REPO"/resnest14d_trt_{precision}/1/{plan}' in script
            assert f'cp triton/resnest14d_trt_{precision}/* "$REPO"/resnest14d_trt_{precision}/' in script
            assert (out / "targets" / target / "triton" / f"resnest14d_trt_{precision}" / "config.pbtxt").is_file()


def test_a_rerun_with_nothing_changed_does_nothing(first_run, tmp_path):
    out = _copy_run(first_run, tmp_path)
    result = _deploy(out, "--targets", str(tmp_path / "targets.toml"))
    assert result.returncode == 0, result.stderr
    assert set(_statuses(result).values()) == {"up to date"}
    dry = _deploy(out, "--targets", str(tmp_path / "targets.toml"), "--calib-size", "9", "--dry-run")
    assert dry.returncode == 0
    plan = _statuses(dry)
    assert {k for k, v in plan.items() if v == "would run"} == {
        "quantize int8", "parity int8", "latency cpu", "bundle l4", "report"}
    assert "would run" in dry.stdout and "options changed" in dry.stdout


def test_changing_the_calibration_size_reruns_only_int8_and_what_uses_it(first_run, tmp_path):
    out = _copy_run(first_run, tmp_path)
    result = _deploy(out, "--targets", str(tmp_path / "targets.toml"), "--calib-size", "9")
    assert result.returncode == 0, result.stderr
    ran = {k for k, v in _statuses(result).items() if v == "ran"}
    assert ran == {"quantize int8", "parity int8", "latency cpu", "bundle l4", "report"}


def test_an_artifact_edited_on_disk_is_detected_and_rebuilt(first_run, tmp_path):
    out = _copy_run(first_run, tmp_path)
    fp16 = out / "onnx" / "resnest14d.fp16.onnx"
    fp16.write_bytes(fp16.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    report = out / "reports" / "resnest14d.fp32.parity.md"
    report.unlink()
    result = _deploy(out, "--targets", str(tmp_path / "targets.toml"))
    assert result.returncode == 0, result.stderr
    statuses = _statuses(result)
    assert statuses["quantize fp16"] == "ran" and statuses["parity fp32"] == "ran"
    assert statuses["export"] == "up to date" and statuses["quantize int8"] == "up to date"
    assert onnx.load(str(fp16)).graph.node and report.is_file()


def test_sigint_mid_run_keeps_finished_steps_and_leaves_no_partial_file(first_run, tmp_path):
    out = _copy_run(first_run, tmp_path)
    (out / "onnx" / "resnest14d.int8.onnx").unlink()  # quantize int8 reruns (and writes the same bytes)
    (out / "reports" / "resnest14d.int8.parity.json").unlink()  # parity int8 reruns: interrupted there
    trace = tmp_path / "trace.txt"
    env = {**os.environ, "PYTHONPATH": f"{TRIPWIRE}:{ROOT}", "RESNEST_DEPLOY_TRACE": str(trace),
           "RESNEST_DEPLOY_PAUSE_AT": "parity int8"}  # the test hook holds the run there until the signal
    args = [sys.executable, "-m", "resnest_deploy", "deploy", "--arch", ARCH, "--img-size", str(SIZE),
            "--calib-data", "synthetic", "--calib-size", "8", "--samples", "4", "--bench-batch", "1", "--iters", "1", "--warmup", "0",
            "--output", str(out), "--targets", str(tmp_path / "targets.toml")]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_trace(proc, trace, "paused at parity int8")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 130 and len(lines) == 1 and lines[0].startswith("interrupted during parity int8"), stderr
    assert not list(out.rglob("*.tmp"))
    state = json.loads((out / "deploy-state.json").read_text())["steps"]
    assert "quantize int8" in state and "parity int8" not in state
    again = _deploy(out, "--targets", str(tmp_path / "targets.toml"))
    assert again.returncode == 0, again.stderr
    statuses = _statuses(again)
    assert statuses["quantize int8"] == "up to date" and statuses["export"] == "up to date"
    assert statuses["parity int8"] == "ran"


def test_bad_input_is_one_line_and_leaves_no_state_that_breaks_the_next_run(first_run, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[targets.x]\ncompute_capability = "7.9"\n')
    out = tmp_path / "run"
    assert_one_line_error(_deploy(out, "--targets", str(bad), cwd=tmp_path), "bad.toml", "'x'",
                          "compute_capability", "7.9")
    assert_one_line_error(_deploy(out, "--precisions", "fp32,fp8", cwd=tmp_path), "--precisions", "fp8")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.jpg").write_bytes(b"\xff\xd8 cut")
    (corrupt / "b.png").write_text("no")
    result = run_cli("deploy", "--arch", ARCH, "--calib-data", str(corrupt), "--output", str(out), cwd=tmp_path)
    assert_one_line_error(result, "no readable images")
    assert not out.exists()  # nothing started, so nothing to clean up
    images = write_test_images(tmp_path / "images", classes=2, per_class=2, corrupt=True)
    ok = run_cli("deploy", "--arch", ARCH, "--img-size", str(SIZE), "--precisions", "fp32,fp16", "--data",
                 str(images), "--samples", "2", "--bench-batch", "1", "--iters", "1", "--warmup", "0", "--output", str(out),
                 cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert {"parity fp32", "parity fp16", "bundle gpu-host"} <= set(_statuses(ok))


def test_dry_run_does_nothing(tmp_path):
    out = tmp_path / "run"
    result = _deploy(out, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(_statuses(result).values()) == {"would run"} and not out.exists()


def test_bundle_checks_the_host_against_its_target_before_building(first_run, tmp_path):
    """build.sh on a host of the wrong compute capability or TensorRT major: one line, exit 2, nothing built.

    The GPU host is faked: a stand-in ``nvidia-smi`` that reports the compute capability like a driver (or, playing
    a driver too old for that query, reports nothing), and a stand-in Python that answers the TensorRT version and
    accepts the package and doctor checks; no GPU or TensorRT is involved."""
    _, out, _ = first_run
    bundle = out / "targets" / "l4"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text('#!/bin/sh\ncase "$*" in *compute_cap*) [ -n "$CC" ] && echo "$CC" || exit 6;; '
                                     "*) echo 'GPU 0: Fake (UUID: GPU-0)'; echo 550.54;; esac\n")
    python = fake / "python"
    python.write_text('#!/bin/sh\ncase "$2" in *tensorrt.__version__*) echo "$TRT";; esac\nexit 0\n')
    for path in (fake / "nvidia-smi", python):
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "PYTHON": str(python)}
    for cc, trt, fragment in (("8.6", "10.16.1", "compute capability 8.9"), ("8.9", "11.4.0", "TensorRT 10.x"),
                              ("", "10.16.1", "driver does not report the compute capability")):
        run = subprocess.run(["bash", str(bundle / "build.sh")], capture_output=True, text=True,
                             env={**env, "CC": cc, "TRT": trt})
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 2 and len(lines) == 1 and fragment in lines[0], run.stderr
    assert not list((out / "model_repository").rglob("*.plan"))


def test_the_cpu_model_can_be_the_int8_graph_made_for_onnx_runtime(tmp_path):
    out = tmp_path / "run"
    assert_one_line_error(run_cli("deploy", "--arch", ARCH, "--precisions", "fp32", "--cpu-precision", "int8", "--output",
                                  str(out), cwd=tmp_path), "INT8 needs --calib-data")
    result = _deploy(out, "--precisions", "fp32", "--cpu-precision", "int8", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"quantize int8-cpu", "parity int8-cpu"} <= set(_statuses(result))
    served = out / "model_repository" / "resnest14d_onnx" / "1" / "model.onnx"
    assert golden.served_copy_of(served, out / "onnx" / "resnest14d.int8-cpu.onnx")
    page = (out / "report.md").read_text()
    assert "CPU hosts: ONNX Runtime, INT8 made for its CPU kernels" in page and "int8-cpu" in page
    assert_matches_golden(out, "deploy-cpu-int8")


def _poll_with_a_stock_server(repository: Path, log: Path):
    """Start the real Triton (the one `serve` uses) with its default flags on ``repository``; the states it reports.
    Its python stub gets numpy and Pillow as a stock Triton container has them (this host's system Python has
    neither)."""
    from resnest_deploy.serving import python_env
    from resnest_deploy.serving.server import TritonServer, free_port

    server = TritonServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          log=log, environment={python_env.ENV_VAR: str(python_env.install())})
    try:
        server.start(timeout=120)
        return server.states(), server.exited
    finally:
        server.stop()


@pytest.mark.skipif(__import__("resnest_deploy.serving.server", fromlist=["x"]).find_tritonserver() is None,
                    reason="no tritonserver (make install puts nvidia-pytriton's in the venv)")
def test_a_stock_triton_server_starts_on_the_repository_and_refuses_only_for_missing_backends(first_run, tmp_path):
    _, out, _ = first_run
    states, _ = _poll_with_a_stock_server(out / "model_repository", tmp_path / "triton.log")
    # No plan model without its plan; the image entry point is there.
    assert {s.name for s in states} == {"resnest14d_onnx", "resnest14d_preprocess", "resnest14d"}, states
    assert all(s.ready or s.missing_backend for s in states), [s.to_dict() for s in states]
    assert [s.name for s in states if s.ready] == ["resnest14d_preprocess"]
    # The preprocessing serves the exported model's input settings (this run's --img-size), not the arch's.
    from resnest_deploy.calibration.images import settings_dict
    from resnest_deploy.calibration.pixels import settings_to_strings
    from resnest_deploy.exporters.graph import load_onnx
    from resnest_deploy.exporters.metadata import read_metadata

    exported = read_metadata(load_onnx(out / "onnx" / "resnest14d.onnx", load_external_data=False)).input
    config = (out / "model_repository" / "resnest14d_preprocess" / "config.pbtxt").read_text()
    assert exported.size != 224 and all(f'key: "{k}" value: {{ string_value: "{v}" }}' in config
                                        for k, v in settings_to_strings(settings_dict(exported)).items())
    # The check can fail: a config this server refuses (a preferred batch over the maximum) is reported as such.
    broken = tmp_path / "broken"
    shutil.copytree(out / "model_repository", broken)
    config = broken / "resnest14d_onnx" / "config.pbtxt"
    config.write_text(config.read_text().replace("preferred_batch_size: [ 8 ]", "preferred_batch_size: [ 999 ]"))
    states, exited = _poll_with_a_stock_server(broken, tmp_path / "broken.log")
    refused = next(s for s in states if s.name == "resnest14d_onnx")
    assert exited and not refused.ready and not refused.missing_backend and "preferred" in refused.reason


def test_bundles_pin_tensorrt_and_never_mix_versions_in_one_repository(first_run, tmp_path):
    """build.sh on hosts whose TensorRT is not the target's pinned version, or differs from the plans already in the
    repository: one line, exit 2, nothing built (stand-in nvidia-smi and Python, as above)."""
    _, out, _ = first_run
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text('#!/bin/sh\ncase "$*" in *compute_cap*) echo "$CC";; *) echo GPU 0;; esac\n')
    python = fake / "python"
    python.write_text('#!/bin/sh\ncase "$2" in *tensorrt.__version__*) echo "$TRT"; exit 0;; esac\n'
                      'case "$1" in -) exec python3 "$@";; esac\nexit 0\n')
    for path in (fake / "nvidia-smi", python):
        path.chmod(0o755)
    toml = tmp_path / "pinned.toml"
    toml.write_text('[targets.l4]\ncompute_capability = "8.9"\ntriton_release = "25.03"\nprecisions = ["fp16"]\n')
    pinned = tmp_path / "run"
    result = _deploy(pinned, "--precisions", "fp32,fp16", "--targets", str(toml), "--dry-run")
    assert result.returncode == 0, result.stderr
    from resnest_deploy.deploy.bundle import write_bundle
    from resnest_deploy.deploy.targets import load_targets

    target = load_targets(toml, precisions=("fp32", "fp16"), batch="1:8:32")[0]
    assert target.tensorrt_version == "10.9.0.34" and target.tensorrt_major == 10
    bundle = tmp_path / "bundle"
    weights = out / "onnx" / "resnest14d.onnx"  # any file: the script is only run up to its checks here
    write_bundle(bundle, target, ARCH, {"fp16": out / "onnx" / "resnest14d.fp16.onnx"}, weights, [], None)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "PYTHON": str(python), "CC": "8.9", "REPOSITORY": str(tmp_path / "repo")}
    run = subprocess.run(["bash", str(bundle / "build.sh")], capture_output=True, text=True,
                         env={**env, "TRT": "10.13.3.9"})
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1 and "TensorRT 10.9.0.34" in lines[0], run.stderr
    assert "tensorrt-cu12==10.9.0.34" in lines[0]
    # Unpinned: the plans already in the repository decide.
    unpinned = load_targets(_write(tmp_path / "any.toml", '[targets.l4]\ncompute_capability = "8.9"\n'),
                            precisions=("fp16",), batch="1:8:32")[0]
    write_bundle(bundle, unpinned, ARCH, {"fp16": out / "onnx" / "resnest14d.fp16.onnx"}, weights, [], None)
    plan = tmp_path / "repo" / "resnest14d_trt_fp16" / "1" / "model.sm80.plan.json"
    plan.parent.mkdir(parents=True)
    plan.write_text(json.dumps({"engine": {"tensorrt": "10.16.1.11"}}))
    run = subprocess.run(["bash", str(bundle / "build.sh")], capture_output=True, text=True,
                         env={**env, "TRT": "10.13.3.9"})
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1 and "built with TensorRT 10.16.1.11" in lines[0], run.stderr
    assert not list((tmp_path / "repo").rglob("*.plan"))
    # With the repository's plans from the same TensorRT, the unpinned bundle says which TensorRT it builds with.
    run = subprocess.run(["bash", str(bundle / "build.sh")], capture_output=True, text=True,
                         env={**env, "TRT": "10.16.1.11"})
    assert "building with TensorRT 10.16.1.11: serve these plans with the Triton release" in run.stderr, run.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bundles_carry_the_exact_weights_parity_compares_with(first_run):
    """A random-init run's bundle holds its weights (BatchNorm statistics included) as safetensors, and build.sh's
    parity uses them: the GPU host compares with exactly the model this host exported."""
    import torch

    from resnest_deploy.models import create_model

    _, out, _ = first_run
    carried = sorted((out / "targets" / "l4" / "weights").iterdir())
    assert [p.suffix for p in carried] == [".safetensors"]
    script = (out / "targets" / "l4" / "build.sh").read_text()
    assert f"--weights weights/{carried[0].name}" in script and "WEIGHTS" not in script
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        rebuilt = create_model(ARCH, weights=carried[0])(x)
        exported_from = create_model(ARCH, seed=0)(x)
    assert torch.equal(rebuilt, exported_from)
