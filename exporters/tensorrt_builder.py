"""``build``: a TensorRT engine from an FP32, FP16-typed or Q/DQ INT8 ONNX, for TensorRT 10.x and 11.x alike.

There are no precision flags: the precision is what the ONNX holds. The network is always created with
``STRONGLY_TYPED`` (required for that on 10.x; present and implied on 11.x), so one code path serves both.
Everything that can be checked without a GPU (options, ops TensorRT cannot take, profiles against the graph)
is checked before ``tensorrt`` is imported; ``tensorrt`` is imported only after a CUDA device is found.

Without a GPU, :func:`emit_script` writes a folder that builds and verifies the engine on a GPU host.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx

from resnest_deploy import __version__
from resnest_deploy.atomic import atomic_path, ensure_writable_dir, write_text_atomic
from resnest_deploy.errors import ArtifactError, ConfigError, EngineBuildError
from resnest_deploy.models.weights import file_sha256

from .graph import UNSUPPORTED_BY_TENSORRT, load_onnx, tensor_info
from .metadata import ArtifactMeta, read_metadata, write_manifest
from .qdq_rules import has_qdq
from .tensorrt_env import import_tensorrt, trt_version

HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}
ENGINE_SUFFIX = ".engine"
StageFn = Callable[[str], None]


@dataclass(frozen=True)
class BuildOptions:
    """What ``build`` does.

    Attributes:
        model: The ONNX file.
        batch: ``MIN:OPT:MAX`` batch sizes of the optimization profile (one number for a fixed batch).
        img_size: Input side for graphs with dynamic height/width [default: the metadata's size].
        workspace_gib: Workspace memory pool limit.
        opt_level: Builder optimization level, 0-5.
        timing_cache: Timing cache file: loaded when it exists, merged with this build's timings and saved.
        hardware_compat: ``none`` (this GPU), ``ampere+`` (any Ampere or newer) or ``same-cc``.
        version_compatible: Build a version-compatible engine (runs on later TensorRT runtimes).
        tf32: Allow TF32 for FP32 layers.
        output: Engine path [default: the ONNX path with ``.engine``].
        device: CUDA device index.
    """

    model: Path
    batch: str = "1:8:32"
    img_size: int | None = None
    workspace_gib: float = 4.0
    opt_level: int = 3
    timing_cache: Path | None = None
    hardware_compat: str = "none"
    version_compatible: bool = False
    tf32: bool = True
    output: Path | None = None
    device: int = 0


@dataclass(frozen=True)
class BuildPlan:
    """Everything settled before TensorRT is touched."""

    model: Path
    output: Path
    meta: ArtifactMeta | None
    precision: str
    input_name: str
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    onnx_sha256: str


@dataclass
class BuildResult:
    path: Path
    manifest: Path
    record: dict[str, Any] = field(default_factory=dict)


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1:8:32"`` -> (1, 8, 32); ``"8"`` -> (8, 8, 8). Requires 1 <= min <= opt <= max."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise ConfigError(f"--batch takes MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX (or one number), got {text!r}")
    return values[0], values[1], values[2]


def detect_precision(model: onnx.ModelProto, meta: ArtifactMeta | None) -> str:
    if meta is not None:
        return meta.precision
    if has_qdq(model):
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def plan_build(options: BuildOptions) -> BuildPlan:
    """Check the options and the ONNX without TensorRT.

    Raises:
        ArtifactError: Missing/unreadable ONNX, or ops TensorRT's parser does not take (all listed by node).
        ConfigError: Bad batch/profile, size, workspace, optimization level or hardware-compatibility level.
    """
    if options.hardware_compat not in HARDWARE_COMPAT:
        raise ConfigError(f"--hardware-compat must be one of {', '.join(HARDWARE_COMPAT)}, got "
                          f"{options.hardware_compat!r}")
    if not 0 <= options.opt_level <= 5:
        raise ConfigError(f"--opt-level must be 0-5, got {options.opt_level}")
    if options.workspace_gib <= 0:
        raise ConfigError(f"--workspace must be > 0 GiB, got {options.workspace_gib}")
    batches = parse_batch(options.batch)
    path = Path(options.model)
    model = load_onnx(path, load_external_data=False)
    unsupported = [f"{n.name or '?'} ({n.op_type if n.domain in ('', 'ai.onnx') else n.domain + '::' + n.op_type})"
                   for n in model.graph.node
                   if n.op_type in UNSUPPORTED_BY_TENSORRT or n.domain not in ("", "ai.onnx")]
    if unsupported:
        raise ArtifactError(f"{path.name}: {len(unsupported)} node(s) TensorRT's ONNX parser does not take: "
                            + ", ".join(unsupported[:8]) + (" ..." if len(unsupported) > 8 else ""))
    meta = read_metadata(model)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise ArtifactError(f"{path.name}: expected one image input, found {[v.name for v in inputs]}")
    info = tensor_info(inputs[0])
    if len(info.shape) != 4:
        raise ArtifactError(f"{path.name}: input {info.name} is not [N,C,H,W]: {list(info.shape)}")
    n, c, h, w = info.shape
    if isinstance(n, int) and batches != (n, n, n):
        raise ConfigError(f"{path.name} has a fixed batch of {n}; use --batch {n}")
    size = options.img_size or (meta.input.size if meta else None)
    if isinstance(h, int) and isinstance(w, int):
        if options.img_size and (h, w) != (options.img_size, options.img_size):
            raise ConfigError(f"{path.name} takes {h}x{w} inputs, not --img-size {options.img_size}")
        hw = (h, w)
    elif size:
        hw = (size, size)
    else:
        raise ConfigError(f"{path.name} has a dynamic input size: give --img-size")
    shapes = tuple((b, int(c), *hw) for b in batches)
    output = Path(options.output) if options.output else path.with_suffix(ENGINE_SUFFIX)
    if output.is_dir():
        output = output / path.with_suffix(ENGINE_SUFFIX).name
    return BuildPlan(path, output, meta, detect_precision(model, meta), info.name, shapes,  # type: ignore[arg-type]
                     file_sha256(path))


def build_engine(options: BuildOptions, *, progress: StageFn | None = None) -> BuildResult:
    """Build and serialize an engine; write it and its manifest atomically (and the timing cache, if given).

    Raises:
        ArtifactError, ConfigError: From :func:`plan_build`.
        GpuUnavailableError: No CUDA device (TensorRT is not imported).
        EngineBuildError: The parser rejected the graph (errors listed with node names and op types), or the
            build failed.
        OutputError: The output folder cannot be written.
    """
    stage = progress or (lambda _: None)
    plan = plan_build(options)
    ensure_writable_dir(plan.output.parent)
    stage("import tensorrt")
    trt, gpu = import_tensorrt("building a TensorRT engine", options.device)
    started = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    stage("parse")
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.model)):
        errors = [describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {plan.model.name}", details=errors)
    config = configure(trt, builder, options, plan)
    cache_in = _load_timing_cache(trt, config, options.timing_cache)
    stage("build")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build {plan.model.name} (see the messages above)")
    data = bytes(serialized)
    build_seconds = time.perf_counter() - started
    stage("inspect")
    layers = inspect_engine(trt, logger, data)
    with atomic_path(plan.output) as tmp:
        tmp.write_bytes(data)
    cache_out = _save_timing_cache(config, options.timing_cache)
    record = {
        "tensorrt": trt_version(trt), "gpu": gpu.to_dict(), "hardware_compat": options.hardware_compat,
        "version_compatible": options.version_compatible, "tf32": options.tf32,
        "workspace_gib": options.workspace_gib, "opt_level": options.opt_level,
        "network_flags": ["STRONGLY_TYPED"], "precision": plan.precision,
        "profiles": [{"input": plan.input_name, "min": list(plan.shapes[0]), "opt": list(plan.shapes[1]),
                      "max": list(plan.shapes[2])}],
        "onnx": {"file": plan.model.name, "sha256": plan.onnx_sha256},
        "build_seconds": round(build_seconds, 2), "engine_bytes": len(data), "layers": layers,
        "timing_cache": {"path": str(options.timing_cache), "loaded_bytes": cache_in, "saved_bytes": cache_out}
        if options.timing_cache else None,
    }
    meta = plan.meta or ArtifactMeta(arch="unknown", num_classes=0, input=_unknown_input(plan), weights="unknown")
    manifest = write_manifest(plan.output, meta.with_changes(precision=plan.precision), engine=record)
    return BuildResult(plan.output, manifest, record)


def configure(trt: ModuleType, builder: Any, options: BuildOptions, plan: BuildPlan) -> Any:
    """The builder config: workspace, optimization level, profile, hardware/version compatibility, TF32."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    config.builder_optimization_level = options.opt_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel,
                                                  HARDWARE_COMPAT[options.hardware_compat])
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    profile.set_shape(plan.input_name, *plan.shapes)
    config.add_optimization_profile(profile)
    return config


