"""The host's GPU and driver as ``nvidia-smi`` reports them, and the rules that say whether an engine runs here.

``nvidia-smi`` is a stand-in shell script first on PATH that answers each query the way the driver's tool does
(said in each test); torch here is a CPU build, so "torch cannot see the GPU" is this machine's real state. The
version and GPU rules are NVIDIA's documented ones, tested as a table (tests/exporters/test_tensorrt_first_contact.py
checks the runner applies them).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from resnest_deploy.exporters import tensorrt_env
from resnest_deploy.exporters.tensorrt_env import (
    GpuInfo,
    SmiGpu,
    check_builder_gpu,
    check_engine_host,
    nvidia_smi_gpus,
    parse_cc,
    require_gpu,
    torch_gpu_mismatch,
    version_rule,
)

from resnest_deploy.errors import ConfigError, EngineMismatchError, GpuUnavailableError


@given(st.integers(0, 99), st.integers(0, 99))
def test_parse_cc_reads_major_and_minor(major, minor):
    assert parse_cc(f"{major}.{minor}") == (major, minor)
    assert parse_cc(str(major)) == (major, 0)
    assert GpuInfo("x", f"{major}.{minor}", "1").sm == (major, minor)


@pytest.mark.parametrize("text", ["", "x", "8.x", "-8.6", "8.6.1", ".6", "[N/A]", "8,6", None])
def test_parse_cc_refuses_anything_else(text):
    assert parse_cc(text) == (-1, -1)


@pytest.mark.parametrize(("driver", "cuda"), [("470.82", None), ("524.99", None), ("525.60.13", 12),
                                              ("579.1", 12), ("580.65.06", 13), ("610", 13), ("n/a", None)])
def test_the_driver_branch_says_the_newest_cuda_it_runs(driver, cuda):
    assert SmiGpu("g", driver, "8.6").cuda_major == cuda


def _smi(tmp_path, monkeypatch, script: str) -> None:
    """A stand-in nvidia-smi, alone on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + script)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")


def test_nvidia_smi_lists_each_gpu_with_its_compute_capability(tmp_path, monkeypatch):
    _smi(tmp_path, monkeypatch, 'case "$*" in "--query-gpu=name,driver_version,compute_cap --format=csv,noheader") '
                                'echo "NVIDIA L4, 550.54.15, 8.9"; echo "NVIDIA H100 80GB HBM3, 550.54.15, 9.0";; '
                                '*) exit 3;; esac\n')
    assert nvidia_smi_gpus() == [SmiGpu("NVIDIA L4", "550.54.15", "8.9"),
                                 SmiGpu("NVIDIA H100 80GB HBM3", "550.54.15", "9.0")]


def test_a_driver_too_old_for_compute_cap_is_asked_again_without_it(tmp_path, monkeypatch):
    _smi(tmp_path, monkeypatch, 'case "$*" in *compute_cap*) echo "Field compute_cap is not valid"; exit 2;; '
                                '"--query-gpu=name,driver_version --format=csv,noheader") echo "Tesla T4, 470.82.01";; '
                                '*) exit 3;; esac\n')
    assert nvidia_smi_gpus() == [SmiGpu("Tesla T4", "470.82.01", None)]


def test_an_unreadable_compute_capability_is_none(tmp_path, monkeypatch):
    _smi(tmp_path, monkeypatch, 'echo "Tesla T4, 470.82.01, [N/A]"\n')
    assert nvidia_smi_gpus() == [SmiGpu("Tesla T4", "470.82.01", None)]


@pytest.mark.parametrize("script", ["exit 9\n", "echo\n", 'echo "only one field"\n', "echo 'a, b, c, d'\n"])
def test_a_failing_or_odd_nvidia_smi_means_no_gpu_list(tmp_path, monkeypatch, script):
    _smi(tmp_path, monkeypatch, script)
    assert nvidia_smi_gpus() is None


