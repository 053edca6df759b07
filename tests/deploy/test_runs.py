"""Run folders as users reuse them: one deploy at a time (an OS lock), a later run with other options serves,
reports and bundles only what it made, another architecture's folder is refused, targets that ask for what the
run does not make are refused before work, and every warning a step raises reaches the user."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import pytest

from resnest_deploy.deploy.lock import LOCK_FILE
from tests import golden, hostile
from tests.conftest import ROOT, TRIPWIRE, assert_one_line_error, run_cli

# Each test makes its own run folders: no group, so xdist spreads them over both workers.
FAST = ["--img-size", "32", "--samples", "2", "--iters", "1", "--warmup", "0", "--bench-batch", "1"]
TARGETS = """
[targets.l4]
compute_capability = "8.9"
precisions = ["fp16"]

[targets.a100]
compute_capability = "8.0"
precisions = ["fp32"]
"""


def _deploy(out, *extra, cwd=None):
    return run_cli("deploy", "--arch", "resnet18", *FAST, "--output", str(out), *extra, cwd=cwd or out.parent)


def test_a_busy_run_folder_is_refused_at_once_or_waited_for(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # this test process plays the other deploy
    os.write(fd, f"pid {os.getpid()} on a test\n".encode())
    try:
        busy = _deploy(out, "--precisions", "fp32")
        assert_one_line_error(busy, str(out), "in use by another deploy", f"pid {os.getpid()}", "--wait")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
        env = {**os.environ, "PYTHONPATH": f"{TRIPWIRE}:{ROOT}"}
        waiting = subprocess.Popen([sys.executable, "-m", "resnest_deploy", "deploy", "--arch", "resnet18", *FAST,
                                    "--precisions", "fp32", "--output", str(out), "--wait"], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=8)  # it cannot start while the lock is held
        assert not (out / "deploy-state.json").exists()
    finally:
        os.close(fd)  # the "other deploy" ends; the waiting one proceeds
    stdout, stderr = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, stderr
    assert (out / "onnx" / "resnet18.onnx").is_file()


def test_a_reused_folder_serves_reports_and_bundles_only_what_this_run_made(tmp_path):
    out = tmp_path / "run"
    images = tmp_path / "calib"
    hostile.write_readable(images, ("rgb.png", "gray.jpg", "cmyk.jpg"))
    hostile.write_unreadable(images, ("text.png",))
    (tmp_path / "targets.toml").write_text(TARGETS)
    first = _deploy(out, "--precisions", "fp32,fp16,int8", "--cpu-precision", "int8", "--calib-data", str(images),
                    "--calib-size", "9", "--targets", str(tmp_path / "targets.toml"))
    assert first.returncode == 0, first.stderr
    warnings = [line for line in first.stderr.splitlines() if line.startswith("warning:")]
    assert any("quantize int8" in w and "--calib-size 9 is more than the 4 images" in w for w in warnings), warnings
    assert any("skipped 1 unreadable" in w for w in warnings), warnings
    for model, plan in (("resnet18_trt_fp16", "model.sm89.plan"), ("resnet18_trt_fp32", "model.sm80.plan")):
        built = out / "model_repository" / model / "1" / plan  # as the bundles' build.sh would leave them
        built.parent.mkdir(parents=True)
        built.write_bytes(b"plan")
    (tmp_path / "targets.toml").write_text(TARGETS.split("[targets.a100]")[0])  # only l4 (fp16) stays
    second = _deploy(out, "--precisions", "fp32,fp16", "--targets", str(tmp_path / "targets.toml"))
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in (out / "onnx").iterdir()) == [
        "resnet18.fp16.onnx", "resnet18.fp16.onnx.json", "resnet18.onnx", "resnet18.onnx.json"]
    assert not [p for p in (out / "reports").iterdir() if "int8" in p.name]
    assert sorted(p.name for p in (out / "targets").iterdir()) == ["l4"]
    assert sorted(p.name for p in (out / "model_repository").iterdir()) == [
        "resnet18", "resnet18_onnx", "resnet18_preprocess", "resnet18_trt_fp16"]
    served = out / "model_repository" / "resnet18_onnx" / "1" / "model.onnx"
    assert golden.served_copy_of(served, out / "onnx" / "resnet18.onnx")  # the CPU model is FP32 again
    page = (out / "report.md").read_text()
    assert "int8" not in page and "a100" not in page
    other = run_cli("deploy", "--arch", "resnest14d", *FAST, "--precisions", "fp32", "--output", str(out))
    assert_one_line_error(other, "holds a deploy of resnet18", "--output")


def test_targets_that_ask_for_more_than_the_run_makes_are_refused_before_work(tmp_path):
    (tmp_path / "targets.toml").write_text(TARGETS)
    out = tmp_path / "run"
    result = _deploy(out, "--precisions", "fp32", "--targets", str(tmp_path / "targets.toml"))
    assert_one_line_error(result, "targets.toml", "'l4'", "fp16", "--precisions")
    assert not out.exists()
