"""The GPU and TensorRT of this host, found without touching TensorRT (which segfaults when no GPU is present),
and the rules that say whether an engine built elsewhere can run here.

``import_tensorrt`` is the one way the package imports ``tensorrt``. In order, it: finds the CUDA device through
PyTorch (none: a clear error, TensorRT never loaded); makes that device current, because TensorRT's builder,
runtime and streams all use the CUDA *current* device (``--device N`` must reach them before any TensorRT object
exists); checks that the installed TensorRT wheel's CUDA major is one the driver can run (the plain ``tensorrt``
package installs the CUDA 13 build, which needs driver r580+); then imports it and checks the version floor.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

from resnest_deploy.errors import ConfigError, EngineMismatchError, GpuUnavailableError

from .tensorrt_options import EngineRecord

# The oldest TensorRT whose API this package uses: HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY arrived in
# 10.9 (and the strongly typed network with explicit quantization path is complete there).
MIN_TENSORRT = (10, 9)
# Lowest driver branch that runs each CUDA major (CUDA 12: r525; CUDA 13: r580).
DRIVER_FOR_CUDA = {12: 525, 13: 580}
EXTRA_FOR_CUDA = {12: "gpu-cu12", 13: "gpu-cu13"}


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device engines are built for and run on."""

    name: str
    compute_capability: str
    driver: str
    index: int = 0

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    @property
    def sm(self) -> tuple[int, int]:
        """The compute capability as numbers, e.g. (8, 6)."""
        return parse_cc(self.compute_capability)


def parse_cc(text: str) -> tuple[int, int]:
    """``"8.6"`` -> (8, 6); anything else -> (-1, -1)."""
    major, _, minor = str(text).partition(".")
    return (int(major), int(minor or 0)) if major.isdigit() and (minor or "0").isdigit() else (-1, -1)


def gpu_info(index: int = 0) -> GpuInfo | None:
    """The CUDA device at ``index`` via PyTorch, or None when there is none (TensorRT is not touched)."""
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() <= index:
        return None
    major, minor = torch.cuda.get_device_capability(index)
    return GpuInfo(torch.cuda.get_device_name(index), f"{major}.{minor}", _driver_version(index), index)


def _driver_version(index: int) -> str:
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader", f"--id={index}"],
                                 capture_output=True, text=True, timeout=20, check=True).stdout.strip()
            if out:
                return out.splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown"


@dataclass(frozen=True)
class SmiGpu:
    """A GPU as the driver reports it (``nvidia-smi``), whatever torch sees."""

    name: str
    driver: str
    compute_capability: str | None  # None on drivers too old to report it

    @property
    def cuda_major(self) -> int | None:
        """The newest CUDA major the driver's branch runs (r525+: 12, r580+: 13)."""
        branch = self.driver.split(".")[0]
        if not branch.isdigit():
            return None
        return max((cuda for cuda, low in DRIVER_FOR_CUDA.items() if int(branch) >= low), default=None)


