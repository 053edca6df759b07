"""What ``quantize`` does: its options and their checks, settled before any slow work (the CLI reads its defaults
from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resnest_deploy.errors import MAX_CALIB, MAX_SAMPLES, ConfigError, check_minimums
from resnest_deploy.exporters.options import MAX_IMG_SIZE, MIN_IMG_SIZE
from resnest_deploy.kinds import Precision, Runtime

from .budget import ACCURACY, AGREEMENT, DEFAULT_MAX_TRIALS, check_limit
from .dataset import DEFAULT_CALIB_SIZE, SYNTHETIC, CalibrationSelection, check_source
from .fp16 import DEFAULT_KEEP_FP32_OPS
from .int8 import Method

QUANTIZED = (Precision.fp16.value, Precision.int8.value)  # what quantize makes from an FP32 graph


HIGH_PRECISIONS = ("fp16", "fp32")  # what INT8 for TensorRT types its float parts as
DEFAULT_HIGH_PRECISION = "fp16"
DEFAULT_METHOD = Method.percentile  # best of the three on the trained test model (docs/quantization.md)


@dataclass(frozen=True)
class QuantizeOptions:
    """What ``quantize`` does.

    Attributes:
        model: The FP32 ONNX file (this tool's export, or any [N,3,H,W] -> [N,classes] classifier with ``arch``).
        precision: ``fp16`` or ``int8``.
        output: Target path (an existing folder: the default name inside it) [default: ``<model>.<precision>.onnx``
            beside the input].
        calib_data: Image folder, list file, or ``synthetic`` (INT8; optional for FP16 verification); or the images
            already chosen by :func:`~resnest_deploy.calibration.dataset.select_calibration`.
        calib_size: Calibration images; all of them, with a warning, when fewer exist.
        method: ``percentile``, ``max`` or ``entropy`` (ONNX Runtime's calibrators).
        exclude: fnmatch patterns of layers/stages kept in float (``layer4.*``, ``*.conv2.fc1``, ``stem``).
        quantize_attention: INT8 for the split-attention/SK/SE fc layers too (float by default).
        keep_fp32_ops: Op types left in FP32 (``Softmax``, ``ReduceMean``, ``Gemm``): in the FP16 graph, and in
            the float parts of an INT8 graph for TensorRT with ``high_precision`` fp16.
        seed: Seed of the image sampling.
        arch: Architecture, for ONNX files without this tool's metadata.
        img_size: Input size, for ONNX files without metadata and a dynamic input size.
        cache_dir: Calibration tensor cache folder; ``use_cache`` turns it off.
        sensitivity: Quantize one block at a time and rank blocks by the error each adds (INT8).
        verify_samples: Images used to compare with the FP32 graph.
        target: INT8 only: ``tensorrt`` (default) or ``cpu`` (ONNX Runtime's CPU provider, docs/quantization.md).
        high_precision: INT8 for TensorRT only: the type of everything outside the Q/DQ pairs, ``fp16`` (None:
            the default) or ``fp32``. TensorRT runs a strongly typed graph as typed.
        accuracy_data: INT8 with a budget: the images the budget is measured on (labelled class-per-subfolder
            tree for ``max_accuracy_drop``; any images for ``min_agreement``).
        max_accuracy_drop: Keep blocks float until top-1 is within this many points of FP32's on
            ``accuracy_data`` (:mod:`~resnest_deploy.calibration.budget`).
        min_agreement: Or until top-1 agrees with FP32 on at least this fraction of ``accuracy_data``.
        class_index: Folder name -> class index file for labelled ``accuracy_data`` (parity's ``--class-index``).
        max_trials: The most mixes the budget search measures.
    """

    model: Path
    precision: Precision | str
    output: Path | None = None
    calib_data: str | CalibrationSelection | None = None
    calib_size: int = DEFAULT_CALIB_SIZE
    method: Method | str = DEFAULT_METHOD
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
    target: Runtime | str = Runtime.tensorrt
    high_precision: str | None = None
    accuracy_data: str | None = None
    max_accuracy_drop: float | None = None
    min_agreement: float | None = None
    class_index: Path | None = None
    max_trials: int = DEFAULT_MAX_TRIALS

    @property
    def budget(self) -> tuple[str, float] | None:
        """(``accuracy`` or ``agreement``, limit) when an accuracy budget is asked for, else None."""
        if self.max_accuracy_drop is not None:
            return ACCURACY, self.max_accuracy_drop
        if self.min_agreement is not None:
            return AGREEMENT, self.min_agreement
        return None

    @property
    def float_type(self) -> str | None:
        """What the float parts of the result are typed as (None for the CPU graph, which ONNX Runtime plans)."""
        if self.precision != Precision.int8:
            return Precision(self.precision).value
        return None if self.target == Runtime.cpu else self.high_precision or DEFAULT_HIGH_PRECISION


def default_output(model: Path, precision: str, target: str = "tensorrt") -> Path:
    """``<stem>.<precision>.onnx`` beside the FP32 file (``<stem>.int8-cpu.onnx`` for the CPU target; a
    ``.fp32``/``.fp16``/``.int8`` stem suffix is dropped)."""
    stem = model.name.removesuffix(".onnx")
    for suffix in (".fp32", ".fp16", ".int8-cpu", ".int8"):
        stem = stem.removesuffix(suffix)
    return model.with_name(f"{stem}.{precision}{'-cpu' if target == Runtime.cpu else ''}.onnx")


def validate_options(options: QuantizeOptions) -> None:
    """Check every option before any work starts (a typo found after calibration wastes minutes).

    Raises:
        ConfigError: The first invalid option or combination.
    """
    methods = [m.value for m in Method]
    if options.precision not in QUANTIZED:
        raise ConfigError(f"unknown precision {options.precision!r}; use {' or '.join(QUANTIZED)}")
    if options.method not in methods:
        raise ConfigError(f"unknown calibration method {options.method!r}; use one of {', '.join(methods)}")
    int8 = options.precision == Precision.int8
    if int8 and not options.calib_data:
        raise ConfigError("INT8 needs --calib-data: a folder or list file of representative images "
                          f"('{SYNTHETIC}' only checks the pipeline)")
    check_minimums(("--calib-size", options.calib_size, 1, MAX_CALIB), ("--seed", options.seed, 0),
                   ("--verify-samples", options.verify_samples, 1, MAX_SAMPLES),
                   ("--img-size", options.img_size, MIN_IMG_SIZE, MAX_IMG_SIZE))
    Runtime.parse(options.target, "--runtime")
    if options.target == Runtime.cpu and not int8:
        raise ConfigError("--runtime cpu makes an INT8 graph for ONNX Runtime's CPU kernels; FP16 on a CPU runs in "
                          "FP32 with Casts, so use --precision int8 (or the FP32 model) for CPU serving")
    if not int8 and (options.sensitivity or options.quantize_attention):
        raise ConfigError("--sensitivity and --quantize-attention apply to --precision int8 only")
    if options.target == Runtime.cpu and (options.sensitivity or options.quantize_attention):
        raise ConfigError("--sensitivity and --quantize-attention apply to --runtime tensorrt (the CPU graph "
                          "quantizes every op ONNX Runtime has an integer kernel for)")
    if options.high_precision is not None:
        if options.high_precision not in HIGH_PRECISIONS:
            raise ConfigError(f"unknown --high-precision {options.high_precision!r}; use {' or '.join(HIGH_PRECISIONS)}")
        if not int8 or options.target == Runtime.cpu:
            raise ConfigError("--high-precision applies to --precision int8 for --runtime tensorrt (the type of the "
                              "graph's float parts around the Q/DQ pairs)")
    if int8 and options.keep_fp32_ops and options.float_type != "fp16":
        raise ConfigError("--keep-fp32 applies to FP16 graphs: --precision fp16, or int8 for TensorRT with "
                          "--high-precision fp16 (INT8 keeps layers out of INT8 with --exclude)")
    if any(not p.strip() for p in (*options.exclude, *options.keep_fp32_ops)):
        raise ConfigError("--exclude and --keep-fp32 take non-empty patterns")
    if options.calib_data and not isinstance(options.calib_data, CalibrationSelection):
        check_source(options.calib_data)
    _validate_budget(options)


def _validate_budget(options: QuantizeOptions) -> None:
    """The accuracy-budget options: one goal, for INT8, with data that exists.

    Raises:
        ConfigError: The first invalid option or combination.
    """
    if options.max_accuracy_drop is not None and options.min_agreement is not None:
        raise ConfigError("give --max-accuracy-drop (labelled data) or --min-agreement (any images), not both")
    budget = options.budget
    if budget is None:
        if options.accuracy_data or options.class_index is not None:
            raise ConfigError("--accuracy-data and --class-index go with --max-accuracy-drop or --min-agreement")
        return
    check_limit(*budget)
    if options.precision != Precision.int8:
        raise ConfigError("an accuracy budget applies to --precision int8 (it chooses which blocks stay float)")
    if not options.accuracy_data:
        raise ConfigError(f"{'--max-accuracy-drop' if budget[0] == ACCURACY else '--min-agreement'} needs "
                          "--accuracy-data DIR: the images the budget is measured on")
    if not Path(options.accuracy_data).is_dir():
        raise ConfigError(f"--accuracy-data {options.accuracy_data}: not a folder of images")
    if options.class_index is not None and budget[0] != ACCURACY:
        raise ConfigError("--class-index maps labels for --max-accuracy-drop; --min-agreement needs no labels")
    check_minimums(("--max-trials", options.max_trials, 1, 10_000))