def test_without_nvidia_smi_there_is_no_gpu_list_and_no_driver_version(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_smi_gpus() is None
    assert tensorrt_env._driver_version(0) == "unknown"


def test_the_driver_version_is_the_first_line_nvidia_smi_gives_for_that_gpu(tmp_path, monkeypatch):
    _smi(tmp_path, monkeypatch, 'case "$*" in "--query-gpu=driver_version --format=csv,noheader --id=1") '
                                'echo "555.42.06";; *) echo "No devices were found"; exit 6;; esac\n')
    assert tensorrt_env._driver_version(1) == "555.42.06"
    assert tensorrt_env._driver_version(0) == "unknown"  # its failure's output is not a version


@pytest.mark.parametrize("torch_cuda", [None, "12.8"])
@pytest.mark.parametrize(("driver", "fix"), [
    ("550.54.15", "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu126"),
    ("580.65.06", "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu130"),
    ("470.82.01", "upgrade the driver to r525 or newer")])
def test_a_gpu_this_torch_cannot_use_is_named_with_the_install_that_can(tmp_path, monkeypatch, driver, fix,
                                                                       torch_cuda):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch sees a GPU")
    monkeypatch.setattr(torch.version, "cuda", torch_cuda)  # a CPU build of torch, or a CUDA build
    _smi(tmp_path, monkeypatch, f'echo "NVIDIA L4, {driver}, 8.9"\n')
    cuda = {"550.54.15": "12", "580.65.06": "13", "470.82.01": "?"}[driver]
    built = torch_cuda or "no CUDA (a CPU build)"
    line = (f"nvidia-smi sees NVIDIA L4 (driver {driver}, CUDA {cuda} at most) but this torch {torch.__version__} is "
            f"built for CUDA {built} and cannot use it: {fix}")
    assert torch_gpu_mismatch() == line
    with pytest.raises(GpuUnavailableError) as info:
        require_gpu("building a TensorRT engine")
    assert str(info.value) == f"building a TensorRT engine: {line}"


def test_no_gpu_anywhere_says_what_needed_one_and_how_to_build_elsewhere(tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch sees a GPU")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert torch_gpu_mismatch() is None
    with pytest.raises(GpuUnavailableError) as info:
        require_gpu("timing an engine", 2)
    assert str(info.value) == ("timing an engine needs an NVIDIA GPU and none was found (no CUDA device 2 visible to "
                               "PyTorch); use --emit-script DIR to prepare the build for a GPU host")


@pytest.mark.parametrize(("reported", "cuda"), [(12040, 12), (13000, 13), (11080, 11)])
def test_the_drivers_own_cuda_version_wins_over_its_branch(monkeypatch, reported, cuda):
    import torch

    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: reported, raising=False)
    assert tensorrt_env.driver_cuda_major(GpuInfo("x", "8.6", "470.1")) == cuda


@pytest.mark.parametrize(("driver", "cuda"), [("470.82", 11), ("525.1", 12), ("580.1", 13), ("r580", None)])
def test_without_the_drivers_report_its_branch_decides(monkeypatch, driver, cuda):
    import torch

    def unavailable():
        raise RuntimeError("no driver")

    for stand_in in (unavailable, lambda: 0):
        monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", stand_in, raising=False)
        assert tensorrt_env.driver_cuda_major(GpuInfo("x", "8.6", driver)) == cuda


@pytest.mark.parametrize(("installed", "driver", "hint"), [
    (("11.4.0.106", 13), 12, "pip install 'resnest-deploy[gpu-cu12]'"),
    (("10.16.1.11", 13), 11, "upgrade the driver")])
def test_a_wheel_for_a_newer_cuda_than_the_driver_is_refused_naming_the_fit(monkeypatch, installed, driver, hint):
    monkeypatch.setattr(tensorrt_env, "installed_tensorrt", lambda: installed)
    monkeypatch.setattr(tensorrt_env, "driver_cuda_major", lambda gpu: driver)
    with pytest.raises(ConfigError) as info:
        tensorrt_env.check_wheel_fits_driver(GpuInfo("L4", "8.9", "550.54"))
    assert str(info.value) == (f"TensorRT {installed[0]} is the CUDA 13 build, which needs driver r580+; this host's "
                               f"driver 550.54 runs CUDA {driver} at most: {hint}")


@pytest.mark.parametrize(("installed", "driver"), [(None, 12), (("10.16", None), 11), (("10.16", 13), None),
                                                   (("10.16", 12), 12), (("10.16", 12), 13)])
def test_a_wheel_the_driver_runs_or_cannot_be_judged_passes(monkeypatch, installed, driver):
    monkeypatch.setattr(tensorrt_env, "installed_tensorrt", lambda: installed)
    monkeypatch.setattr(tensorrt_env, "driver_cuda_major", lambda gpu: driver)
    tensorrt_env.check_wheel_fits_driver(GpuInfo("L4", "8.9", "550.54"))


def test_ampere_plus_builds_need_an_ampere_builder():
    check_builder_gpu("ampere+", GpuInfo("A100", "8.0", "1"))
    check_builder_gpu("none", GpuInfo("T4", "7.5", "1"))
    check_builder_gpu("same-cc", GpuInfo("T4", "7.5", "1"))
    with pytest.raises(ConfigError) as info:
        check_builder_gpu("ampere+", GpuInfo("Tesla T4", "7.5", "1"))
    assert str(info.value) == ("--hardware-compat ampere+ needs an Ampere or newer GPU to build on; this host has "
                               "Tesla T4 (sm 7.5)")


PLAIN = ("a plain engine runs only on the TensorRT version that built it; rebuild it here, or build it with "
         "--version-compatible")
LATER = "a version-compatible engine runs only on the same or a later TensorRT runtime"


@pytest.mark.parametrize(("built", "runtime", "compatible", "why"), [
    ("10.16.1.11", "10.16.1.11", False, None),
    ("10.16.1.11", "10.16.1.11.0", False, PLAIN),  # another build string is another version
    ("10.16.1", "10.16.1", True, None),
    ("unknown", "unknown", False, None),
    ("unknown", "10.16.1", True, LATER),
    ("10.16.1", "unknown", True, LATER),
    ("10.15.1", "10.16.1", False, PLAIN),
    ("10.9.0", "10.16.1", True, None),
    ("10.16.1", "10.9.0", True, LATER),
    ("10.16.1", "11.1.0", True, None),
    ("10.16.1", "11.4.0.106", True, None),
    ("10.16.1", "11.0.9", True, "TensorRT 11.0.9 runs version-compatible engines of its own major (and of 10.x from "
                                "11.1 on); rebuild the engine here"),
    ("11.4.0", "12.0.0", True, "TensorRT 12.0.0 runs version-compatible engines of its own major (and of 10.x from "
                               "11.1 on); rebuild the engine here"),
    ("11.4.0", "10.16.1", True, LATER),
    ("11.1.0", "11.4.0", True, None),
])
def test_version_rules(built, runtime, compatible, why):
    assert version_rule(built, runtime, compatible) == why


def test_version_rules_below_11_say_nothing_of_the_10_to_11_path():
    assert version_rule("9.0.0", "10.16.1", True) == ("TensorRT 10.16.1 runs version-compatible engines of its own "
                                                      "major; rebuild the engine here")


RECORD = {"tensorrt": "10.16.1.11", "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"},
          "hardware_compat": "none"}
