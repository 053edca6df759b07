"""``build --emit-script DIR``: a self-contained folder that builds and checks an engine on a GPU host."""

from __future__ import annotations

import json
import shlex
import shutil
from datetime import datetime, timezone
from pathlib import Path

import onnx

from resnest_deploy import __version__
from resnest_deploy.atomic import atomic_path, ensure_writable_dir, make_executable, write_text_atomic
from resnest_deploy.errors import ArtifactError
from resnest_deploy.paths import check_output, real_path

from resnest_deploy.kinds import engine_path

from .tensorrt_options import BuildOptions, BuildSpec, HardwareCompat, resolve_build

SCRIPT_NAME = "build.sh"
# Where this tool's code comes from, by import name: installed, ``resnest_deploy.exporters`` and
# ``resnest_deploy.calibration`` may live in folders beside ``resnest_deploy`` (the source layout).
TOOL_PACKAGES = ("resnest_deploy", "resnest_deploy.exporters", "resnest_deploy.calibration")
# TensorRT comes per CUDA major (build.sh picks by the driver: r580+ runs CUDA 13); the rest as pyproject.toml.
REQUIREMENTS = ("torch", "numpy", "onnx", "onnxscript", "onnxruntime-gpu", "typer", "rich", "pillow", "safetensors",
                "matplotlib")
TENSORRT_FOR_CUDA = {12: "tensorrt-cu12>=10.9", 13: "tensorrt-cu13>=10.13.2"}


def emit_script(options: BuildOptions, folder: Path) -> Path:
    """Write ``folder`` with the ONNX, the timing cache (if any), this tool's code and ``build.sh``.

    ``build.sh`` refers to everything by paths relative to its own folder, so the folder can be copied to any
    GPU host. It checks for a GPU and the packages, builds the engine with the same options, then verifies it
    against the eager model with ``parity`` (synthetic inputs, or ``DATA=folder``).

    Raises:
        ArtifactError, ConfigError: From :func:`resolve_build` (checked here, before any GPU sees it).
        OutputError: ``folder`` cannot be written.
    """
    spec = resolve_build(options)
    folder = check_output(folder, folder=True)
    if spec.meta is None:
        raise ArtifactError(f"{spec.model.name} has no resnest-deploy metadata, so the bundle's parity step could "
                            "not rebuild its eager model on the GPU host; export it with resnest-deploy (or quantize "
                            "it with --arch), or build it on the GPU host without --emit-script")
    if options.timing_cache:
        check_output(folder / Path(options.timing_cache).name)
    existed = folder.exists()
    try:
        return _write_bundle(options, spec, folder)
    except BaseException:
        if not existed:  # a bundle that could not be finished is not left half-made
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _write_bundle(options: BuildOptions, spec: BuildSpec, folder: Path) -> Path:
    ensure_writable_dir(folder)
    model_name = spec.model.name
    _copy(spec.model, folder / model_name)
    data_files = _external_data_files(spec.model)
    for extra in data_files:
        _copy(spec.model.parent / extra, folder / extra)
    cache_name = None
    if options.timing_cache:
        cache_name = Path(options.timing_cache).name
        if Path(options.timing_cache).is_file():
            _copy(Path(options.timing_cache), folder / cache_name)
    copy_tool(folder / "tool")
    engine_name = engine_path(model_name).name
    args = ["build", model_name, "--profile", options.batch, "--workspace", f"{options.workspace_gib:g}",
            "--opt-level", str(options.opt_level), "--hardware-compat", HardwareCompat(options.hardware_compat).value,
            "--tf32" if options.tf32 else "--no-tf32", "--output", engine_name]
    if options.img_size:
        args += ["--img-size", str(options.img_size)]
    if options.version_compatible:
        args.append("--version-compatible")
    if cache_name:
        args += ["--timing-cache", cache_name]
    checkpoint = spec.meta is not None and spec.meta.weights_sha256
    text = script_preamble() + _SCRIPT.format(
        version=__version__, date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), model=model_name,
        sha=spec.onnx_sha256, precision=spec.precision, engine=engine_name, engine_q=shlex.quote(engine_name),
        report_q=shlex.quote(engine_name + ".parity.json"), manifest_q=shlex.quote(engine_name + ".json"),
        build_args=" ".join(shlex.quote(a) for a in args),
        weights_check=_WEIGHTS_CHECK.format(sha=spec.meta.weights_sha256) if checkpoint else "",
        weights_arg=' ${WEIGHTS:+--weights "$WEIGHTS"}' if checkpoint else "",
        batch=spec.shapes[1][0],
    )
    script = write_text_atomic(folder / SCRIPT_NAME, text)
    make_executable(script)
    write_text_atomic(folder / "build-options.json", json.dumps(
        {"onnx": model_name, "onnx_sha256": spec.onnx_sha256, "precision": spec.precision,
         "profile": [list(s) for s in spec.shapes], "args": args}, indent=2) + "\n")
    return script


