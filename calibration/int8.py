"""INT8 as explicit Q/DQ ONNX, placed the way TensorRT fuses it; activation ranges from ONNX Runtime's calibrators.

Placement (NVIDIA's explicit-quantization rules):

- every Conv and Gemm gets QuantizeLinear/DequantizeLinear on its activation input (per tensor, symmetric,
  zero-point 0) and INT8 weights with a DequantizeLinear (per output channel, symmetric, zero-point 0);
  biases stay float;
- outputs of Conv/Gemm are not quantized, so nothing sits between a Conv and the ReLU/Add it fuses with
  (BatchNorm is already folded into the Conv by the exporter);
- at each residual Add, the identity (shortcut) input is quantized and the branch input stays float, so
  TensorRT fuses the branch's last Conv with the Add.

The identity input of an Add is the one with fewer Conv layers above it (the shortcut passes 0 or 1 Conv,
the branch 2-3), which holds for every block of this model family and needs no names.

Calibration statistics are ONNX Runtime's (``MinMaxCalibrater``, ``EntropyCalibrater``,
``PercentileCalibrater``), computed only for the tensors that get a Q/DQ pair.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from exporters.graph import default_opset, fixed_batch
from exporters.verify import fit_batch
from resnest_deploy.errors import ConfigError

METHODS = ("entropy", "max", "percentile")
WEIGHTED = ("Conv", "Gemm")
# The attention path of ResNeSt (split attention fc1/fc2), SKNet (fc_reduce/fc_select) and SE blocks: 1x1 convs
# on pooled 1x1 maps. Kept in float by default (see docs/quantization.md for the measurement).
ATTENTION_PATTERNS = ("*.fc1", "*.fc2", "*.attn.fc_reduce", "*.attn.fc_select")
QMAX = 127.0
PERCENTILE = 99.99
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Use:
    """One float input that gets a Q/DQ pair (activations) or INT8 weights (weights).

    Attributes:
        tensor: The tensor quantized.
        node: Name of the consuming node whose input is rewired.
        index: Input index on that node.
        owner: Module-like name used by ``--exclude`` patterns (``layer2.0.conv2.conv``, ``layer2.0.residual``).
        block: The block it belongs to (``stem``, ``layer2.0``, ``fc``), the unit of ``--sensitivity``.
        kind: ``activation``, ``residual`` or ``weight``.
        axis: Per-channel axis (weights only).
    """

    tensor: str
    node: str
    index: int
    owner: str
    block: str
    kind: str
    axis: int = 0


@dataclass(frozen=True)
class Plan:
    """Where Q/DQ goes in one graph."""

    uses: tuple[Use, ...]
    excluded: tuple[Use, ...] = ()

    @property
    def activation_tensors(self) -> list[str]:
        return sorted({u.tensor for u in self.uses if u.kind != "weight"})

    def blocks(self) -> list[str]:
        seen: dict[str, None] = {}
        for use in self.uses:
            seen.setdefault(use.block)
        return list(seen)

    def only(self, blocks: Iterable[str]) -> Plan:
        keep = set(blocks)
        return Plan(tuple(u for u in self.uses if u.block in keep), self.excluded)


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (the plan refers to nodes by name)."""
    taken: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in taken:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
        taken.add(node.name)


def _owner(node: onnx.NodeProto, initializers: set[str]) -> str:
    weight = node.input[1] if len(node.input) > 1 else ""
    if weight in initializers and not weight.startswith(("val_", "onnx::")):
        return weight.removesuffix(".weight")
    return node.name


def block_of(owner: str) -> str:
    """``layer3.1.conv2.conv`` -> ``layer3.1``; ``fc`` -> ``fc``; stem convs -> ``stem``."""
    parts = owner.split(".")
    if parts[0].startswith("layer") and len(parts) >= 2 and parts[1].isdigit():
        return ".".join(parts[:2])
    if parts[0] in ("fc", "head", "classifier"):
        return parts[0]
    return "stem"