L4, L40S = GpuInfo("NVIDIA L4", "8.9", "550.1"), GpuInfo("NVIDIA L40S", "8.9", "550.1")


def test_an_engine_runs_on_any_gpu_of_its_compute_capability():
    check_engine_host(RECORD, L40S, "10.16.1.11", "m.plan")
    check_engine_host({**RECORD, "hardware_compat": "same-cc"}, L40S, "10.16.1.11", "m.plan")


@pytest.mark.parametrize(("record", "gpu", "version", "message"), [
    (RECORD, GpuInfo("NVIDIA A10", "8.6", "1"), "10.16.1.11",
     "m.plan was built for compute capability 8.9 on NVIDIA L4; this host has NVIDIA A10 (sm 8.6): rebuild the "
     "engine here (or build with --hardware-compat ampere+)"),
    ({**RECORD, "gpu": {}}, L4, "10.16.1.11",
     "m.plan was built for compute capability ? on ?; this host has NVIDIA L4 (sm 8.9): rebuild the engine here "
     "(or build with --hardware-compat ampere+)"),
    (RECORD, L4, "10.15.0", f"m.plan was built with TensorRT 10.16.1.11; this host has TensorRT 10.15.0: {PLAIN}"),
    ({**RECORD, "hardware_compat": "ampere+"}, GpuInfo("Tesla T4", "7.5", "1"), "10.16.1.11",
     "m.plan is built for Ampere or newer GPUs; this host has Tesla T4 (sm 7.5)"),
])
def test_an_engine_that_cannot_run_here_is_refused_naming_both_sides(record, gpu, version, message):
    with pytest.raises(EngineMismatchError) as info:
        check_engine_host(record, gpu, version, "m.plan")
    assert str(info.value) == message


