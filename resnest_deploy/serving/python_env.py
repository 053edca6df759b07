"""The python packages Triton's python stub runs the preprocessing model with: pinned numpy and Pillow in a folder of
their own (``pip install --target``), which ``serve`` hands to the model as ``RESNEST_DEPLOY_TRITON_PACKAGES``.

Why a folder of its own: the stub embeds the host's libpython and ignores ``PYTHONPATH``, so it never sees this
project's virtual environment; and with numpy 2.x the stub of Triton 2.51 answered a trivial model with "output
tensor shape does not match size of output" while numpy 1.26 worked. Pillow is pinned to the version this
environment decodes with, so the served pixels are the ones parity checked (a JPEG decoder of another Pillow
build may round differently).

``python -m resnest_deploy.serving.python_env`` installs them (``make install`` runs it).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .server import ServeError

ENV_VAR = "RESNEST_DEPLOY_TRITON_PACKAGES"
NUMPY_PIN = "numpy==1.26.4"  # the last numpy 1.x; wheels for CPython 3.9-3.12
_MARKER = "resnest-deploy-pins.txt"


def pins() -> list[str]:
    """numpy 1.26 and this environment's Pillow."""
    if sys.version_info >= (3, 13):
        raise ServeError("Triton's python stub packages are pinned to numpy 1.26, which has no wheels for Python "
                         f"{sys.version_info.major}.{sys.version_info.minor}; serve from Python 3.11 or 3.12")
    return [NUMPY_PIN, f"pillow=={importlib.metadata.version('pillow')}"]


def packages_dir() -> Path:
    """``$RESNEST_DEPLOY_TRITON_PACKAGES``, else ``<environment>/triton-python/cp3XY``."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        return Path(chosen).expanduser()
    return Path(sys.prefix) / "triton-python" / f"cp{sys.version_info.major}{sys.version_info.minor}"


def installed(folder: Path | None = None, packages: list[str] | None = None) -> bool:
    """Whether ``folder`` holds today's pins (and ``packages``, when given; a folder may hold more)."""
    marker = (folder or packages_dir()) / _MARKER
    try:
        return set(packages or pins()) <= set(marker.read_text(encoding="utf-8").split())
    except OSError:
        return False


def install(folder: Path | None = None, packages: list[str] | None = None) -> Path:
    """Install ``packages`` [default: the pins] into ``folder`` (whole or not at all: a sibling temporary folder
    renamed into place).

    Raises:
        ServeError: pip failed (no network, no wheel for this platform), with pip's last line.
    """
    folder = folder or packages_dir()
    packages = packages or pins()
    if installed(folder, packages):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--target", str(staging), *packages]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise ServeError(f"cannot install Triton's python stub packages ({' '.join(packages)}) into {folder}: "
                             f"{last}")
        (staging / _MARKER).write_text("\n".join(packages) + "\n", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def require() -> Path:
    """The installed folder, or one line saying how to install it.

    Raises:
        ServeError: Not installed.
    """
    folder = packages_dir()
    if not installed(folder):
        raise ServeError(f"Triton's python stub packages ({' '.join(pins())}) are not installed in {folder}: run "
                         f"{Path(sys.executable).name} -m resnest_deploy.serving.python_env")
    return folder


if __name__ == "__main__":
    print(install())
