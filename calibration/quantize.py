"""``quantize``: FP16-typed or Q/DQ INT8 ONNX from an FP32 export, checked with ONNX Runtime, written atomically.

Stages (each reported to the progress callback as it starts): ``load``, ``calibration data``, ``calibrate``
(INT8), ``convert``, ``sensitivity`` (INT8, on request), ``verify``, ``write``. The result is compared with the
FP32 graph on ONNX Runtime's CPU provider (the metrics of :mod:`resnest_deploy.metrics` on up to
``verify_samples`` images), and INT8 graphs are checked against TensorRT's Q/DQ placement rules. Parity against
the eager model is the ``parity`` command's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from resnest_deploy import interrupts
from resnest_deploy.atomic import atomic_paths
from resnest_deploy.checks import Check, failures
from resnest_deploy.errors import ArtifactError, BudgetNotMetError, ConfigError, VerificationError
from resnest_deploy.exporters.graph import check_fits, inspect_onnx, load_onnx, tensor_info
from resnest_deploy.exporters.graph_index import default_opset, name_nodes
from resnest_deploy.exporters.metadata import ArtifactMeta, manifest_path, manifest_text, read_metadata, write_metadata
from resnest_deploy.exporters.qdq_rules import check_cpu_qdq, check_float_type, check_qdq_rules, has_qdq
from resnest_deploy.kinds import Precision, Runtime
from resnest_deploy.metrics import ParityMetrics
from resnest_deploy.models import get_config
from resnest_deploy.paths import check_output, output_file, real_path
from resnest_deploy.progress import ProgressFn, ignore
from resnest_deploy.stages import stage_durations
from resnest_deploy.versions import library_versions

from .accuracy import AccuracyData, load_accuracy_data
from .budgeted import BudgetOutcome, run_budget
from .cpu_int8 import prepare_cpu
from .dataset import SYNTHETIC, CalibrationData, load_calibration
from .fp16 import convert_fp16, fp16_around_qdq
from .int8 import Method, QdqPlacement, calibrate, insert_qdq, place_qdq
from .layers import LayerMap, layer_map
from .options import QuantizeOptions, default_output, validate_options
from .sensitivity import BlockSensitivity, block_sensitivity, compare_graphs


@dataclass
class QuantizeResult:
    """A written FP16/INT8 file and everything checked on the way (see :func:`quantize_onnx`)."""

    path: Path
    manifest: Path
    meta: ArtifactMeta
    agreement: ParityMetrics
    rules: list[Check] = field(default_factory=list)
    calibration: CalibrationData | None = None
    placement: QdqPlacement | None = None
    sensitivity: list[BlockSensitivity] = field(default_factory=list)
    suggested_exclude: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    budget: dict[str, Any] | None = None


@dataclass
class _Source:
    """The loaded FP32 graph and what is known about it."""

    path: Path
    model: onnx.ModelProto
    meta: ArtifactMeta
    layers: LayerMap
    output: Path


@dataclass
class _Converted:
    """A converted graph and what went into it."""

    model: onnx.ModelProto
    record: dict[str, Any]
    placement: QdqPlacement | None = None
    sensitivity: list[BlockSensitivity] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    budget: BudgetOutcome | None = None


def resolve_meta(model: onnx.ModelProto, path: Path, arch: str | None, img_size: int | None) -> ArtifactMeta:
    """The artifact's metadata, or metadata made from ``arch``/``img_size`` for a foreign FP32 ONNX.

    Raises:
        ConfigError: No metadata and no ``arch``; or a dynamic input size with no ``img_size``.
        ArtifactError: Damaged metadata.
    """
    meta = read_metadata(model, path.name)
    if meta is not None:
        if arch and arch != meta.arch:
            raise ConfigError(f"{path.name} was exported from {meta.arch}, not {arch}")
        return meta
    if not arch:
        raise ConfigError(f"{path.name} has no resnest-deploy metadata: give --arch (and --img-size) so the "
                          "calibration images get the right preprocessing")
    cfg = get_config(arch)
    shape = tensor_info(model.graph.input[0]).shape
    static = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else None
    size = img_size or static
    if size is None:
        raise ConfigError(f"{path.name} has a dynamic input size and no metadata: give --img-size")
    if static is not None and size != static:
        raise ConfigError(f"{path.name} takes {static}px inputs, not --img-size {size}")
    out_shape = tensor_info(model.graph.output[0]).shape
    classes = out_shape[1] if len(out_shape) == 2 and isinstance(out_shape[1], int) else cfg.num_classes
    batch = shape[0] if shape and isinstance(shape[0], int) else "dynamic"
    return ArtifactMeta(arch=arch, num_classes=classes, input=cfg.input.at_size(size),
                        weights="unknown (ONNX without metadata)", opset=default_opset(model), batch=str(batch))


def quantize_onnx(options: QuantizeOptions, *, progress: ProgressFn | None = None) -> QuantizeResult:
    """Make the FP16 or INT8 version of an FP32 ONNX file; see :class:`QuantizeOptions`.

    Raises:
        ArtifactError: The model is missing, not ONNX, or its metadata is damaged.
        ConfigError: Bad options, no metadata and no ``arch``, a non-FP32 input, missing/empty/unreadable
            calibration data, patterns that match nothing, unwritable output.
        VerificationError: The result breaks TensorRT's Q/DQ rules or is not finite (nothing is written).
    """
    validate_options(options)
    report = progress or ignore
    starts: dict[str, float] = {}

    def stage(name: str, done: int = 0, total: int | None = 1) -> None:
        key = name.split(" (", 1)[0]  # "accuracy budget (best ...)" is timed as "accuracy budget"
        if key not in starts:
            starts[key] = time.perf_counter()
            interrupts.set_stage(f"quantize: {key}")
        report(name, done, total)

    stage("load")
    source = _load(options)
    accuracy = _accuracy_data(options, source, stage)
    with interrupts.producing(source.output), interrupts.stage("quantize"):
        calib, verify_x = _calibration_data(options, source.meta, stage)
        if options.precision == Precision.fp16:
            stage("convert")
            converted = _to_fp16(options, source)
        elif options.target == Runtime.cpu:
            converted = _to_cpu_int8(options, source, calib, stage, accuracy)
        else:
            converted = _to_int8(options, source, calib, verify_x, stage, accuracy)
        if converted.budget is not None and not converted.budget.met:
            source = _over_budget(source)
        if calib is not None and "calibration" not in converted.record:
            converted.record["verification_data"] = calib.record()
        stage("verify")
        target = Runtime(options.target).value
        agreement, rules = _verify(source.model, converted.model, verify_x, options, target)
        converted.record["vs_fp32"] = agreement.to_dict()
        stage("write")
        warnings = calib.warnings if calib is not None else []
        timings: dict[str, float] = {}

        def describe(meta: ArtifactMeta, contract: tuple[Check, ...]) -> str:
            timings.update(stage_durations(starts))
            return manifest_text(
                source.output, meta, source={"file": source.path.name}, rules=[r.to_dict() for r in rules],
                checks=[c.to_dict() for c in contract], sensitivity=[s.to_dict() for s in converted.sensitivity],
                suggested_exclude=converted.suggestions, warnings=warnings, timings_s=timings)

        new_meta = _write(converted, source, Precision(options.precision).value, target, describe)
    budget = converted.budget.record if converted.budget is not None else None
    if converted.budget is not None and not converted.budget.met:
        raise _not_met(converted.budget, source.output)
    return QuantizeResult(source.output, manifest_path(source.output), new_meta, agreement, rules, calib,
                          converted.placement, converted.sensitivity, converted.suggestions, warnings, timings,
                          budget)


def _accuracy_data(options: QuantizeOptions, source: _Source, stage: ProgressFn) -> AccuracyData | None:
    """The accuracy-budget images, read before any calibration (too few to resolve the budget is an error)."""
    if options.budget is None or options.accuracy_data is None:
        return None
    stage("accuracy data")
    kind, limit = options.budget
    return load_accuracy_data(options.accuracy_data, source.meta.input, kind=kind, limit=limit,
                              num_classes=source.meta.num_classes, class_index=options.class_index, progress=stage)


def _search(options: QuantizeOptions, source: _Source, build: Callable[[tuple[str, ...]], onnx.ModelProto],
            blocks: list[str], accuracy: AccuracyData, stage: ProgressFn) -> BudgetOutcome:
    stage("accuracy budget", 0, options.max_trials)
    assert options.budget is not None
    kind, limit = options.budget
    return run_budget(source.model, build, blocks, accuracy, kind=kind, limit=limit,
                      target=Runtime(options.target).value, max_trials=options.max_trials, progress=stage)


def _over_budget(source: _Source) -> _Source:
    """The source with its output renamed ``<name>.over-budget.onnx``: the best mix found is kept, under a name no
    one takes for a graph that met its budget."""
    name = source.output.name.removesuffix(".onnx") + ".over-budget.onnx"
    output = source.output.with_name(name)
    check_output(output)
    check_output(manifest_path(output))
    return replace(source, output=output)


def _not_met(outcome: BudgetOutcome, path: Path) -> BudgetNotMetError:
    record = outcome.record
    best = record["int8"]
    kept = best["kept_float"]
    reason = {"max-trials": f"--max-trials {record['max_trials']} reached",
              "exhausted": "every block but one kept float"}.get(outcome.result.stop, outcome.result.stop)
    return BudgetNotMetError(
        f"no mix meets the budget ({record['goal']['description']}): the best found scores {best['score']:.2f}% "
        f"with {len(kept)} block(s) float ({reason}); wrote it as {path}", path=str(path))


def _load(options: QuantizeOptions) -> _Source:
    """Read the FP32 graph and its metadata; settle the output path."""
    path = Path(options.model)
    model = load_onnx(path)
    meta = resolve_meta(model, path, options.arch, options.img_size)
    if meta.precision != "fp32" or has_qdq(model):
        raise ConfigError(f"{path.name} is already {meta.precision if meta.precision != 'fp32' else 'quantized'}; "
                          "quantize the FP32 export")
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        raise ConfigError(f"{path.name} already holds FP16 weights; quantize the FP32 export")
    _check_source(model, path, meta)
    name_nodes(model)
    default = default_output(path, Precision(options.precision).value, Runtime(options.target).value)
    output = output_file(options.output or default, default.name)
    check_output(output)
    if real_path(output) == real_path(path):
        raise ConfigError(f"--output {output} would overwrite the input model")
    check_output(manifest_path(output))
    return _Source(path, model, meta, layer_map(model, get_config(meta.arch).stage_names()), output)


def _check_source(model: onnx.ModelProto, path: Path, meta: ArtifactMeta) -> None:
    """Before any calibration: the graph fits what ``--arch`` promises and meets the graph contract its FP16/INT8
    version will be held to (a graph from another exporter often does not: Shape/Gather chains, unfolded
    BatchNorm).

    Raises:
        ConfigError: Inputs or outputs do not fit the architecture.
        ArtifactError: The graph breaks the contract (the first failed line named).
    """
    check_fits(model, num_classes=meta.num_classes, size=meta.input.size, what=f"{meta.arch} (for {path.name})")
    report = inspect_onnx(path, model=model, full_check=False)
    if not report.ok:
        first = report.failures[0]
        raise ArtifactError(f"{path.name} breaks {len(report.failures)} line(s) of the graph contract, which its "
                            f"quantized version would break too; first: {first.name} ({first.detail}); quantize a "
                            "graph made by resnest-deploy export")


def _calibration_data(options: QuantizeOptions, meta: ArtifactMeta,
                      stage: ProgressFn) -> tuple[CalibrationData | None, np.ndarray]:
    """The calibration images (if any), and the images the result is verified on."""
    calib = None
    if options.calib_data:
        stage("calibration data")
        calib = load_calibration(options.calib_data, meta.input, count=options.calib_size, seed=options.seed,
                                 cache_dir=options.cache_dir, use_cache=options.use_cache,
                                 progress=stage)
    source = calib.array if calib is not None else \
        load_calibration(SYNTHETIC, meta.input, count=16, seed=options.seed).array
    return calib, source[: options.verify_samples]


def _to_fp16(options: QuantizeOptions, source: _Source) -> _Converted:
    model = convert_fp16(source.model, source.layers.stage_names, keep_fp32_ops=options.keep_fp32_ops,
                         exclude=options.exclude)
    record = {"precision": "fp16", "converter": "onnxruntime.transformers.float16",
              "keep_fp32_ops": list(options.keep_fp32_ops), "exclude": list(options.exclude)}
    return _Converted(model, record)


def _to_int8(options: QuantizeOptions, source: _Source, calib: CalibrationData | None, verify_x: np.ndarray,
             stage: ProgressFn, accuracy: AccuracyData | None = None) -> _Converted:
    assert calib is not None  # validate_options demands calibration data for INT8
    source.layers.check_patterns(options.exclude, "--exclude", extra=_residual_names(source))
    placement = place_qdq(source.model, source.layers, exclude=options.exclude,
                          quantize_attention=options.quantize_attention)
    if not placement.uses:
        raise ConfigError("every layer is excluded; nothing to quantize")
    stage("calibrate")
    wanted = place_qdq(source.model, source.layers, quantize_attention=True).activation_tensors \
        if options.sensitivity else placement.activation_tensors
    amax = calibrate(source.model, wanted, calib.array, method=Method(options.method).value,
                     progress=stage)
    interrupts.check()
    high = options.float_type
    blocks = placement.blocks()

    def plan_for(kept: tuple[str, ...]) -> QdqPlacement:
        return placement.only([b for b in blocks if b not in kept]) if kept else placement

    def build(kept: tuple[str, ...]) -> onnx.ModelProto:
        model = insert_qdq(source.model, plan_for(kept), amax, fp16_scales=high == "fp16")
        return fp16_around_qdq(model, source.layers.stage_names, keep_fp32_ops=options.keep_fp32_ops) \
            if high == "fp16" else model

    outcome = _search(options, source, build, blocks, accuracy, stage) if accuracy is not None else None
    stage("convert")
    chosen = plan_for(outcome.result.chosen.kept) if outcome is not None else placement
    converted = _Converted(outcome.model if outcome is not None else build(()), {}, chosen, budget=outcome)
    if options.sensitivity:
        converted.sensitivity, converted.suggestions = block_sensitivity(
            source.model, placement, amax, verify_x[:32], progress=stage)
    method = Method(options.method).value
    quantized = {u.owner for u in chosen.uses if u.kind == "weight"}
    converted.record = {
        "precision": "int8", "method": method, "calibrator": f"onnxruntime.quantization ({method})",
        "calibration": calib.record(), "exclude": list(options.exclude),
        "quantize_attention": options.quantize_attention, "high_precision": high,
        "keep_fp32_ops": list(options.keep_fp32_ops),
        "quantized_layers": len(quantized),
        "float_layers": sorted({u.owner for u in placement.excluded if u.kind == "weight"}
                               | {u.owner for u in placement.uses if u.kind == "weight"} - quantized),
        **({"accuracy_budget": outcome.record} if outcome is not None else {}),
    }
    return converted


def _to_cpu_int8(options: QuantizeOptions, source: _Source, calib: CalibrationData | None,
                 stage: ProgressFn, accuracy: AccuracyData | None = None) -> _Converted:
    assert calib is not None  # validate_options demands calibration data for INT8
    stage("calibrate")
    method = Method(options.method).value
    quantizer = prepare_cpu(source.model, calib.array, method=method, stage_names=source.layers.stage_names,
                            exclude=options.exclude, progress=stage)
    interrupts.check()
    outcome = _search(options, source, quantizer.build, quantizer.blocks(), accuracy, stage) \
        if accuracy is not None else None
    stage("convert")
    model = outcome.model if outcome is not None else quantizer.build()
    record = {"precision": "int8", "target": "cpu", "method": method, "format": "QDQ U8S8, per-channel weights",
              "quantizer": "onnxruntime.quantization.quantize_static (ranges from this tool's calibration)",
              "calibration": calib.record(), "exclude": list(options.exclude),
              **({"accuracy_budget": outcome.record} if outcome is not None else {})}
    return _Converted(model, record, budget=outcome)


def _residual_names(source: _Source) -> list[str]:
    """``<stage>.residual`` for every stage: the names INT8's residual sites answer to in ``--exclude``."""
    return [f"{stage}.residual" for stage in source.layers.stage_names]