def plan_qdq(model: onnx.ModelProto, *, exclude: Sequence[str] = (), quantize_attention: bool = False) -> Plan:
    """Find every Q/DQ site of a float graph and drop those whose owner matches an ``exclude`` pattern.

    Args:
        model: FP32 graph (BatchNorm folded), nodes named (see :func:`name_nodes`).
        exclude: fnmatch patterns on owners (``layer4.*``, ``*.conv2.fc1``, ``stem``, ``layer1.0.residual``).
        quantize_attention: Also quantize the attention path (excluded by default).
    """
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    depth: dict[str, int] = {i.name: 0 for i in graph.input}
    for node in graph.node:
        base = max((depth.get(name, 0) for name in node.input if name not in initializers), default=0)
        for out in node.output:
            depth[out] = base + (1 if node.op_type in WEIGHTED else 0)

    uses: list[Use] = []
    for node in graph.node:
        if node.op_type in WEIGHTED and len(node.input) > 1 and node.input[1] in initializers:
            owner = _owner(node, initializers)
            block = block_of(owner)
            uses.append(Use(node.input[0], node.name, 0, owner, block, "activation"))
            axis = 0
            if node.op_type == "Gemm":
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                axis = 0 if trans_b else 1
            uses.append(Use(node.input[1], node.name, 1, owner, block, "weight", axis))
        elif node.op_type == "Add" and _is_residual(node, consumers, initializers):
            a, b = node.input[0], node.input[1]
            if depth.get(a, 0) == depth.get(b, 0):
                continue
            identity, branch = (0, b) if depth.get(a, 0) < depth.get(b, 0) else (1, a)
            conv = _conv_above(branch, producers, depth)
            block = block_of(_owner(conv, initializers)) if conv is not None else "stem"
            uses.append(Use(node.input[identity], node.name, identity, f"{block}.residual", block, "residual"))

    patterns = list(exclude) + ([] if quantize_attention else list(ATTENTION_PATTERNS))
    kept = tuple(u for u in uses if not _matches(u, patterns))
    excluded = tuple(u for u in uses if _matches(u, patterns))
    return Plan(kept, excluded)


def _matches(use: Use, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(use.owner, p) or fnmatch.fnmatchcase(use.block, p) for p in patterns)


def _is_residual(node: onnx.NodeProto, consumers: dict, initializers: set[str]) -> bool:
    if len(node.input) != 2 or any(name in initializers for name in node.input):
        return False
    return any(c.op_type == "Relu" for c in consumers.get(node.output[0], []))


def _conv_above(tensor: str, producers: dict, depth: dict[str, int]) -> onnx.NodeProto | None:
    """The nearest Conv above ``tensor``, following the deepest input (the branch, not an SE gate's source)."""
    node = producers.get(tensor)
    while node is not None and node.op_type not in WEIGHTED:
        inputs = [name for name in node.input if name in producers]
        if not inputs:
            return None
        node = producers[max(inputs, key=lambda name: depth.get(name, 0))]
    return node


# ----------------------------------------------------------------------------------------------- calibration


def calibrate(
    model: onnx.ModelProto, tensors: Sequence[str], data: np.ndarray, *, method: str = "entropy",
    batch: int = 8, progress: ProgressFn | None = None,
) -> dict[str, float]:
    """Absolute range (amax) of each tensor over ``data``, by ONNX Runtime's calibrator for ``method``.

    Args:
        model: The float graph.
        tensors: Tensors to calibrate.
        data: Preprocessed images [N, 3, H, W].
        method: ``max`` (MinMax), ``entropy`` (KL divergence, 2048 bins into 128) or ``percentile`` (99.99%).
        batch: Images per inference.
        progress: Called with (images done, total).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    fixed = fixed_batch(model)
    step = fixed or batch
    with tempfile.TemporaryDirectory(prefix="resnest-deploy-calib-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save_model(model, str(path))
        calibrator = _calibrator(method, path, Path(tmp) / "augmented.onnx", tensors)
        # Histogram calibrators keep every output of a collect_data call in memory: feed chunks.
        chunk = max(step, 32 // step * step)
        done = 0
        for start in range(0, len(data), chunk):
            part = data[start:start + chunk]
            reader = _Reader(part, step, fixed is not None, model.graph.input[0].name)
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print as they go
                calibrator.collect_data(reader)
            done += len(part)
            if progress:
                progress(done, len(data))
        with contextlib.redirect_stdout(io.StringIO()):
            ranges = calibrator.compute_data()
    amax = {}
    for name in tensors:
        if name in ranges:
            lo, hi = ranges[name].range_value
            amax[name] = float(max(np.abs(np.asarray(lo)).max(), np.abs(np.asarray(hi)).max()))
    return amax


def _calibrator(method: str, path: Path, augmented: Path, tensors: Sequence[str]):
    from onnxruntime.quantization import calibrate as ort_calibrate

    wanted = frozenset(tensors)
    base = {"max": ort_calibrate.MinMaxCalibrater, "entropy": ort_calibrate.EntropyCalibrater,
            "percentile": ort_calibrate.PercentileCalibrater}[method]

    class _SiteCalibrater(base):  # only the tensors that get Q/DQ, not every input/output of an op type
        def select_tensors_to_calibrate(self, model):
            infos = {vi.name: vi for vi in (*model.graph.value_info, *model.graph.output, *model.graph.input)}
            return {t for t in wanted if t in infos}, infos

    options = {"max": {"symmetric": True}, "entropy": {"symmetric": True, "num_bins": 2048,
                                                       "num_quantized_bins": 128},
               "percentile": {"symmetric": True, "num_bins": 2048, "percentile": PERCENTILE}}[method]
    calibrator = _SiteCalibrater(str(path), None, str(augmented), **options)
    calibrator.augment_graph()
    calibrator.create_inference_session()
    return calibrator


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over an array, in batches (padded for fixed-batch graphs)."""

    def __init__(self, data: np.ndarray, batch: int, pad: bool, name: str) -> None:
        self._batches = []
        for start in range(0, len(data), batch):
            x = data[start:start + batch]
            if pad:
                x = fit_batch(x, batch)
            self._batches.append({name: np.ascontiguousarray(x, dtype=np.float32)})
        self._index = 0

    def get_next(self) -> dict | None:
        if self._index >= len(self._batches):
            return None
        self._index += 1
        return self._batches[self._index - 1]