def test_an_ampere_plus_engine_runs_on_any_ampere_or_newer_gpu():
    for cc in ("8.0", "8.6", "9.0", "12.0"):
        check_engine_host({**RECORD, "hardware_compat": "ampere+"}, GpuInfo("g", cc, "1"), "10.16.1.11", "m.plan")


class _CudaStandIn:
    """A stand-in for ``torch.cuda`` on a host with two GPUs (this torch has no CUDA device to ask)."""

    GPUS = [("NVIDIA L4", (8, 9)), ("NVIDIA H100 80GB HBM3", (9, 0))]

    def __init__(self, available: bool = True) -> None:
        self.available = available

    def is_available(self) -> bool:
        return self.available

    def device_count(self) -> int:
        return len(self.GPUS) if self.available else 0

    def get_device_capability(self, index: int) -> tuple[int, int]:
        return self.GPUS[index][1]

    def get_device_name(self, index: int) -> str:
        return self.GPUS[index][0]


@pytest.mark.parametrize("index", [0, 1])
def test_the_gpu_is_the_one_at_the_index_asked_for_with_its_drivers_version(tmp_path, monkeypatch, index):
    import torch

    monkeypatch.setattr(torch, "cuda", _CudaStandIn())
    _smi(tmp_path, monkeypatch, f'case "$*" in "--query-gpu=driver_version --format=csv,noheader --id={index}") '
                                f'echo "55{index}.1";; *) exit 6;; esac\n')
    name, (major, minor) = _CudaStandIn.GPUS[index]
    assert tensorrt_env.gpu_info(index) == GpuInfo(name, f"{major}.{minor}", f"55{index}.1", index)
    assert require_gpu("x", index) == tensorrt_env.gpu_info(index)
    if index == 0:
        assert tensorrt_env.gpu_info() == GpuInfo(name, "8.9", "550.1", 0)
        assert require_gpu("x") == tensorrt_env.gpu_info()


def test_an_index_past_the_last_gpu_or_no_cuda_is_no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "cuda", _CudaStandIn())
    assert tensorrt_env.gpu_info(2) is None
    assert tensorrt_env.gpu_info(1) is not None
    monkeypatch.setattr(torch, "cuda", _CudaStandIn(available=False))
    assert tensorrt_env.gpu_info(0) is None


def _forget_tensorrt_after(monkeypatch) -> None:
    """No ``tensorrt`` module now, and whatever the test imports under that name is gone after it."""
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # recorded: teardown restores the state before the test
    del sys.modules["tensorrt"]


