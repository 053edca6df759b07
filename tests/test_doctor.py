"""``doctor`` and the GPU detection behind ``build`` and build.sh, on hosts made up with a stand-in ``nvidia-smi``
first on PATH (a shell script answering the queries a driver would) and stand-in TensorRT wheels (a real
``*.dist-info`` folder on PYTHONPATH, read by importlib.metadata like an installed package). No GPU is involved:
torch here is a CUDA build that sees none, as on a GPU host whose driver is too old for it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_cli

SMI = """#!/bin/sh
case "$*" in
  *compute_cap*) [ -n "$OLD_DRIVER" ] && exit 6; echo "NVIDIA L4, $DRIVER, 8.9";;
  *--query-gpu=name,driver_version*) echo "NVIDIA L4, $DRIVER";;
  *driver_version*) echo "$DRIVER";;
  *-L*) echo "GPU 0: NVIDIA L4 (UUID: GPU-1234)";;
  *) exit 0;;
esac
"""


def _host(tmp_path: Path, *, driver: str = "550.54.15", wheel: str | None = None, old: bool = False) -> dict:
    """Environment of a made-up GPU host: its nvidia-smi first on PATH, its TensorRT wheel (if any) importable."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DRIVER": driver, "OLD_DRIVER": "1" if old else ""}
    if wheel:
        name, version = wheel.split("==")
        site = tmp_path / "site"
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        env["EXTRA_SITE"] = str(site)
    return env


def _doctor(env: dict, *args: str):
    extra = env.pop("EXTRA_SITE", None)
    from tests.conftest import ROOT, TRIPWIRE

    if extra:
        env["PYTHONPATH"] = os.pathsep.join([str(TRIPWIRE), str(ROOT), extra])
    return run_cli("doctor", *args, env=env)


def _rows(result) -> dict[str, dict]:
    return {row["component"]: row for row in json.loads(result.stdout)}


@pytest.mark.parametrize("driver,cuda,index", [("550.54.15", 12, "cu126"), ("535.104.05", 12, "cu126")])
def test_a_driver_that_sees_a_gpu_torch_cannot_use_is_named_with_the_torch_to_install(tmp_path, driver, cuda, index):
    result = _doctor(_host(tmp_path, driver=driver), "--json")
    assert result.returncode == 0, result.stderr
    rows = _rows(result)
    gpu, torch_row = rows["NVIDIA GPU and driver"], rows["torch"]
    assert "NVIDIA L4" in gpu["found"] and "8.9" in gpu["found"] and f"CUDA {cuda} at most" in gpu["found"]
    assert torch_row["status"] == "warn" and f"whl/{index}" in torch_row["fix"] and driver in torch_row["fix"]


def test_build_on_such_a_host_says_why_instead_of_suggesting_emit_script(tmp_path, export_cache):
    model = export_cache("resnet18", 64).path
    env = _host(tmp_path)
    env.pop("EXTRA_SITE", None)
    result = run_cli("build", str(model), "--output", str(tmp_path / "m.engine"), env=env)
    assert_one_line_error(result, "NVIDIA L4", "550.54.15", "CUDA 13.0", "whl/cu126")
    assert "--emit-script" not in result.stderr and not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize("wheel,status,fix", [("tensorrt-cu13==11.4.0.106", "warn", "gpu-cu12"),
                                              ("tensorrt-cu12==10.16.1.11", "ok", ""),
                                              ("tensorrt-cu12==10.3.0", "warn", "10.9 or newer")])
def test_the_tensorrt_wheel_is_judged_against_the_driver(tmp_path, wheel, status, fix):
    rows = _rows(_doctor(_host(tmp_path, wheel=wheel), "--json"))
    row = rows["TensorRT wheel"]
    assert row["status"] == status and fix in row["fix"], row
    assert wheel.split("==")[1] in row["found"]


def test_a_driver_too_old_to_report_the_compute_capability(tmp_path):
    rows = _rows(_doctor(_host(tmp_path, old=True), "--json"))
    assert "compute capability unknown" in rows["NVIDIA GPU and driver"]["found"]


def test_doctor_gpu_is_one_line_and_exit_2_when_engines_cannot_be_built_here(tmp_path):
    """A host without a working driver: a failing nvidia-smi first on PATH (so the test holds on GPU hosts too)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    (tmp_path / "bin" / "nvidia-smi").chmod(0o755)
    result = _doctor({"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}, "--gpu", "--json")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "cannot build engines" in lines[0], result.stderr
    rows = _rows(result)
    assert rows["NVIDIA GPU and driver"]["status"] == "n/a" and rows["Python"]["status"] == "ok"
