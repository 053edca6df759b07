"""Reading ONNX files and checking them against the graph contract that TensorRT and ONNX Runtime both take.

The contract (checked on every export, shown by ``resnest-deploy inspect``): one float32 input ``input``
[N,3,H,W] and one float32 output ``logits`` [N,classes]; opset >= 13; rSoftMax as Reshape -> Transpose ->
Softmax(axis=1) -> Reshape; no Shape, Gather, Concat, Expand or ScatterND nodes; no BatchNormalization;
constants folded; no batch size baked into a Reshape; the full ONNX checker passes; external data only above
2 GB; only operators TensorRT's ONNX parser takes.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import numpy_helper

from resnest_deploy.checks import Check, failures
from resnest_deploy.errors import ArtifactError, ConfigError
from resnest_deploy.kinds import is_engine
from resnest_deploy.paths import existing_file

from .graph_index import DEFAULT_DOMAINS, GraphIndex, attr, default_opset, op_label
from .metadata import ArtifactMeta, meta_from_manifest, read_manifest, read_metadata
from .qdq_rules import check_cpu_qdq, check_float_type, check_qdq_rules, float_types, has_qdq

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MIN_OPSET = 13
DEFAULT_OPSET = 18
TWO_GB = 2 * 1024**3
FORBIDDEN_OPS = ("Shape", "Gather", "Concat", "Expand", "ScatterND")
# Operators TensorRT's ONNX parser rejects (onnx-tensorrt operator support matrix, TensorRT 10): mostly
# sequence, string, training and ONNX Runtime's integer "QOperator" ops. Non-default domains are rejected too.
UNSUPPORTED_BY_TENSORRT = frozenset({
    "Compress", "ConcatFromSequence", "ConvInteger", "Det", "DynamicQuantizeLinear", "MatMulInteger",
    "MaxRoiPool", "MaxUnpool", "Multinomial", "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement",
    "OptionalHasElement", "QLinearAdd", "QLinearConv", "QLinearMatMul", "QLinearMul", "SequenceAt",
    "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
    "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer", "StringSplit",
    "TfIdfVectorizer", "Unique",
})
# Nodes that may legitimately have only constant inputs: quantization of weights is deliberate.
_CONSTANT_INPUT_OK = {"QuantizeLinear", "DequantizeLinear", "Constant"}
RSOFTMAX_CHECK = "rSoftMax is Reshape/Transpose/Softmax/Reshape"


@dataclass(frozen=True)
class TensorInfo:
    """Name, element type and shape (ints, or names of dynamic axes) of a graph input or output."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}


@dataclass(frozen=True)
class InspectReport:
    """What ``resnest-deploy inspect`` shows about an ONNX file."""

    path: str
    size_bytes: int
    opset: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    op_histogram: dict[str, int]
    checks: tuple[Check, ...]
    unsupported_ops: tuple[str, ...]
    meta: ArtifactMeta | None = None
    node_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not failures(self.checks)

    @property
    def failures(self) -> list[Check]:
        return failures(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "size_bytes": self.size_bytes, "opset": self.opset, "node_count": self.node_count,
            "inputs": [t.__dict__ for t in self.inputs], "outputs": [t.__dict__ for t in self.outputs],
            "op_histogram": self.op_histogram, "checks": [c.to_dict() for c in self.checks],
            "unsupported_ops": list(self.unsupported_ops), "ok": self.ok,
            "meta": self.meta.to_dict() if self.meta else None,
        }


def load_onnx(path: str | os.PathLike[str], *, load_external_data: bool = True) -> onnx.ModelProto:
    """Read an ONNX file.

    Raises:
        ArtifactError: Missing, unreadable, or not an ONNX model.
    """
    path = existing_file(path, ArtifactError, "file")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf raises DecodeError, onnx raises several types on bad files
        raise ArtifactError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    if model.ir_version <= 0 or not model.graph.node:
        raise ArtifactError(f"{path}: not an ONNX model (no graph)")
    return model