def describe_parser_error(error: Any) -> str:
    """One line per parser error: node name, op type and TensorRT's description."""
    def call(name: str) -> str:
        member = getattr(error, name, None)
        try:
            return str(member()) if callable(member) else ""
        except Exception:  # the binding may raise for errors not tied to a node
            return ""

    node, op, desc = call("node_name"), call("node_operator"), call("desc")
    where = f"node {node or call('node') or '?'}" + (f" ({op})" if op else "")
    return f"{where}: {desc or 'no description'}"


def _load_timing_cache(trt: ModuleType, config: Any, path: Path | None) -> int:
    if path is None:
        return 0
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        raise ConfigError(f"{path}: timing cache does not fit this TensorRT version or GPU; delete it or pass "
                          "another --timing-cache")
    return len(data)


def _save_timing_cache(config: Any, path: Path | None) -> int:
    if path is None:
        return 0
    data = bytes(config.get_timing_cache().serialize())
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
    return len(data)


def inspect_engine(trt: ModuleType, logger: Any, data: bytes) -> dict[str, Any]:
    """Per-layer summary from the engine inspector: layer count, counts by layer type and by output precision."""
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        return {"error": "the built engine could not be deserialized for inspection"}
    inspector = engine.create_engine_inspector()
    raw = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        layers = json.loads(raw).get("Layers", [])
    except (TypeError, ValueError):
        return {"error": "engine inspector returned no JSON"}
    kinds: Counter[str] = Counter()
    precisions: Counter[str] = Counter()
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        kinds[str(layer.get("LayerType", "unknown"))] += 1
        outputs = layer.get("Outputs") or [{}]
        fmt = str(outputs[0].get("Format/Datatype", "")) if isinstance(outputs[0], dict) else ""
        precisions[next((p for p in ("Int8", "FP16", "FP32", "BF16", "FP8") if p.lower() in fmt.lower()),
                        "other")] += 1
    return {"count": len(layers), "by_type": dict(kinds.most_common()),
            "by_output_precision": dict(precisions.most_common())}


