"""A target's build bundle, written by ``write_bundle`` and run as a GPU host would run it.

No GPU or TensorRT is involved: the host is played by the stand-ins of tests/standin_host.py (a ``nvidia-smi`` and a
``$PYTHON`` that record what they are asked), said in each test. The bundle's own shell, file layout and Triton
configs are the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from resnest_deploy.exporters.build_script import REQUIREMENTS, TENSORRT_FOR_CUDA

from resnest_deploy.deploy.bundle import write_bundle
from resnest_deploy.deploy.targets import Target
from resnest_deploy.deploy.triton import render_config, repository_entries
from tests.standin_host import calls as _calls

ARCH = "resnet18"
LABELS = ["cat", "dog", "eel"]


def _onnx(path: Path) -> Path:
    node = helper.make_node("Flatten", ["input"], ["logits"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 1, 1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _bundle(tmp_path: Path, target: Target, *, repository: bool = True) -> tuple[Path, list]:
    run = tmp_path / "run"
    tmp_path.mkdir(parents=True, exist_ok=True)
    onnx_files = {p: _onnx(tmp_path / f"m.{p}.onnx") for p in target.precisions}
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    entries = repository_entries(ARCH, next(iter(onnx_files.values())), [target], labels=LABELS)
    models = [e for e in entries if e.gpu]
    if repository:
        (run / "model_repository").mkdir(parents=True, exist_ok=True)
    write_bundle(run / "targets" / target.name, target, ARCH, onnx_files, weights, models, LABELS)
    return run / "targets" / target.name, models


def _same_code(tool: Path) -> None:
    """``tool/`` holds this package's sources, exporters and calibration included, and no bytecode."""
    import resnest_deploy
    from resnest_deploy import calibration, exporters

    for package, where in ((resnest_deploy, tool / "resnest_deploy"), (exporters, tool / "resnest_deploy" / "exporters"),
                           (calibration, tool / "resnest_deploy" / "calibration")):
        source = Path(package.__file__).parent
        for path in source.glob("*.py"):
            assert (where / path.name).read_bytes() == path.read_bytes(), path
    copied = list(tool.rglob("*"))
    assert copied and not [p for p in copied if p.suffix == ".pyc" or "__pycache__" in p.parts]


def _run(bundle: Path, env: dict, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(bundle / "build.sh")], capture_output=True, text=True, env={**env, **extra},
                          timeout=60)


def test_build_sh_builds_checks_then_configures_each_precision_in_the_repository(tmp_path, host):
    env, calls = host
    target = Target("l4", "8.9", 10, ("fp16", "int8"), "1:4:16", "none", 2.5)
    bundle, models = _bundle(tmp_path, target)
    run = _run(bundle, env, DATA="/data/val images")
    assert run.returncode == 0, run.stderr
    repo = "../../model_repository"
    assert f"engines and their models in {repo}" in run.stdout
    assert "building with TensorRT 10.16.1.11: serve these plans with the Triton release" in run.stderr
    recorded = _calls(calls)
    assert {c["cwd"] for c in recorded} == {str(bundle)}
    assert all(c["path"].split(":")[0] == str(bundle / "tool") for c in recorded)
    expected = [["-m", "resnest_deploy", "doctor", "--gpu"]]
    for precision in target.precisions:
        plan = f"{repo}/{ARCH}_trt_{precision}/1/model.sm89.plan"
        expected += [["-m", "resnest_deploy", "build", f"onnx/m.{precision}.onnx", "--profile", "1:4:16",
                      "--workspace", "2.5", "--hardware-compat", "none", "--timing-cache", "timing.cache",
                      "--output", plan],
                     ["-m", "resnest_deploy", "parity", plan, "--batch", "4", "--weights", "weights/w.safetensors",
                      "--data", "/data/val images", "--output", f"reports/{precision}.parity.json"]]
    assert [c["args"] for c in recorded] == expected
    root = tmp_path / "run" / "model_repository"
    for entry in models:
        folder = root / entry.name
        assert (folder / "config.pbtxt").read_text() == render_config(entry)
        assert (folder / "labels.txt").read_text() == "\n".join(LABELS) + "\n"
        assert (folder / "1" / "model.sm89.plan").read_text() == "plan"
    # What the bundle carries: the ONNX files, the weights, the tool's code, the target record.
    assert sorted(p.name for p in (bundle / "onnx").iterdir()) == ["m.fp16.onnx", "m.int8.onnx"]
    assert (bundle / "weights" / "w.safetensors").read_bytes() == b"weights"
    _same_code(bundle / "tool")
    assert (bundle / "target.json").read_text() == json.dumps({**target.to_dict(), "arch": ARCH}, indent=2) + "\n"
    assert os.access(bundle / "build.sh", os.X_OK)