def load_artifact(path: str | os.PathLike[str], *, load_external_data: bool = True
                  ) -> tuple[onnx.ModelProto | None, ArtifactMeta | None]:
    """(graph, metadata) of an ONNX file; (None, metadata from its manifest) of a TensorRT engine.

    Raises:
        ArtifactError: Missing or unreadable file; an engine without its manifest.
    """
    path = Path(path)
    if is_engine(path):
        manifest = read_manifest(path) if path.is_file() else None
        if manifest is None:
            raise ArtifactError(f"{path}: no such engine, or no manifest ({path.name}.json) beside it")
        return None, meta_from_manifest(manifest, str(path))
    model = load_onnx(path, load_external_data=load_external_data)
    return model, read_metadata(model, str(path))


_DTYPE_NAMES = {v: k.lower() for k, v in onnx.TensorProto.DataType.items()}


def tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    """Describe a graph input or output."""
    tensor = value.type.tensor_type
    dims = tuple(d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?")
                 for d in tensor.shape.dim)
    return TensorInfo(value.name, _DTYPE_NAMES.get(tensor.elem_type, str(tensor.elem_type)), dims)


def _check_rsoftmax(graph: onnx.GraphProto, meta: ArtifactMeta | None) -> Check:
    """Every Softmax is Reshape -> [Transpose ->] Softmax(axis=1) -> Reshape, looking through Cast and Q/DQ."""
    index = GraphIndex(graph)
    softmaxes = [n for n in graph.node if n.op_type == "Softmax"]
    bad = []
    transposed = 0
    for node in softmaxes:
        before = index.source(node.input[0])
        if before is not None and before.op_type == "Transpose":
            transposed += 1
            before = index.source(before.input[0])
        after = index.sinks(node.output[0])
        ok = (before is not None and before.op_type == "Reshape" and attr(node, "axis", -1) == 1
              and after and all(a.op_type == "Reshape" for a in after))
        if not ok:
            bad.append(node.name or "?")
    expected = meta.rsoftmax if meta is not None else None
    exp_nodes = sum(1 for n in graph.node if n.op_type == "Exp")
    if bad:
        return Check(RSOFTMAX_CHECK, False, f"off-pattern Softmax: {bad[:3]}")
    if exp_nodes:
        return Check(RSOFTMAX_CHECK, False, f"{exp_nodes} hand-expanded Exp nodes")
    if expected is not None and transposed != expected:
        return Check(RSOFTMAX_CHECK, False, f"{transposed} rSoftMax patterns, expected {expected}")
    detail = f"{transposed} rSoftMax, {len(softmaxes) - transposed} other Softmax" if softmaxes else "no Softmax"
    return Check(RSOFTMAX_CHECK, True, detail)


def _float_parts(model: onnx.ModelProto, meta: ArtifactMeta | None) -> Check:
    """What TensorRT will run the float parts of a Q/DQ graph in: checked against the manifest's record when this
    tool made it, reported otherwise."""
    record = (meta.extra.get("quantization") or {}) if meta is not None else {}
    if record.get("high_precision") in ("fp16", "fp32"):
        return check_float_type(model, record["high_precision"], record.get("keep_fp32_ops") or ())
    found = float_types(model)
    return Check("float outside Q/DQ", True, f"{len(found['fp16'])} fp16, {len(found['fp32'])} fp32 tensors")


def _constant_inputs_only(graph: onnx.GraphProto) -> list[str]:
    constants = {i.name for i in graph.initializer}
    constants |= {out for n in graph.node if n.op_type == "Constant" for out in n.output}
    return [n.name or n.op_type for n in graph.node
            if n.op_type not in _CONSTANT_INPUT_OK and n.input and all(i in constants or not i for i in n.input)]


