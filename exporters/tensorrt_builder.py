"""``build``: a TensorRT engine from an FP32, FP16-typed or Q/DQ INT8 ONNX, for TensorRT 10.x and 11.x alike.

There are no precision flags: the precision is what the ONNX holds. The network is always created with
``STRONGLY_TYPED`` (required for that on 10.x; present and implied on 11.x), so one code path serves both.
Everything that can be checked without a GPU (options, ops TensorRT cannot take, profiles against the graph)
is checked before ``tensorrt`` is imported; ``tensorrt`` is imported only after a CUDA device is found.

Without a GPU, :func:`resnest_deploy.exporters.build_script.emit_script` writes a folder that builds and verifies
the engine on a GPU host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from resnest_deploy.atomic import atomic_paths, write_bytes_atomic
from resnest_deploy.errors import ConfigError, EngineBuildError
from resnest_deploy.paths import check_output
from resnest_deploy.progress import ProgressFn, ignore
from resnest_deploy.models.config import resnest_input

from .metadata import ArtifactMeta, manifest_path, manifest_text
from .tensorrt_env import check_builder_gpu, import_tensorrt, trt_version
from .tensorrt_inspect import inspect_engine
from .tensorrt_options import BuildOptions, BuildSpec, EngineRecord, HardwareCompat, resolve_build

BUILD_STAGES = ("import tensorrt", "parse", "build", "inspect")


@dataclass
class BuildResult:
    """A built engine: its file, its manifest and the manifest's ``engine`` record."""

    path: Path
    manifest: Path
    record: EngineRecord


def build_engine(options: BuildOptions, *, progress: ProgressFn | None = None) -> BuildResult:
    """Build and serialize an engine; write it and its manifest atomically (and the timing cache, if given).

    Raises:
        ArtifactError, ConfigError: From :func:`resolve_build`.
        GpuUnavailableError: No CUDA device (TensorRT is not imported).
        EngineBuildError: The parser rejected the graph (errors listed with node names and op types), or the
            build failed.
        OutputError: The output folder cannot be written.
    """
    report = progress or ignore

    def stage(name: str) -> None:  # each of BUILD_STAGES as it starts
        report(name, BUILD_STAGES.index(name), len(BUILD_STAGES))

    spec = resolve_build(options)
    for path in (spec.output, manifest_path(spec.output), *([options.timing_cache] if options.timing_cache else [])):
        check_output(path)
    stage("import tensorrt")
    trt, gpu = import_tensorrt("building a TensorRT engine", options.device)  # device N is current from here
    check_builder_gpu(HardwareCompat(options.hardware_compat).value, gpu)
    started = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    stage("parse")
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.model)):
        errors = [describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {spec.model.name}", details=errors)
    config = configure(trt, builder, options, spec)
    cache_in = _load_timing_cache(config, options.timing_cache)
    stage("build")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build {spec.model.name} (see the messages above)")
    data = bytes(serialized)
    build_seconds = time.perf_counter() - started
    stage("inspect")
    layers = inspect_engine(trt, logger, data, spec.input_name, spec.shapes[1],
                            version_compatible=options.version_compatible)
    cache_out = _save_timing_cache(config, options.timing_cache)
    record = EngineRecord(
        trt_version(trt), gpu.to_dict(), HardwareCompat(options.hardware_compat).value, options.version_compatible,
        options.tf32, spec.precision.value, ({"input": spec.input_name, "min": list(spec.shapes[0]),
                                              "opt": list(spec.shapes[1]), "max": list(spec.shapes[2])},),
        {"workspace_gib": options.workspace_gib, "opt_level": options.opt_level, "network_flags": ["STRONGLY_TYPED"],
         "onnx": {"file": spec.model.name, "sha256": spec.onnx_sha256}, "build_seconds": round(build_seconds, 2),
         "engine_bytes": len(data), "layers": layers,
         "timing_cache": {"path": str(options.timing_cache), "loaded_bytes": cache_in, "saved_bytes": cache_out}
         if options.timing_cache else None})
    _write(spec, data, record)
    return BuildResult(spec.output, manifest_path(spec.output), record)


def _write(spec: BuildSpec, data: bytes, record: EngineRecord) -> None:
    """The engine and its manifest, renamed into place together."""
    meta = spec.meta or ArtifactMeta(arch="unknown", num_classes=0, input=_unknown_input(spec), weights="unknown")
    text = manifest_text(spec.output, meta.with_changes(precision=spec.precision.value), engine=record.to_dict())
    with atomic_paths(spec.output, manifest_path(spec.output)) as (plan_tmp, manifest_tmp):
        plan_tmp.write_bytes(data)
        manifest_tmp.write_text(text, encoding="utf-8")


def configure(trt: ModuleType, builder: Any, options: BuildOptions, spec: BuildSpec) -> Any:
    """The builder config: workspace, optimization level, profile, hardware/version compatibility, TF32."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    config.builder_optimization_level = options.opt_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel,
                                                  HardwareCompat(options.hardware_compat).trt_name)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    profile.set_shape(spec.input_name, *spec.shapes)
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


def _load_timing_cache(config: Any, path: Path | None) -> int:
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
    write_bytes_atomic(path, data)
    return len(data)


def _unknown_input(spec: BuildSpec):
    return resnest_input(spec.shapes[1][2])