def _verify(reference: onnx.ModelProto, result: onnx.ModelProto, x: np.ndarray, options: QuantizeOptions,
            target: str) -> tuple[ParityMetrics, list[Check]]:
    """Agreement with the FP32 graph, the INT8 target's Q/DQ rules and the type of the float parts; raise when
    the result is unusable."""
    precision = Precision(options.precision).value
    agreement = compare_graphs(reference, result, x)
    rules = [] if precision != Precision.int8 else check_cpu_qdq(result) if target == Runtime.cpu else \
        [*check_qdq_rules(result), check_float_type(result, options.float_type or "fp32", options.keep_fp32_ops)]
    problems = [f"{r.name}: {r.detail}" for r in failures(rules)]
    if not np.isfinite(agreement.max_abs_rel):
        problems.append("the quantized graph produces non-finite logits")
    if problems:
        raise VerificationError(f"the {precision} graph failed its checks", details=problems)
    return agreement, rules


def _write(converted: _Converted, source: _Source, precision: str, target: str,
           describe: Callable[[ArtifactMeta, tuple[Check, ...]], str]) -> ArtifactMeta:
    """Store the metadata, check the graph contract on the saved file, and rename it and its manifest
    (``describe``'s text) into place together."""
    meta = source.meta
    new_meta = meta.with_changes(precision=precision, versions={**meta.versions, **library_versions()},
                                 extra={**meta.extra, "quantization": converted.record}, target=target)
    result = converted.model
    write_metadata(result, new_meta)
    result.producer_name = "resnest-deploy"
    with atomic_paths(source.output, manifest_path(source.output)) as (tmp, tmp_manifest):
        onnx.save_model(result, str(tmp))
        contract = inspect_onnx(tmp, model=result)
        if not contract.ok:
            raise VerificationError(f"the {precision} graph breaks the graph contract",
                                    details=[f"{c.name}: {c.detail}" for c in contract.failures])
        tmp_manifest.write_text(describe(new_meta, contract.checks), encoding="utf-8")
    return new_meta


