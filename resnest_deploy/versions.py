"""The versions of this tool and of the libraries that shape what it makes, read from the installed packages'
metadata (no import: a rerun that only compares records never loads torch)."""

from __future__ import annotations

import functools
import platform
from importlib import metadata

from . import __version__

# What an artifact's bytes depend on (recorded in its metadata), and what a deploy step's output depends on.
ARTIFACT_LIBRARIES = ("torch", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu")
STEP_LIBRARIES = ("torch", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu", "numpy", "tensorrt")


def library_versions(names: tuple[str, ...] = ARTIFACT_LIBRARIES) -> dict[str, str]:
    """``{"resnest-deploy", "python", <name>: version, ...}`` for every installed distribution of ``names``."""
    return dict(_read(tuple(names)))


@functools.cache
def _read(names: tuple[str, ...]) -> dict[str, str]:
    versions = {"resnest-deploy": __version__, "python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