def _reshape_batch_baked(graph: onnx.GraphProto) -> list[str]:
    inits = {i.name: i for i in graph.initializer}
    baked = []
    for node in graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]])
            if shape.size and int(shape.flat[0]) > 0:
                baked.append(f"{node.name}:{shape.tolist()}")
    return baked


def _uses_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def inspect_onnx(path: str | os.PathLike[str], *, model: onnx.ModelProto | None = None,
                 full_check: bool = True) -> InspectReport:
    """Describe an ONNX file and check it against the graph contract.

    Args:
        path: The file (used for the checker, sizes and external data).
        model: The already-loaded model, to avoid reading it twice.
        full_check: Run ``onnx.checker`` with strict shape inference.

    Returns:
        The report; ``report.ok`` is False when any contract line fails.

    Raises:
        ArtifactError: The file is missing or not ONNX; its metadata is damaged.
    """
    path = Path(path)
    model = model if model is not None else load_onnx(path)
    graph = model.graph
    meta = read_metadata(model, str(path))
    histogram = Counter(op_label(n) for n in graph.node)
    initializer_names = {i.name for i in graph.initializer}
    inputs = tuple(tensor_info(v) for v in graph.input if v.name not in initializer_names)
    outputs = tuple(tensor_info(v) for v in graph.output)
    unsupported = tuple(sorted({op_label(n) for n in graph.node
                                if n.op_type in UNSUPPORTED_BY_TENSORRT or n.domain not in DEFAULT_DOMAINS}))
    checks = _io_checks(inputs, outputs, meta)
    checks += _graph_checks(model, histogram, meta)
    checks.append(_checker(path, full_check))
    checks.append(_external_data_check(path, model))
    if meta is not None and meta.target == "cpu":  # made for ONNX Runtime's CPU kernels, not for TensorRT
        checks.append(Check("made for ONNX Runtime's CPU provider (target: cpu)", None,
                            "not for TensorRT: unsigned Q/DQ with zero points, which TensorRT's explicit "
                            "quantization refuses; build engines from the --runtime tensorrt graph"))
    else:
        checks.append(Check("only ops TensorRT's ONNX parser takes", not unsupported,
                            ", ".join(unsupported) or "all"))
    if has_qdq(model) and meta is not None and meta.target == "cpu":
        checks += check_cpu_qdq(model)
    elif has_qdq(model):
        checks += [Check(f"Q/DQ: {r.name}", r.passed, r.detail) for r in check_qdq_rules(model)]
        checks.append(_float_parts(model, meta))
    return InspectReport(
        path=str(path), size_bytes=path.stat().st_size, opset=default_opset(model), inputs=inputs, outputs=outputs,
        op_histogram=dict(histogram.most_common()), checks=tuple(checks), unsupported_ops=unsupported, meta=meta,
        node_count=len(graph.node),
    )


def _io_checks(inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...],
               meta: ArtifactMeta | None) -> list[Check]:
    """The input, output and batch-axis lines of the contract."""
    checks = []
    shape_ok = (len(inputs) == 1 and inputs[0].name == INPUT_NAME and inputs[0].dtype == "float"
                and len(inputs[0].shape) == 4 and inputs[0].shape[1] == 3)
    checks.append(Check("input 'input' float32 [N,3,H,W]", shape_ok, _describe(inputs)))
    classes = meta.num_classes if meta else None
    out_ok = (len(outputs) == 1 and outputs[0].name == OUTPUT_NAME and outputs[0].dtype == "float"
              and len(outputs[0].shape) == 2 and (classes is None or outputs[0].shape[1] == classes))
    checks.append(Check("output 'logits' float32 [N,classes]", out_ok, _describe(outputs)))
    if inputs and outputs and inputs[0].shape and outputs[0].shape:
        in_batch, out_batch = inputs[0].shape[0], outputs[0].shape[0]
        if meta is None or meta.batch == "dynamic":
            batch_ok = isinstance(in_batch, str) and in_batch == out_batch
            checks.append(Check("batch axis dynamic", batch_ok, f"input {in_batch}, output {out_batch}"))
        else:
            batch_ok = in_batch == out_batch == int(meta.batch)
            checks.append(Check(f"batch fixed at {meta.batch}", batch_ok, f"input {in_batch}, output {out_batch}"))
    return checks