def _unknown_input(plan: BuildPlan):
    from resnest_deploy.models.config import resnest_input

    return resnest_input(plan.shapes[1][2])


# --------------------------------------------------------------------------------------------- emit-script

SCRIPT_NAME = "build.sh"
TOOL_PACKAGES = ("resnest_deploy", "exporters", "calibration")
REQUIREMENTS = ("tensorrt", "torch", "numpy", "onnx", "onnxscript", "onnxruntime-gpu", "typer", "rich", "pillow",
                "safetensors", "matplotlib")


def emit_script(options: BuildOptions, folder: Path) -> Path:
    """Write ``folder`` with the ONNX, the timing cache (if any), this tool's code and ``build.sh``.

    ``build.sh`` refers to everything by paths relative to its own folder, so the folder can be copied to any
    GPU host. It checks for a GPU and the packages, builds the engine with the same options, then verifies it
    against the eager model with ``parity`` (synthetic inputs, or ``DATA=folder``).

    Raises:
        ArtifactError, ConfigError: From :func:`plan_build` (checked here, before any GPU sees it).
        OutputError: ``folder`` cannot be written.
    """
    plan = plan_build(options)
    folder = Path(folder)
    ensure_writable_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_name = plan.model.name
    _copy(plan.model, folder / model_name)
    data_files = _external_data_files(plan.model)
    for extra in data_files:
        _copy(plan.model.parent / extra, folder / extra)
    cache_name = None
    if options.timing_cache:
        cache_name = Path(options.timing_cache).name
        if Path(options.timing_cache).is_file():
            _copy(Path(options.timing_cache), folder / cache_name)
    tool = folder / "tool"
    for package in TOOL_PACKAGES:
        source = Path(__import__(package).__file__).resolve().parent
        target = tool / package
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    engine_name = Path(model_name).with_suffix(ENGINE_SUFFIX).name
    args = ["build", model_name, "--batch", options.batch, "--workspace", f"{options.workspace_gib:g}",
            "--opt-level", str(options.opt_level), "--hardware-compat", options.hardware_compat,
            "--tf32" if options.tf32 else "--no-tf32", "--output", engine_name]
    if options.img_size:
        args += ["--img-size", str(options.img_size)]
    if options.version_compatible:
        args.append("--version-compatible")
    if cache_name:
        args += ["--timing-cache", cache_name]
    checkpoint = plan.meta is not None and plan.meta.weights_sha256
    text = _SCRIPT.format(
        version=__version__, date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), model=model_name,
        sha=plan.onnx_sha256, precision=plan.precision, engine=engine_name,
        build_args=" ".join(shlex.quote(a) for a in args),
        requirements=" ".join(REQUIREMENTS), imports="tensorrt, torch, onnx, typer, rich, PIL, safetensors",
        weights_check=_WEIGHTS_CHECK.format(sha=plan.meta.weights_sha256) if checkpoint else "",
        weights_arg=' ${WEIGHTS:+--weights "$WEIGHTS"}' if checkpoint else "",
        batch=plan.shapes[1][0],
    )
    script = write_text_atomic(folder / SCRIPT_NAME, text)
    script.chmod(0o755)
    write_text_atomic(folder / "build-options.json", json.dumps(
        {"onnx": model_name, "onnx_sha256": plan.onnx_sha256, "precision": plan.precision,
         "profile": [list(s) for s in plan.shapes], "args": args}, indent=2) + "\n")
    return script


