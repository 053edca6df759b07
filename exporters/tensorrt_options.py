"""Everything about a TensorRT build that can be settled without TensorRT or a GPU: options, the optimization
profile, the precision the ONNX holds, and the ops TensorRT's parser would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from resnest_deploy.paths import output_file
from resnest_deploy.errors import MAX_BATCH, ArtifactError, ConfigError, check_minimums, check_number
from resnest_deploy.hashing import file_sha256
from resnest_deploy.kinds import Precision, engine_path

from .graph import UNSUPPORTED_BY_TENSORRT, load_onnx, tensor_info
from .graph_index import DEFAULT_DOMAINS, GraphIndex, op_label
from .metadata import ArtifactMeta, read_metadata
from .options import MAX_IMG_SIZE, MIN_IMG_SIZE
from .qdq_rules import has_qdq

MAX_WORKSPACE_GIB = 1024.0  # more memory than any GPU has; a bigger limit is a typo


class HardwareCompat(str, Enum):
    """Which GPUs an engine may run on: ``none`` (the builder's architecture), ``ampere+`` or ``same-cc``."""

    none = "none"
    ampere_plus = "ampere+"
    same_cc = "same-cc"

    @property
    def trt_name(self) -> str:
        """The ``tensorrt.HardwareCompatibilityLevel`` member."""
        return {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}[self.value]


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
        tf32: Allow TF32 for FP32 layers (off by default: TF32 costs about 1e-3 relative error, as much as FP16).
        output: Engine path [default: the ONNX path with ``.engine``].
        device: CUDA device index.
    """

    model: Path
    batch: str = "1:8:32"
    img_size: int | None = None
    workspace_gib: float = 4.0
    opt_level: int = 3
    timing_cache: Path | None = None
    hardware_compat: HardwareCompat = HardwareCompat.none
    version_compatible: bool = False
    tf32: bool = False
    output: Path | None = None
    device: int = 0


@dataclass(frozen=True)
class BuildSpec:
    """Everything settled before TensorRT is touched."""

    model: Path
    output: Path
    meta: ArtifactMeta | None
    precision: str
    input_name: str
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    onnx_sha256: str


@dataclass(frozen=True)
class EngineRecord:
    """What ``build`` records about an engine (the manifest's ``engine`` table), read back by the runner and parity.

    Attributes:
        tensorrt: Version of the TensorRT that built it.
        gpu: The building GPU (name, compute_capability, driver, index).
        hardware_compat: ``none``, ``ampere+`` or ``same-cc``.
        version_compatible: Built with the version-compatibility flag (runs on later runtimes of its major).
        tf32: TF32 allowed in FP32 layers.
        precision: What the ONNX held.
        profiles: Optimization profiles: input name, min/opt/max shapes.
        extra: Everything else recorded (build time, sizes, layers, timing cache), kept as written.
    """

    tensorrt: str = "unknown"
    gpu: dict[str, Any] = field(default_factory=dict)
    hardware_compat: str = HardwareCompat.none.value
    version_compatible: bool = False
    tf32: bool = False
    precision: str = Precision.fp32.value
    profiles: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineRecord:
        """Read a manifest's ``engine`` table; missing fields take their defaults, unknown ones go to ``extra``."""
        known = {"tensorrt", "gpu", "hardware_compat", "version_compatible", "tf32", "precision", "profiles"}
        return cls(str(data.get("tensorrt", "unknown")), dict(data.get("gpu") or {}),
                   str(data.get("hardware_compat", HardwareCompat.none.value)),
                   bool(data.get("version_compatible")), bool(data.get("tf32")),
                   str(data.get("precision", Precision.fp32.value)), tuple(data.get("profiles") or ()),
                   {k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        return {"tensorrt": self.tensorrt, "gpu": dict(self.gpu), "hardware_compat": self.hardware_compat,
                "version_compatible": self.version_compatible, "tf32": self.tf32, **self.extra,
                "precision": self.precision, "profiles": [dict(p) for p in self.profiles]}


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1:8:32"`` -> (1, 8, 32); ``"8"`` -> (8, 8, 8). Requires 1 <= min <= opt <= max."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2] <= MAX_BATCH:
        raise ConfigError(f"--profile takes MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX <= {MAX_BATCH} (or one number), "
                          f"got {text!r}")
    return values[0], values[1], values[2]


def detect_precision(model: onnx.ModelProto, meta: ArtifactMeta | None) -> Precision:
    """The precision an ONNX holds: from its metadata, else Q/DQ nodes (int8) or FP16 weights (fp16)."""
    if meta is not None:
        return Precision(meta.precision)
    if has_qdq(model):
        return Precision.int8
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return Precision.fp16
    return Precision.fp32


def _unsigned_qdq(model: onnx.ModelProto) -> bool:
    """Whether a graph quantizes to unsigned 8-bit (ONNX Runtime's CPU layout, not TensorRT's)."""
    index = GraphIndex(model.graph)
    return any(n.op_type == "QuantizeLinear" and len(n.input) > 2 and (zp := index.const(n.input[2])) is not None
               and zp.dtype == np.uint8 for n in model.graph.node)


def resolve_build(options: BuildOptions) -> BuildSpec:
    """Check the options and the ONNX without TensorRT.

    Raises:
        ArtifactError: Missing/unreadable ONNX, or ops TensorRT's parser does not take (all listed by node).
        ConfigError: Bad batch/profile, size, workspace, optimization level or hardware-compatibility level.
    """
    compat = [c.value for c in HardwareCompat]
    if str(getattr(options.hardware_compat, "value", options.hardware_compat)) not in compat:
        raise ConfigError(f"--hardware-compat must be one of {', '.join(compat)}, got {options.hardware_compat!r}")
    check_minimums(("--opt-level", options.opt_level, 0, 5), ("--device", options.device, 0, 1023),
                   ("--img-size", options.img_size, MIN_IMG_SIZE, MAX_IMG_SIZE))
    check_number("--workspace", options.workspace_gib, 0, MAX_WORKSPACE_GIB, low_open=True)
    batches = parse_batch(options.batch)
    path = Path(options.model)
    model = load_onnx(path, load_external_data=False)
    unsupported = [f"{n.name or '?'} ({op_label(n)})" for n in model.graph.node
                   if n.op_type in UNSUPPORTED_BY_TENSORRT or n.domain not in DEFAULT_DOMAINS]
    if unsupported:
        raise ArtifactError(f"{path.name}: {len(unsupported)} node(s) TensorRT's ONNX parser does not take: "
                            + ", ".join(unsupported[:8]) + (" ..." if len(unsupported) > 8 else ""))
    meta = read_metadata(model, str(path))
    if (meta is not None and meta.target == "cpu") or _unsigned_qdq(model):
        raise ArtifactError(f"{path.name} is an INT8 graph for ONNX Runtime's CPU provider (unsigned activations with "
                            "zero points, which TensorRT's explicit quantization refuses); build from the "
                            "--runtime tensorrt INT8 model instead")
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise ArtifactError(f"{path.name}: expected one image input, found {[v.name for v in inputs]}")
    info = tensor_info(inputs[0])
    if len(info.shape) != 4:
        raise ArtifactError(f"{path.name}: input {info.name} is not [N,C,H,W]: {list(info.shape)}")
    n, c, h, w = info.shape
    if isinstance(n, int) and batches != (n, n, n):
        raise ConfigError(f"{path.name} has a fixed batch of {n}; use --profile {n}")
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
    output = output_file(options.output or engine_path(path), engine_path(path).name)
    return BuildSpec(path, output, meta, detect_precision(model, meta), info.name, shapes,  # type: ignore[arg-type]
                     file_sha256(path))