def copy_tool(tool: Path) -> None:
    """Copy this tool's Python packages under ``tool`` so that ``PYTHONPATH=tool`` imports them."""
    import importlib

    for package in TOOL_PACKAGES:
        source = Path(importlib.import_module(package).__file__).resolve().parent
        target = tool.joinpath(*package.split("."))
        if target.exists():
            shutil.rmtree(target)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "exporters", "calibration") \
            if package == "resnest_deploy" else shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(source, target, ignore=ignore, copy_function=shutil.copyfile)  # modes from the umask


def _copy(source: Path, target: Path) -> None:
    if real_path(source) != real_path(target):
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def _external_data_files(path: Path) -> list[str]:
    model = onnx.load(str(path), load_external_data=False)
    names = set()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                names.add(entry.value)
    return sorted(names)


_WEIGHTS_CHECK = """
# This model came from a checkpoint (sha256 {sha}); parity needs it: WEIGHTS=/path/to/checkpoint bash build.sh
if [ -z "${{WEIGHTS:-}}" ]; then
  echo "note: WEIGHTS is not set; the engine is built but parity against the eager model is skipped" >&2
  SKIP_PARITY=1
fi
"""

# The part every emitted script shares: run from its own folder, the tool's code first on the path, a GPU and the
# Python packages present (naming the TensorRT wheel the driver runs).
SCRIPT_PREAMBLE = """#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
PYTHON="${{PYTHON:-python3}}"
export PYTHONPATH="$PWD/tool${{PYTHONPATH:+:$PYTHONPATH}}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "error: no NVIDIA GPU or driver on this host (nvidia-smi failed)" >&2
  exit 2
fi
if ! "$PYTHON" -c "import {imports}" 2>/dev/null; then
  DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1 | cut -d. -f1)
  if [ "${{DRIVER:-0}}" -ge 580 ]; then TRT='{trt13}'; else TRT='{trt12}'; fi
  echo "error: missing Python packages; install them with (driver r${{DRIVER:-?}}):" >&2
  echo "  $PYTHON -m pip install '$TRT' {requirements}" >&2
  exit 2
fi
# The checks of resnest-deploy doctor --gpu: torch sees the GPU, the TensorRT wheel fits the driver (one line if not).
"$PYTHON" -m resnest_deploy doctor --gpu >/dev/null || exit 2
"""
PREAMBLE_VALUES = {"imports": "tensorrt, torch, onnx, onnxruntime, typer, rich, PIL, safetensors",
                   "trt12": TENSORRT_FOR_CUDA[12], "trt13": TENSORRT_FOR_CUDA[13],
                   "requirements": " ".join(REQUIREMENTS)}


def script_preamble() -> str:
    """The shared opening of every emitted script (see ``SCRIPT_PREAMBLE``)."""
    return SCRIPT_PREAMBLE.format(**PREAMBLE_VALUES)


_SCRIPT = """# Build and verify the TensorRT engine for {model} ({precision}) on a GPU host.
# Written by resnest-deploy {version} on {date}; ONNX sha256 {sha}.
# Everything is referenced relative to this folder, so the folder can be copied anywhere.
#   bash build.sh                      build {engine}, then check it against the eager model
#   PYTHON=/opt/venv/bin/python bash build.sh      choose the interpreter
#   DATA=/path/to/images bash build.sh             check on real images instead of synthetic inputs
SKIP_PARITY=0
{weights_check}
"$PYTHON" -m resnest_deploy {build_args}

if [ "$SKIP_PARITY" = 0 ]; then
  "$PYTHON" -m resnest_deploy parity {engine_q} --batch {batch}{weights_arg} ${{DATA:+--data "$DATA"}} \\
    --output {report_q}
fi
echo "done: "{engine_q}" and "{manifest_q}
"""