def _copy(source: Path, target: Path) -> None:
    if source.resolve() != target.resolve():
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

_SCRIPT = """#!/usr/bin/env bash
# Build and verify the TensorRT engine for {model} ({precision}) on a GPU host.
# Written by resnest-deploy {version} on {date}; ONNX sha256 {sha}.
# Everything is referenced relative to this folder, so the folder can be copied anywhere.
#   bash build.sh                      build {engine}, then check it against the eager model
#   PYTHON=/opt/venv/bin/python bash build.sh      choose the interpreter
#   DATA=/path/to/images bash build.sh             check on real images instead of synthetic inputs
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
PYTHON="${{PYTHON:-python3}}"
export PYTHONPATH="$PWD/tool${{PYTHONPATH:+:$PYTHONPATH}}"
SKIP_PARITY=0

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "error: no NVIDIA GPU or driver on this host (nvidia-smi failed)" >&2
  exit 2
fi
if ! "$PYTHON" -c "import {imports}" 2>/dev/null; then
  echo "error: missing Python packages; install them with:" >&2
  echo "  $PYTHON -m pip install {requirements}" >&2
  exit 2
fi
{weights_check}
"$PYTHON" -m resnest_deploy {build_args}

if [ "$SKIP_PARITY" = 0 ]; then
  "$PYTHON" -m resnest_deploy parity {engine} --batch {batch}{weights_arg} ${{DATA:+--data "$DATA"}} \\
    --report {engine}.parity.json
fi
echo "done: {engine} and {engine}.json"
"""