# ------------------------------------------------------------------------------------------------- insertion


def insert_qdq(model: onnx.ModelProto, plan: Plan, amax: dict[str, float]) -> onnx.ModelProto:
    """A copy of ``model`` with the plan's Q/DQ pairs (activations) and INT8 weights + DequantizeLinear."""
    if default_opset(model) < 13:
        raise ConfigError("per-channel Q/DQ needs opset >= 13")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    nodes = {n.name: n for n in graph.node}
    initializers = {i.name: i for i in graph.initializer}
    new_inits: list[TensorProto] = []
    after: dict[str, list[onnx.NodeProto]] = defaultdict(list)  # tensor -> Q/DQ nodes to emit once it exists
    before: dict[str, list[onnx.NodeProto]] = defaultdict(list)  # node -> weight DQ nodes to emit before it

    by_tensor: dict[str, list[Use]] = defaultdict(list)
    for use in plan.uses:
        if use.kind != "weight":
            by_tensor[use.tensor].append(use)
    for tensor, uses in by_tensor.items():
        if tensor not in amax:
            raise ConfigError(f"no calibration range for {tensor}")
        scale = np.float32(max(amax[tensor], 1e-8) / QMAX)
        s_name, z_name = f"{tensor}_scale", f"{tensor}_zero_point"
        new_inits += [numpy_helper.from_array(np.asarray(scale, dtype=np.float32), s_name),
                      numpy_helper.from_array(np.asarray(0, dtype=np.int8), z_name)]
        q_out, dq_out = f"{tensor}_quantized", f"{tensor}_dequantized"
        after[tensor] += [
            helper.make_node("QuantizeLinear", [tensor, s_name, z_name], [q_out], name=f"{tensor}_QuantizeLinear"),
            helper.make_node("DequantizeLinear", [q_out, s_name, z_name], [dq_out],
                             name=f"{tensor}_DequantizeLinear"),
        ]
        for use in uses:
            nodes[use.node].input[use.index] = dq_out

    for use in plan.uses:
        if use.kind != "weight":
            continue
        weights = numpy_helper.to_array(initializers[use.tensor]).astype(np.float32)
        moved = np.moveaxis(weights, use.axis, 0)
        channel_max = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
        scale = np.where(channel_max > 0, channel_max / QMAX, 1.0 / QMAX).astype(np.float32)
        shape = [1] * weights.ndim
        shape[use.axis] = -1
        quantized = np.clip(np.round(weights / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
        base = use.tensor
        new_inits += [numpy_helper.from_array(quantized, f"{base}_quantized"),
                      numpy_helper.from_array(scale, f"{base}_scale"),
                      numpy_helper.from_array(np.zeros(len(scale), dtype=np.int8), f"{base}_zero_point")]
        before[use.node].append(helper.make_node(
            "DequantizeLinear", [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"],
            [f"{base}_dequantized"], name=f"{base}_DequantizeLinear", axis=use.axis))
        nodes[use.node].input[use.index] = f"{base}_dequantized"

    ordered: list[onnx.NodeProto] = []
    for value in graph.input:
        ordered += after.pop(value.name, [])
    for node in graph.node:
        ordered += before.pop(node.name, [])
        ordered.append(node)
        for name in node.output:
            ordered += after.pop(name, [])
    del graph.node[:]
    graph.node.extend(ordered)
    used = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    return out
