"""This machine as a deploy target: its GPU's compute capability and its TensorRT, found without torch (and
without TensorRT, which segfaults with no GPU) when ``nvidia-smi`` sees no GPU."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    """This machine's GPU (None without one) and installed TensorRT version (None without it)."""

    compute_capability: str | None
    tensorrt: str | None

    @property
    def tensorrt_major(self) -> int | None:
        head = (self.tensorrt or "").split(".")[0]
        return int(head) if head.isdigit() else None


def detect_host() -> Host:
    """The GPU at index 0 and the TensorRT wheel (read from package metadata, never imported)."""
    smi = shutil.which("nvidia-smi")
    if not smi or subprocess.run([smi, "-L"], capture_output=True).returncode != 0:
        return Host(None, None)
    from resnest_deploy.exporters.tensorrt_env import gpu_info, installed_tensorrt

    gpu = gpu_info(0)
    installed = installed_tensorrt()
    return Host(gpu.compute_capability if gpu else None, installed[0] if installed else None)