def _graph_checks(model: onnx.ModelProto, histogram: Counter[str], meta: ArtifactMeta | None) -> list[Check]:
    """Opset, rSoftMax, forbidden ops, folding and Reshape lines of the contract."""
    graph = model.graph
    opset = default_opset(model)
    checks = [Check(f"opset >= {MIN_OPSET}", opset >= MIN_OPSET, f"opset {opset}"), _check_rsoftmax(graph, meta)]
    forbidden = {op: histogram[op] for op in FORBIDDEN_OPS if histogram.get(op)}
    checks.append(Check("no Shape/Gather/Concat/Expand/ScatterND", not forbidden,
                        ", ".join(f"{k}={v}" for k, v in forbidden.items()) or "none"))
    checks.append(Check("BatchNormalization folded", not histogram.get("BatchNormalization"),
                        f"{histogram.get('BatchNormalization', 0)} BatchNormalization nodes"))
    foldable = _constant_inputs_only(graph)
    checks.append(Check("constants folded", not foldable and not histogram.get("Constant"),
                        f"{len(foldable)} foldable nodes, {histogram.get('Constant', 0)} Constant nodes"))
    baked = _reshape_batch_baked(graph) if meta is None or meta.batch == "dynamic" else []
    checks.append(Check("no batch size baked into Reshape", not baked, ", ".join(baked[:3]) or "all use -1"))
    return checks


def _external_data_check(path: Path, model: onnx.ModelProto) -> Check:
    external = _uses_external_data(model)
    data_bytes = 0 if external else sum(t.ByteSize() for t in model.graph.initializer)
    return Check("external data only above 2 GB", not external or _external_bytes(path, model) > TWO_GB,
                 "external data" if external else f"inline ({data_bytes / 1e6:.0f} MB)")


def _describe(values: tuple[TensorInfo, ...]) -> str:
    return "; ".join(f"{v.name} {v.dtype} {list(v.shape)}" for v in values) or "none"


def _external_bytes(path: Path, model: onnx.ModelProto) -> int:
    files = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    return sum((path.parent / f).stat().st_size for f in files if (path.parent / f).is_file())


def _checker(path: Path, full_check: bool) -> Check:
    try:
        onnx.checker.check_model(str(path), full_check=full_check)
    except Exception as exc:  # checker raises ValidationError, InferenceError and others
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return Check("onnx.checker full check", False, first)
    return Check("onnx.checker full check", True, "passed")


def check_fits(model: onnx.ModelProto, *, num_classes: int, size: int, what: str) -> None:
    """Check that a graph takes one [N,3,size,size] image tensor and returns [N,num_classes] logits.

    Dynamic axes fit anything. ``what`` names the model in the error (e.g. the architecture).

    Raises:
        ConfigError: The graph's inputs or outputs do not fit.
    """
    initializers = {i.name for i in model.graph.initializer}
    inputs = [tensor_info(v) for v in model.graph.input if v.name not in initializers]
    outputs = [tensor_info(v) for v in model.graph.output]
    out_shape = outputs[0].shape if len(outputs) == 1 else ()
    if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != num_classes):
        raise ConfigError(f"{what} has {num_classes} classes but the artifact outputs "
                          f"{[list(o.shape) for o in outputs]}")
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
        raise ConfigError(f"the artifact's input {[list(i.shape) for i in inputs]} is not one [N,3,H,W] image tensor")
    height = inputs[0].shape[2]
    if isinstance(height, int) and height != size:
        raise ConfigError(f"the artifact takes {height}px inputs but {what} is evaluated at {size}px")