def test_without_data_parity_runs_on_synthetic_inputs_and_repository_chooses_the_folder(tmp_path, host):
    env, calls = host
    target = Target("a100", "8.0", None, ("fp32",), "2:8:8", "ampere+", 4.0, version_compatible=True)
    bundle, models = _bundle(tmp_path, target, repository=False)
    chosen = tmp_path / "elsewhere"
    run = _run(bundle, env, HOST_CC="9.0", REPOSITORY=str(chosen))
    assert run.returncode == 0, run.stderr
    build, parity = [c["args"] for c in _calls(calls)][1:]
    assert build[build.index("--hardware-compat") + 1] == "ampere+" and "--version-compatible" in build
    assert "--data" not in parity and parity[parity.index("--batch") + 1] == "8"
    assert (chosen / f"{ARCH}_trt_fp32" / "1" / "model.sm80.plan").is_file()
    assert (chosen / f"{ARCH}_trt_fp32" / "config.pbtxt").read_text() == render_config(models[0])
    # Moved away from its run folder and given no REPOSITORY: a repository inside the bundle.
    calls.unlink()
    run = _run(bundle, env, HOST_CC="8.6")
    assert run.returncode == 0 and "engines and their models in model_repository" in run.stdout, run.stderr
    assert (bundle / "model_repository" / f"{ARCH}_trt_fp32" / "1" / "model.sm80.plan").is_file()


def test_a_failed_parity_fails_the_script_after_every_precision_is_built(tmp_path, host):
    env, calls = host
    bundle, models = _bundle(tmp_path, Target("l4", "8.9", 10, ("fp16", "int8"), "1:8:32"))
    run = _run(bundle, env, PARITY_EXIT="1")
    assert run.returncode == 1, run.stderr
    assert [c["args"][2] for c in _calls(calls)] == ["doctor", "build", "parity", "build", "parity"]
    assert all((tmp_path / "run" / "model_repository" / e.name / "config.pbtxt").is_file() for e in models)


def test_a_failed_build_stops_the_script_and_leaves_no_model_without_its_plan(tmp_path, host):
    env, calls = host
    bundle, _ = _bundle(tmp_path, Target("l4", "8.9", 10, ("fp16",), "1:8:32"))
    run = _run(bundle, env, FAIL_BUILD="1")
    assert run.returncode != 0
    assert [c["args"][2] for c in _calls(calls)] == ["doctor", "build"]
    assert not list((tmp_path / "run" / "model_repository").rglob("config.pbtxt"))


MATCH = "run the bundle of a matching target"
PIN = "a plan loads only in the version that built it"


@pytest.mark.parametrize(("target", "extra", "line"), [
    (Target("l4", "8.9", 10, ("fp16",)), {"HOST_CC": "8.6"},
     f"error: this bundle is for target l4 (compute capability 8.9); this host's GPU has compute capability 8.6: {MATCH}"),
    (Target("a100", "8.0", None, ("fp16",), hardware_compat="ampere+"), {"HOST_CC": "7.5"},
     "error: this bundle is for target a100 (compute capability 8.0 or newer (an ampere+ engine)); this host's GPU "
     f"has compute capability 7.5: {MATCH}"),
    (Target("l4", "8.9", 10, ("fp16",)), {"HOST_CC": ""},
     "error: this driver does not report the compute capability (nvidia-smi --query-gpu=compute_cap needs driver "
     "r510 or newer); upgrade the driver"),
    (Target("l4", "8.9", 10, ("fp16",)), {"HOST_TRT": "11.4.0"},
     "error: this bundle is for TensorRT 10.x (target l4); this host has TensorRT 11.4.0: engines of one major do not "
     "run on the other"),
    (Target("l4", "8.9", 10, ("fp16",), tensorrt_version="10.9.0.34"), {"HOST_TRT": "10.13.3.9"},
     f"error: target l4 runs TensorRT 10.9.0.34 ({PIN}); this host has TensorRT 10.13.3.9: pip install "
     "'tensorrt-cu12==10.9.0.34'"),
    (Target("h100", "9.0", 11, ("fp16",), tensorrt_version="11.1.0.5"), {"HOST_CC": "9.0", "HOST_TRT": "11.10.0"},
     f"error: target h100 runs TensorRT 11.1.0.5 ({PIN}); this host has TensorRT 11.10.0: pip install "
     "'tensorrt-cu13==11.1.0.5'"),
    (Target("l4", "8.9", 10, ("fp16",)), {"NO_GPU": "1"}, "error: no NVIDIA GPU or driver on this host (nvidia-smi failed)"),
], ids=["cc", "ampere+", "old-driver", "major", "pinned-10", "pinned-11", "no-gpu"])
def test_a_host_that_does_not_fit_the_target_is_one_line_and_exit_2_before_any_build(tmp_path, host, target, extra,
                                                                                      line):
    env, calls = host
    bundle, _ = _bundle(tmp_path, target)
    run = _run(bundle, env, **extra)
    assert (run.returncode, [x for x in run.stderr.splitlines() if x.strip()]) == (2, [line])
    assert [c["args"][2] for c in _calls(calls)] in ([], ["doctor"])