def nvidia_smi_gpus() -> list[SmiGpu] | None:
    """The GPUs ``nvidia-smi`` lists, or None when there is no ``nvidia-smi`` or it fails (no driver)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    for fields in ("name,driver_version,compute_cap", "name,driver_version"):  # compute_cap: drivers r510+
        try:
            run = subprocess.run([smi, f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        rows = [[c.strip() for c in line.split(",")] for line in run.stdout.splitlines() if line.strip()]
        if run.returncode == 0 and rows and all(len(r) == fields.count(",") + 1 for r in rows):
            return [SmiGpu(r[0], r[1], r[2] if len(r) > 2 and _is_cc(r[2]) else None) for r in rows]
    return None


def _is_cc(text: str) -> bool:
    return parse_cc(text) != (-1, -1)


# Where pip finds a torch built for each CUDA major (PyTorch's own wheel indexes).
TORCH_INDEX = {12: "https://download.pytorch.org/whl/cu126", 13: "https://download.pytorch.org/whl/cu130"}


def torch_gpu_mismatch() -> str | None:
    """When the driver sees a GPU that torch cannot use: one line naming both CUDA versions and the command that
    installs a torch this driver runs; None when torch sees the GPU or there is none."""
    import torch

    if torch.cuda.is_available():
        return None
    gpus = nvidia_smi_gpus()
    if not gpus:
        return None
    gpu = gpus[0]
    built = torch.version.cuda or "no CUDA (a CPU build)"
    fix = (f"pip install --force-reinstall torch --index-url {TORCH_INDEX[gpu.cuda_major]}"
           if gpu.cuda_major in TORCH_INDEX else "upgrade the driver to r525 or newer")
    return (f"nvidia-smi sees {gpu.name} (driver {gpu.driver}, CUDA {gpu.cuda_major or '?'} at most) but this torch "
            f"{torch.__version__} is built for CUDA {built} and cannot use it: {fix}")


def require_gpu(what: str, index: int = 0) -> GpuInfo:
    """The GPU, or :class:`GpuUnavailableError` naming ``what`` needed it (and, when the driver sees a GPU that
    torch cannot use, why and how to install a torch that can)."""
    info = gpu_info(index)
    if info is None:
        mismatch = torch_gpu_mismatch()
        if mismatch:
            raise GpuUnavailableError(f"{what}: {mismatch}")
        raise GpuUnavailableError(f"{what} needs an NVIDIA GPU and none was found (no CUDA device {index} visible "
                                  "to PyTorch); use --emit-script DIR to prepare the build for a GPU host")
    return info


def use_device(index: int) -> None:
    """Make CUDA device ``index`` current for this thread (TensorRT objects use the current device)."""
    import torch

    torch.cuda.set_device(index)


def installed_tensorrt() -> tuple[str, int | None] | None:
    """(version, CUDA major of the wheel) of the installed TensorRT, read from package metadata without
    importing it; None when no TensorRT package is installed."""
    found = None
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("tensorrt-cu") and name.split("-")[1][2:].isdigit():
            return dist.version, int(name.split("-")[1][2:])
        if name in ("tensorrt", "tensorrt-bindings") and found is None:
            found = (dist.version, None)
    return found


def driver_cuda_major(gpu: GpuInfo) -> int | None:
    """The newest CUDA major the host's driver runs, from the driver's own report or its branch number."""
    try:
        import torch

        version = int(torch._C._cuda_getDriverVersion())  # e.g. 12040: the CUDA version the driver supports
        if version > 0:
            return version // 1000
    except (AttributeError, RuntimeError, ValueError):
        pass
    branch = gpu.driver.split(".")[0]
    if not branch.isdigit():
        return None
    return max((cuda for cuda, low in DRIVER_FOR_CUDA.items() if int(branch) >= low), default=11)


def check_wheel_fits_driver(gpu: GpuInfo) -> None:
    """Refuse a TensorRT wheel built for a newer CUDA than the driver runs, naming the extra to install instead.

    Raises:
        ConfigError: The wheel's CUDA major is above what the driver supports.
    """
    installed = installed_tensorrt()
    driver = driver_cuda_major(gpu)
    if installed is None or installed[1] is None or driver is None or installed[1] <= driver:
        return
    version, cuda = installed
    fit = EXTRA_FOR_CUDA.get(driver)
    hint = f"pip install 'resnest-deploy[{fit}]'" if fit else "upgrade the driver"
    raise ConfigError(f"TensorRT {version} is the CUDA {cuda} build, which needs driver r{DRIVER_FOR_CUDA[cuda]}+; "
                      f"this host's driver {gpu.driver} runs CUDA {driver} at most: {hint}")


def import_tensorrt(what: str, index: int = 0) -> tuple[ModuleType, GpuInfo]:
    """Find the GPU, make it current, check the wheel against the driver, import ``tensorrt``.

    Raises:
        GpuUnavailableError: No CUDA device ``index`` (TensorRT is never imported then).
        ConfigError: TensorRT missing, too old, built for a CUDA the driver cannot run, or failing to load.
    """
    gpu = require_gpu(what, index)
    use_device(index)
    check_wheel_fits_driver(gpu)
    try:
        import tensorrt
    except ImportError as exc:
        if "tensorrt" in str(getattr(exc, "name", "") or "") and "No module" in str(exc):
            raise ConfigError(f"{what} needs TensorRT: pip install 'resnest-deploy[gpu-cu13]' (driver r580+) or "
                              "'resnest-deploy[gpu-cu12]' (r525+) on this host") from None
        raise ConfigError(f"TensorRT is installed but does not load ({_first_line(exc)}); its CUDA libraries "
                          "must match the driver: try 'resnest-deploy[gpu-cu12]' on drivers before r580") from None
    except OSError as exc:
        raise ConfigError(f"TensorRT is installed but does not load ({_first_line(exc)})") from None
    version = trt_version(tensorrt)
    if _numbers(version)[:2] < MIN_TENSORRT and _numbers(version):
        raise ConfigError(f"TensorRT {version} is older than {'.'.join(map(str, MIN_TENSORRT))}, the oldest this "
                          "tool supports (SAME_COMPUTE_CAPABILITY, strongly typed explicit quantization)")
    return tensorrt, gpu


def trt_version(trt: ModuleType) -> str:
    """The installed TensorRT's version string."""
    return str(getattr(trt, "__version__", "unknown"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _numbers(version: str) -> tuple[int, ...]:
    parts = []
    for part in str(version).split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def check_builder_gpu(hardware_compat: str, gpu: GpuInfo) -> None:
    """Refuse a hardware-compatibility level the builder's GPU cannot produce, before any TensorRT object exists.

    Raises:
        ConfigError: ``ampere+`` on a GPU older than Ampere (compute capability below 8.0).
    """
    if hardware_compat == "ampere+" and gpu.sm[0] < 8:
        raise ConfigError(f"--hardware-compat ampere+ needs an Ampere or newer GPU to build on; this host has "
                          f"{gpu.name} (sm {gpu.compute_capability})")


def version_rule(built: str, runtime: str, version_compatible: bool) -> str | None:
    """Why an engine built with TensorRT ``built`` cannot run on ``runtime``, or None when it can.

    NVIDIA's rules: a plain engine runs only on the TensorRT version that built it. A version-compatible engine
    runs on the same or a later runtime of the same major (10.x and 11.x support matrices), and from TensorRT 11.1
    on, an 11.x runtime also runs version-compatible engines built with 10.x (11.1 engine compatibility page). An
    11.x engine never runs on a 10.x runtime.
    """
    b, r = _numbers(built), _numbers(runtime)
    if built == runtime or (b and r and b == r):
        return None
    if not version_compatible:
        return ("a plain engine runs only on the TensorRT version that built it; rebuild it here, or build it with "
                "--version-compatible")
    if not b or not r or r < b:
        return "a version-compatible engine runs only on the same or a later TensorRT runtime"
    if r[0] == b[0]:
        return None
    if (b[0], r[0]) == (10, 11) and r[:2] >= (11, 1):
        return None
    return (f"TensorRT {runtime} runs version-compatible engines of its own major"
            + (" (and of 10.x from 11.1 on)" if r[0] >= 11 else "") + "; rebuild the engine here")


def check_engine_host(record: EngineRecord | dict, gpu: GpuInfo, version: str, name: str) -> None:
    """Raise :class:`EngineMismatchError` when an engine built as ``record`` cannot run on this host.

    Rules: TensorRT versions by :func:`version_rule`; GPUs by the engine's hardware-compatibility level: ``none``
    and ``same-cc`` need the builder's compute capability (same SM architecture = same engine, whatever the
    product name), ``ampere+`` compute capability 8.0 or newer.
    """
    record = record if isinstance(record, EngineRecord) else EngineRecord.from_dict(record)
    built = record.tensorrt
    problem = version_rule(built, version, record.version_compatible)
    if problem:
        raise EngineMismatchError(f"{name} was built with TensorRT {built}; this host has TensorRT {version}: "
                                  f"{problem}")
    built_gpu = record.gpu
    level = record.hardware_compat
    here = f"{gpu.name} (sm {gpu.compute_capability})"
    if level == "ampere+":
        if gpu.sm[0] < 8:
            raise EngineMismatchError(f"{name} is built for Ampere or newer GPUs; this host has {here}")
        return
    built_cc = str(built_gpu.get("compute_capability", "?"))
    if parse_cc(built_cc) != gpu.sm:
        hint = "rebuild the engine here (or build with --hardware-compat ampere+)"
        raise EngineMismatchError(f"{name} was built for compute capability {built_cc} on "
                                  f"{built_gpu.get('name', '?')}; this host has {here}: {hint}")
