"""``resnest-deploy doctor``: what this host can do, one line per component, each with the fix when something does
not fit. The GPU checks a bundle's build.sh runs on its host are these (``doctor --gpu``), so a GPU host hears
the same diagnosis from both.

Nothing here imports TensorRT (it segfaults without a GPU): its wheel is read from package metadata, and the GPU
from the driver (``nvidia-smi``) as well as from torch.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

from resnest_deploy.exporters.tensorrt_env import (DRIVER_FOR_CUDA, EXTRA_FOR_CUDA, MIN_TENSORRT, installed_tensorrt,
                                                  nvidia_smi_gpus, torch_gpu_mismatch)

from .serving.server import TRITON_PACKAGE, find_tritonserver

OK, WARN, MISSING, NA = "ok", "warn", "missing", "n/a"


@dataclass(frozen=True)
class Finding:
    """One line of the table: a component, what was found, its status and the fix (empty when fine)."""

    component: str
    found: str
    status: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _torch() -> list[Finding]:
    import torch

    cuda = torch.version.cuda
    built = f"torch {torch.__version__} (CUDA {cuda} build)" if cuda else f"torch {torch.__version__} (CPU build)"
    sees = torch.cuda.is_available()
    mismatch = torch_gpu_mismatch()
    status = OK if sees or not mismatch else WARN
    return [Finding("torch", built + ("; sees the GPU" if sees else "; sees no GPU"), status, mismatch or "")]


def _gpu() -> list[Finding]:
    gpus = nvidia_smi_gpus()
    if not gpus:
        return [Finding("NVIDIA GPU and driver", "none (nvidia-smi missing or failing)", NA,
                        "CPU work runs here; build engines with the bundles deploy writes, on a GPU host")]
    rows = []
    for gpu in gpus:
        cc = gpu.compute_capability or "unknown (driver too old to report it)"
        rows.append(Finding("NVIDIA GPU and driver", f"{gpu.name}, compute capability {cc}, driver {gpu.driver} "
                            f"(CUDA {gpu.cuda_major or '?'} at most)", OK if gpu.cuda_major else WARN,
                            "" if gpu.cuda_major else f"upgrade the driver to r{min(DRIVER_FOR_CUDA.values())}+"))
    return rows


def _tensorrt() -> list[Finding]:
    installed = installed_tensorrt()
    gpus = nvidia_smi_gpus() or []
    if installed is None:
        fix = "on a GPU host: pip install 'resnest-deploy[gpu-cu13]' (driver r580+) or '[gpu-cu12]' (r525+)"
        return [Finding("TensorRT wheel", "not installed", MISSING if gpus else NA, fix)]
    version, cuda = installed
    numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if numbers and numbers < MIN_TENSORRT:
        return [Finding("TensorRT wheel", f"{version}", WARN,
                        f"TensorRT {'.'.join(map(str, MIN_TENSORRT))} or newer is needed: pip install -U tensorrt")]
    driver = gpus[0].cuda_major if gpus else None
    if cuda is not None and driver is not None and cuda > driver:
        extra = EXTRA_FOR_CUDA.get(driver)
        return [Finding("TensorRT wheel", f"{version} (CUDA {cuda} build)", WARN,
                        f"the driver runs CUDA {driver} at most: pip install 'resnest-deploy[{extra}]'"
                        if extra else "upgrade the driver")]
    return [Finding("TensorRT wheel", f"{version}" + (f" (CUDA {cuda} build)" if cuda else ""), OK)]


def _onnxruntime() -> list[Finding]:
    try:
        import onnxruntime as ort
    except ImportError:
        return [Finding("ONNX Runtime", "not installed", MISSING, "pip install 'resnest-deploy[cpu]'")]
    providers = ort.get_available_providers()
    gpus = nvidia_smi_gpus()
    status, fix = OK, ""
    if gpus and "CUDAExecutionProvider" not in providers:
        status, fix = WARN, "on a GPU host install onnxruntime-gpu (the [gpu-cu12]/[gpu-cu13] extras) instead"
    return [Finding("ONNX Runtime", f"{ort.__version__}: {', '.join(providers)}", status, fix)]


def _triton() -> list[Finding]:
    binary = find_tritonserver()
    if binary is None:
        return [Finding("Triton server (serve)", "not found", MISSING, f"pip install --no-deps {TRITON_PACKAGE}")]
    return [Finding("Triton server (serve)", str(binary), OK)]


def diagnose() -> list[Finding]:
    """Every component, in the order a user would fix them."""
    rows = [Finding("Python", platform.python_version(), OK)]
    for part in (_torch, _gpu, _tensorrt, _onnxruntime, _triton):
        rows += part()
    return rows


def gpu_problems(findings: list[Finding]) -> list[Finding]:
    """What stops engines from being built and checked on this host (for ``doctor --gpu`` and build.sh)."""
    needed = {"torch", "NVIDIA GPU and driver", "TensorRT wheel"}
    return [f for f in findings if f.component in needed and f.status != OK]
