"""The GPU and TensorRT of this host: found without touching TensorRT, which segfaults when no GPU is present.

``import_tensorrt`` is the one way the package imports ``tensorrt``: it first asks PyTorch whether a CUDA device
exists, so a machine without a GPU gets a clear error instead of a crash.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from types import ModuleType

from resnest_deploy.errors import ConfigError, GpuUnavailableError


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device engines are built for and run on."""

    name: str
    compute_capability: str
    driver: str
    index: int = 0

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


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


def require_gpu(what: str, index: int = 0) -> GpuInfo:
    """The GPU, or :class:`GpuUnavailableError` naming ``what`` needed it."""
    info = gpu_info(index)
    if info is None:
        raise GpuUnavailableError(f"{what} needs an NVIDIA GPU and none was found (no CUDA device visible to "
                                  "PyTorch); use --emit-script DIR to prepare the build for a GPU host")
    return info


def import_tensorrt(what: str, index: int = 0) -> tuple[ModuleType, GpuInfo]:
    """Check for a GPU, then import ``tensorrt``; returns the module and the GPU.

    Raises:
        GpuUnavailableError: No CUDA device (TensorRT is never imported then).
        ConfigError: TensorRT is not installed.
    """
    gpu = require_gpu(what, index)
    try:
        import tensorrt
    except ImportError as exc:
        raise ConfigError(f"{what} needs TensorRT: pip install 'resnest-deploy[gpu]' (or tensorrt) on this host "
                          f"({exc})") from None
    return tensorrt, gpu


def trt_version(trt: ModuleType) -> str:
    """The installed TensorRT's version string."""
    return str(getattr(trt, "__version__", "unknown"))