def _fake_tensorrt(tmp_path, monkeypatch, body: str) -> None:
    """A ``tensorrt`` module of our own first on sys.path (no TensorRT here), with a faked GPU for the checks
    before the import; the wheel check sees no TensorRT package."""
    import importlib

    (tmp_path / "tensorrt.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    _forget_tensorrt_after(monkeypatch)
    importlib.invalidate_caches()
    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda index=0: GpuInfo("L4", "8.9", "580.1", index))
    monkeypatch.setattr(tensorrt_env, "use_device", lambda index: None)
    monkeypatch.setattr(tensorrt_env, "installed_tensorrt", lambda: None)


@pytest.mark.parametrize(("body", "message"), [
    ("raise ImportError('libnvinfer.so.10: cannot open shared object file\\nmore')",
     "TensorRT is installed but does not load (libnvinfer.so.10: cannot open shared object file); its CUDA "
     "libraries must match the driver: try 'resnest-deploy[gpu-cu12]' on drivers before r580"),
    ("raise OSError('libcudart.so.13: cannot open shared object file')",
     "TensorRT is installed but does not load (libcudart.so.13: cannot open shared object file)"),
    ("raise OSError()", "TensorRT is installed but does not load (OSError)"),
    (f"raise OSError('{'x' * 300}')", f"TensorRT is installed but does not load ({'x' * 200})"),
    ("import no_such_module_here", "TensorRT is installed but does not load (No module named "
                                   "'no_such_module_here'); its CUDA libraries must match the driver: try "
                                   "'resnest-deploy[gpu-cu12]' on drivers before r580"),
    ("__version__ = '10.8.1'", "TensorRT 10.8.1 is older than 10.9, the oldest this tool supports "
                               "(SAME_COMPUTE_CAPABILITY, strongly typed explicit quantization)"),
])
def test_a_tensorrt_that_does_not_load_or_is_too_old_is_one_line(tmp_path, monkeypatch, body, message):
    _fake_tensorrt(tmp_path, monkeypatch, body + "\n")
    with pytest.raises(ConfigError) as info:
        tensorrt_env.import_tensorrt("building a TensorRT engine")
    assert str(info.value) == message


def test_no_tensorrt_at_all_names_the_extras_that_install_it(monkeypatch):
    import builtins

    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda index=0: GpuInfo("L4", "8.9", "580.1", index))
    monkeypatch.setattr(tensorrt_env, "use_device", lambda index: None)
    monkeypatch.setattr(tensorrt_env, "installed_tensorrt", lambda: None)
    _forget_tensorrt_after(monkeypatch)
    real_import = builtins.__import__

    def no_tensorrt(name, *args, **kwargs):
        if name == "tensorrt":
            raise ModuleNotFoundError("No module named 'tensorrt'", name="tensorrt")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    with pytest.raises(ConfigError) as info:
        tensorrt_env.import_tensorrt("timing an engine")
    assert str(info.value) == ("timing an engine needs TensorRT: pip install 'resnest-deploy[gpu-cu13]' (driver r580+) "
                               "or 'resnest-deploy[gpu-cu12]' (r525+) on this host")


@pytest.mark.parametrize("version", ["10.9.0.34", "11.4.0.106", "unknown"])
def test_a_tensorrt_at_or_above_the_floor_is_returned_with_the_gpu(tmp_path, monkeypatch, version):
    _fake_tensorrt(tmp_path, monkeypatch, f"__version__ = {version!r}\n" if version != "unknown" else "")
    trt, gpu = tensorrt_env.import_tensorrt("x", 1)
    assert tensorrt_env.trt_version(trt) == version and gpu == GpuInfo("L4", "8.9", "580.1", 1)
    assert tensorrt_env.import_tensorrt("x")[1].index == 0  # device 0 unless told