def test_a_host_that_fits_passes_the_checks_it_would_fail_on(tmp_path, host):
    """The counterpart of the refusals above: the versions and capabilities each check accepts (and a bundle for
    any GPU, which checks neither)."""
    env, _ = host
    for i, (target, extra) in enumerate(((Target("a100", "8.0", None, ("fp16",), hardware_compat="ampere+"),
                                          {"HOST_CC": "12.0"}),
                                         (Target("l4", "8.9", 10, ("fp16",), tensorrt_version="10.9.0.34"),
                                          {"HOST_TRT": "10.9.0.34"}),
                                         (Target("l4", "8.9", 10, ("fp16",), tensorrt_version="10.9"),
                                          {"HOST_TRT": "10.9.1.2"}),
                                         (Target("l4", "8.9", 11, ("fp16",)), {"HOST_TRT": "11.0.1"}),
                                         (Target("gpu-host", None, None, ("fp16",)), {"HOST_CC": "7.5"}))):
        bundle, _ = _bundle(tmp_path / str(i), target)
        run = _run(bundle, env, **extra)
        assert run.returncode == 0, (target, run.stderr)
    # The plan of a target without a pinned GPU is Triton's default name.
    assert (tmp_path / "4" / "run" / "model_repository" / f"{ARCH}_trt_fp16" / "1" / "model.plan").is_file()


def test_the_script_says_what_it_builds_with_and_rewriting_the_bundle_is_harmless(tmp_path, host):
    env, _ = host
    pinned = Target("l4", "8.9", 10, ("fp16", "int8"), tensorrt_version="10.9.0.34", version_compatible=True)
    bundle, models = _bundle(tmp_path, pinned)
    header = [line for line in (bundle / "build.sh").read_text().splitlines() if line.startswith("# Engines of")]
    assert header == [f"# Engines of {ARCH} for target l4: fp16, int8, built with TensorRT 10.9.0.34, "
                      "version-compatible."]
    unpinned = Target("l4", "8.9", None, ("fp16",))
    again, _ = _bundle(tmp_path, unpinned)  # the same folder, written again
    assert again == bundle and (bundle / "reports").is_dir()
    header = [line for line in (bundle / "build.sh").read_text().splitlines() if line.startswith("# Engines of")]
    assert header == [f"# Engines of {ARCH} for target l4: fp16, built with the host's TensorRT (its version is "
                      "recorded in each plan's manifest)."]
    run = _run(bundle, env)
    assert run.stderr.splitlines()[-1] == ("building with TensorRT 10.16.1.11: serve these plans with the Triton "
                                           "release that ships TensorRT 10.16.1.11 (or pin triton_release / "
                                           "tensorrt_version in targets.toml)")


def test_label_files_go_only_with_models_that_name_them(tmp_path):
    target = Target("l4", "8.9", 10, ("fp16",))
    onnx_file = _onnx(tmp_path / "m.onnx")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"w")
    unlabelled = [e for e in repository_entries(ARCH, onnx_file, [target]) if e.gpu]
    write_bundle(tmp_path / "b", target, ARCH, {"fp16": onnx_file}, weights, unlabelled, LABELS)
    assert not list((tmp_path / "b" / "triton").rglob("labels.txt"))


