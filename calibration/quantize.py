"""``quantize``: FP16-typed or Q/DQ INT8 ONNX from an FP32 export, checked with ONNX Runtime, written atomically.

The result is compared with the FP32 graph on ONNX Runtime's CPU provider (top-1 agreement, cosine, max
relative error on up to ``verify_samples`` images), and INT8 graphs are checked against TensorRT's Q/DQ
placement rules. Parity against the eager model is the ``parity`` command's job.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from exporters.graph import default_opset, fixed_batch, inspect_onnx, load_onnx, tensor_info
from exporters.metadata import ArtifactMeta, library_versions, read_metadata, write_manifest, write_metadata
from exporters.qdq_rules import RuleCheck, check_qdq_rules, has_qdq
from exporters.verify import ort_session, run_batched
from resnest_deploy.atomic import atomic_path, ensure_writable_dir
from resnest_deploy.errors import ConfigError, VerificationError
from resnest_deploy.models import get_config
from resnest_deploy.models.config import resnest_input
from resnest_deploy.stages import stage_durations

from .dataset import DEFAULT_CALIB_SIZE, SYNTHETIC, CalibrationData, load_calibration
from .fp16 import DEFAULT_KEEP_FP32_OPS, convert_fp16
from .int8 import METHODS, Plan, calibrate, insert_qdq, name_nodes, plan_qdq

PRECISIONS = ("fp16", "int8")
DEFAULT_METHOD = "percentile"  # best of the three on the trained test model (docs/quantization.md)
STAGES = ("load", "calibration data", "calibrate", "convert", "verify", "sensitivity", "write")
PhaseFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class QuantizeOptions:
    """What ``quantize`` does.

    Attributes:
        model: The FP32 ONNX file (this tool's export, or any [N,3,H,W] -> [N,classes] classifier with ``arch``).
        precision: ``fp16`` or ``int8``.
        output: Target path [default: ``<model>.<precision>.onnx`` beside the input].
        calib_data: Image folder, list file, or ``synthetic`` (INT8; optional for FP16 verification).
        calib_size: Calibration images; all of them, with a warning, when fewer exist.
        method: ``percentile``, ``max`` or ``entropy`` (ONNX Runtime's calibrators).
        exclude: fnmatch patterns of layers/blocks kept in float (``layer4.*``, ``*.conv2.fc1``, ``stem``).
        quantize_attention: INT8 for the split-attention/SK/SE fc layers too (float by default).
        keep_fp32_ops: FP16 only: op types left in FP32 (``Softmax``, ``ReduceMean``, ``Gemm``).
        seed: Seed of the image sampling.
        arch: Architecture, for ONNX files without this tool's metadata.
        img_size: Input size, for ONNX files without metadata and a dynamic input size.
        cache_dir: Calibration tensor cache folder; ``use_cache`` turns it off.
        sensitivity: Quantize one block at a time and rank blocks by the error each adds (INT8).
        verify_samples: Images used to compare with the FP32 graph.
    """

    model: Path
    precision: str
    output: Path | None = None
    calib_data: str | None = None
    calib_size: int = DEFAULT_CALIB_SIZE
    method: str = DEFAULT_METHOD
    exclude: tuple[str, ...] = ()
    quantize_attention: bool = False
    keep_fp32_ops: tuple[str, ...] = DEFAULT_KEEP_FP32_OPS
    seed: int = 0
    arch: str | None = None
    img_size: int | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    sensitivity: bool = False
    verify_samples: int = 64


@dataclass(frozen=True)
class Agreement:
    """The quantized graph against the FP32 graph on the same images (ONNX Runtime CPU)."""

    samples: int
    top1_agreement: float
    mean_cosine: float
    min_cosine: float
    max_abs_rel: float

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BlockSensitivity:
    block: str
    sites: int
    error: float  # 1 - mean cosine vs FP32 with only this block quantized
    top1_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class QuantizeResult:
    path: Path
    manifest: Path
    meta: ArtifactMeta
    agreement: Agreement
    rules: list[RuleCheck] = field(default_factory=list)
    calibration: CalibrationData | None = None
    plan: Plan | None = None
    sensitivity: list[BlockSensitivity] = field(default_factory=list)
    suggested_exclude: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def default_output(model: Path, precision: str) -> Path:
    stem = model.name.removesuffix(".onnx")
    for suffix in (".fp32", ".fp16", ".int8"):
        stem = stem.removesuffix(suffix)
    return model.with_name(f"{stem}.{precision}.onnx")


def resolve_meta(model: onnx.ModelProto, path: Path, arch: str | None, img_size: int | None) -> ArtifactMeta:
    """The artifact's metadata, or metadata made from ``arch``/``img_size`` for a foreign FP32 ONNX.

    Raises:
        ConfigError: No metadata and no ``arch``; or a dynamic input size with no ``img_size``.
    """
    meta = read_metadata(model)
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
    inputs = resnest_input(size) if cfg.input.resize_mode == "crop_then_resize" else replace(cfg.input, size=size)
    batch = shape[0] if shape and isinstance(shape[0], int) else "dynamic"
    return ArtifactMeta(arch=arch, num_classes=classes, input=inputs, weights="unknown (ONNX without metadata)",
                        opset=default_opset(model),
                        batch=str(batch))


def _check_float(model: onnx.ModelProto, meta: ArtifactMeta, path: Path) -> None:
    if meta.precision != "fp32" or has_qdq(model):
        raise ConfigError(f"{path.name} is already {meta.precision if meta.precision != 'fp32' else 'quantized'}; "
                          "quantize the FP32 export")
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        raise ConfigError(f"{path.name} already holds FP16 weights; quantize the FP32 export")


def quantize_onnx(options: QuantizeOptions, *, progress: PhaseFn | None = None) -> QuantizeResult:
    """Make the FP16 or INT8 version of an FP32 ONNX file; see :class:`QuantizeOptions`.

    Raises:
        ArtifactError: The model is missing or not ONNX.
        ConfigError: Bad options, no metadata and no ``arch``, a non-FP32 input, missing/empty/unreadable
            calibration data, unwritable output.
        VerificationError: The result breaks TensorRT's Q/DQ rules or is not finite (nothing is written).
    """
    report = progress or (lambda *_: None)
    starts: dict[str, float] = {}

    def stage(name: str, done: int = 0, total: int = 1) -> None:
        starts.setdefault(name, time.perf_counter())
        report(name, done, total)

    if options.precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {options.precision!r}; use fp16 or int8")
    if options.method not in METHODS:
        raise ConfigError(f"unknown calibration method {options.method!r}; use one of {', '.join(METHODS)}")
    if options.precision == "int8" and not options.calib_data:
        raise ConfigError("INT8 needs --calib-data: a folder or list file of representative images "
                          f"('{SYNTHETIC}' only checks the pipeline)")
    stage("load")
    path = Path(options.model)
    model = load_onnx(path)
    meta = resolve_meta(model, path, options.arch, options.img_size)
    _check_float(model, meta, path)
    name_nodes(model)
    output = Path(options.output) if options.output else default_output(path, options.precision)
    if output.is_dir():
        output = output / default_output(path, options.precision).name
    if output.resolve() == path.resolve():
        raise ConfigError(f"--output {output} would overwrite the input model")
    ensure_writable_dir(output.parent)

    warnings: list[str] = []
    calib = None
    if options.calib_data:
        stage("calibration data")
        calib = load_calibration(options.calib_data, meta.input, count=options.calib_size, seed=options.seed,
                                 cache_dir=options.cache_dir, use_cache=options.use_cache,
                                 progress=lambda d, t: stage("calibration data", d, t))
        warnings += calib.warnings
    verify_x = (calib.array if calib is not None else
                load_calibration(SYNTHETIC, meta.input, count=16, seed=options.seed).array)[: options.verify_samples]

    plan = None
    sensitivity: list[BlockSensitivity] = []
    suggestions: list[str] = []
    record: dict[str, Any] = {"precision": options.precision}
    if options.precision == "fp16":
        stage("convert")
        result = convert_fp16(model, keep_fp32_ops=options.keep_fp32_ops, exclude=options.exclude)
        record.update(converter="onnxruntime.transformers.float16", keep_fp32_ops=list(options.keep_fp32_ops),
                      exclude=list(options.exclude))
    else:
        assert calib is not None
        plan = plan_qdq(model, exclude=options.exclude, quantize_attention=options.quantize_attention)
        if not plan.uses:
            raise ConfigError("every layer is excluded; nothing to quantize")
        stage("calibrate")
        wanted = plan_qdq(model, quantize_attention=True).activation_tensors if options.sensitivity \
            else plan.activation_tensors
        amax = calibrate(model, wanted, calib.array, method=options.method,
                         progress=lambda d, t: stage("calibrate", d, t))
        stage("convert")
        result = insert_qdq(model, plan, amax)
        if options.sensitivity:
            sensitivity, suggestions = block_sensitivity(
                model, plan, amax, verify_x[:32], progress=lambda d, t: stage("sensitivity", d, t))
        record.update(method=options.method, calibrator=f"onnxruntime.quantization ({options.method})",
                      calibration=calib.record(), exclude=list(options.exclude),
                      quantize_attention=options.quantize_attention,
                      quantized_layers=sum(1 for u in plan.uses if u.kind == "weight"),
                      float_layers=sorted({u.owner for u in plan.excluded if u.kind == "weight"}))
    if calib is not None and "calibration" not in record:
        record["verification_data"] = calib.record()

    stage("verify")
    agreement = compare_graphs(model, result, verify_x)
    record["vs_fp32"] = agreement.to_dict()
    rules = check_qdq_rules(result) if options.precision == "int8" else []
    problems = [f"{r.name}: {r.detail}" for r in rules if not r.passed]
    if not np.isfinite(agreement.max_abs_rel):
        problems.append("the quantized graph produces non-finite logits")
    if problems:
        raise VerificationError(f"the {options.precision} graph failed its checks", details=problems)

    stage("write")
    new_meta = meta.with_changes(precision=options.precision,
                                 versions={**meta.versions, **library_versions("onnxruntime")},
                                 extra={**meta.extra, "quantization": record})
    write_metadata(result, new_meta)
    result.producer_name = "resnest-deploy"
    with atomic_path(output) as tmp:
        onnx.save_model(result, str(tmp))
        contract = inspect_onnx(tmp, model=result)
        if not contract.ok:
            raise VerificationError(f"the {options.precision} graph breaks the graph contract",
                                    details=[f"{c.name}: {c.detail}" for c in contract.failures])
    timings = stage_durations(starts)
    manifest = write_manifest(
        output, new_meta, source={"file": path.name}, rules=[r.__dict__ for r in rules],
        checks=[c.__dict__ for c in contract.checks], sensitivity=[s.to_dict() for s in sensitivity],
        suggested_exclude=suggestions, warnings=warnings,
        timings_s=timings,
    )
    return QuantizeResult(output, manifest, new_meta, agreement, rules, calib, plan, sensitivity, suggestions,
                          warnings, timings)


def compare_graphs(reference: onnx.ModelProto, candidate: onnx.ModelProto, x: np.ndarray) -> Agreement:
    """Run both graphs on ``x`` with ONNX Runtime (CPU) and compare their logits."""
    ref = _run(reference, x)
    out = _run(candidate, x)
    return _agreement(ref, out)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort_session(model)
    name = session.get_inputs()[0].name
    return run_batched(lambda a: session.run(None, {name: a})[0], x, fixed=fixed_batch(model),
                       step=16).astype(np.float64)


def _agreement(ref: np.ndarray, out: np.ndarray) -> Agreement:
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.where(norms > 0, (ref * out).sum(1) / np.maximum(norms, 1e-30), 1.0)
    scale = max(float(np.abs(ref).max()), 1e-12)
    return Agreement(len(ref), float(np.mean(ref.argmax(1) == out.argmax(1))), float(cos.mean()), float(cos.min()),
                     float(np.abs(out - ref).max() / scale))


def block_sensitivity(
    model: onnx.ModelProto, plan: Plan, amax: dict[str, float], x: np.ndarray,
    *, progress: Callable[[int, int], None] | None = None,
) -> tuple[list[BlockSensitivity], list[str]]:
    """Quantize one block at a time; rank blocks by the error (1 - mean cosine vs FP32) each adds alone.

    Returns the ranking (worst first) and suggested ``--exclude`` patterns: blocks whose error is at least
    three times the median block's and among the three worst.
    """
    ref = _run(model, x)
    blocks = plan.blocks()
    ranking = []
    for i, block in enumerate(blocks):
        sub = plan.only([block])
        out = _run(insert_qdq(model, sub, amax), x)
        agreement = _agreement(ref, out)
        ranking.append(BlockSensitivity(block, len(sub.uses), max(0.0, 1.0 - agreement.mean_cosine),
                                        agreement.top1_agreement))
        if progress:
            progress(i + 1, len(blocks))
    ranking.sort(key=lambda s: s.error, reverse=True)
    median = statistics.median(s.error for s in ranking) if ranking else 0.0
    suggestions = [s.block if s.block in ("stem", "fc") else f"{s.block}.*"
                   for s in ranking[:3] if s.error > 0 and s.error >= 3 * median]
    return ranking, suggestions