@pytest.mark.parametrize(("driver", "wheel"), [("550.54.15", 12), ("580.65.06", 13)])
def test_missing_packages_name_the_tensorrt_wheel_the_driver_runs(tmp_path, host, driver, wheel):
    env, calls = host
    bundle, _ = _bundle(tmp_path, Target("l4", "8.9", None, ("fp16",)))
    run = _run(bundle, env, MISSING="1", HOST_DRIVER=driver)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 2, run.stderr
    assert lines[0] == f"error: missing Python packages; install them with (driver r{driver.split('.')[0]}):"
    assert lines[1] == f"  {env['PYTHON']} -m pip install '{TENSORRT_FOR_CUDA[wheel]}' {' '.join(REQUIREMENTS)}"
    assert not _calls(calls)


def test_a_failing_doctor_stops_the_script(tmp_path, host):
    env, calls = host
    bundle, _ = _bundle(tmp_path, Target("l4", "8.9", None, ("fp16",)))
    run = _run(bundle, env, DOCTOR_EXIT="1")
    assert run.returncode == 2 and [c["args"][2] for c in _calls(calls)] == ["doctor"]


def test_an_unpinned_bundle_refuses_a_repository_whose_plans_another_tensorrt_built(tmp_path, host):
    env, calls = host
    bundle, _ = _bundle(tmp_path, Target("l4", "8.9", None, ("fp16",)))
    plan = tmp_path / "run" / "model_repository" / f"{ARCH}_trt_fp16" / "1" / "model.sm80.plan.json"
    plan.parent.mkdir(parents=True)
    plan.write_text(json.dumps({"engine": {"tensorrt": "10.13.3.9"}}))
    run = _run(bundle, env)
    assert (run.returncode, [x for x in run.stderr.splitlines() if x.strip()]) == (2, [
        f"error: ../../model_repository/{ARCH}_trt_fp16/1/model.sm80.plan.json was built with TensorRT 10.13.3.9; "
        "this host has TensorRT 10.16.1.11: a Triton server loads one TensorRT version, so build every target with "
        "it (or pin tensorrt_version / version_compatible in targets.toml)"])
    assert [c["args"][2] for c in _calls(calls)] == ["doctor"]
    # A version-compatible bundle's plans load beside those: it builds.
    compatible, _ = _bundle(tmp_path / "vc", Target("l4", "8.9", None, ("fp16",), version_compatible=True))
    plan_vc = tmp_path / "vc" / "run" / "model_repository" / f"{ARCH}_trt_fp16" / "1" / "model.sm80.plan.json"
    plan_vc.parent.mkdir(parents=True)
    plan_vc.write_text(plan.read_text())
    assert _run(compatible, env).returncode == 0


def test_the_tool_copy_leaves_bytecode_behind_whatever_the_installed_tree_holds(tmp_path, monkeypatch):
    """An installed package tree (made here: this environment writes no bytecode) with ``__pycache__`` folders,
    stray ``.pyc`` files and, as in a wheel install, exporters/ and calibration/ inside resnest_deploy/."""
    import importlib
    import types

    from resnest_deploy.exporters.build_script import copy_tool

    site = tmp_path / "site"
    trees = {"resnest_deploy": site / "resnest_deploy", "resnest_deploy.exporters": site / "resnest_deploy" / "exporters",
             "resnest_deploy.calibration": site / "resnest_deploy" / "calibration"}
    for name, folder in trees.items():
        (folder / "__pycache__").mkdir(parents=True)
        (folder / "__init__.py").write_text(f"# {name}\n")
        (folder / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"bytecode")
        (folder / "stale.pyc").write_bytes(b"bytecode")
    (trees["resnest_deploy.exporters"] / "graph.py").write_text("# graph\n")
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: types.SimpleNamespace(
        __file__=str(trees[name] / "__init__.py")) if name in trees else real(name, *a))
    tool = tmp_path / "tool"
    copy_tool(tool)
    copy_tool(tool)  # again over the first copy
    files = sorted(p.relative_to(tool).as_posix() for p in tool.rglob("*"))
    assert files == ["resnest_deploy", "resnest_deploy/__init__.py", "resnest_deploy/calibration",
                     "resnest_deploy/calibration/__init__.py", "resnest_deploy/exporters",
                     "resnest_deploy/exporters/__init__.py", "resnest_deploy/exporters/graph.py"]
