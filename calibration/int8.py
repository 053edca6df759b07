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
the branch 2-3), which holds for every block of this model family and needs no names (depths come from the
:class:`~resnest_deploy.calibration.layers.LayerMap`, which also names every site's layer and stage).

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
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from resnest_deploy import interrupts
from resnest_deploy.batching import chunks, fit_batch
from resnest_deploy.errors import ConfigError
from resnest_deploy.progress import ProgressFn
from resnest_deploy.exporters.graph_index import (GraphIndex, attr, default_opset, drop_unused_initializers, fixed_batch,
                                                  set_nodes)

from .layers import WEIGHTED, LayerMap



class Method(str, Enum):
    """INT8 calibration method (ONNX Runtime's calibrators)."""

    percentile = "percentile"
    max = "max"
    entropy = "entropy"


METHODS = tuple(m.value for m in Method)
# The attention path of ResNeSt (split attention fc1/fc2), SKNet (fc_reduce/fc_select) and SE blocks: 1x1 convs
# on pooled 1x1 maps. Kept in float by default (see docs/quantization.md for the measurement).
ATTENTION_PATTERNS = ("*.fc1", "*.fc2", "*.attn.fc_reduce", "*.attn.fc_select")
QMAX = 127.0
PERCENTILE = 99.99


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
class QdqPlacement:
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

    def only(self, blocks: Iterable[str]) -> QdqPlacement:
        keep = set(blocks)
        return QdqPlacement(tuple(u for u in self.uses if u.block in keep), self.excluded)


def place_qdq(model: onnx.ModelProto, layers: LayerMap, *, exclude: Sequence[str] = (),
             quantize_attention: bool = False) -> QdqPlacement:
    """Find every Q/DQ site of a float graph and drop those whose layer or stage matches an ``exclude`` pattern.

    Args:
        model: FP32 graph (BatchNorm folded), nodes named (``graph_index.name_nodes``).
        layers: The graph's :class:`LayerMap` (the one ownership rule shared with FP16).
        exclude: fnmatch patterns on layers or stages (``layer4.*``, ``*.conv2.fc1``, ``stem``,
            ``layer1.0.residual``).
        quantize_attention: Also quantize the attention path (excluded by default).
    """
    graph = model.graph
    index = GraphIndex(graph)
    uses: list[Use] = []
    for node in graph.node:
        layer, stage = layers.layers[node.name], layers.stages[node.name]
        if node.op_type in WEIGHTED and len(node.input) > 1 and node.input[1] in index.initializers:
            uses.append(Use(node.input[0], node.name, 0, layer, stage, "activation"))
            axis = 0
            if node.op_type == "Gemm":
                axis = 0 if attr(node, "transB", 0) else 1
            uses.append(Use(node.input[1], node.name, 1, layer, stage, "weight", axis))
        elif node.op_type == "Add" and _is_residual(node, index):
            a, b = (layers.depth.get(name, 0) for name in node.input[:2])
            if a == b:
                continue
            identity = 0 if a < b else 1
            uses.append(Use(node.input[identity], node.name, identity, f"{stage}.residual", stage, "residual"))

    patterns = list(exclude) + ([] if quantize_attention else list(ATTENTION_PATTERNS))
    kept = tuple(u for u in uses if not _matches(u, patterns))
    excluded = tuple(u for u in uses if _matches(u, patterns))
    return QdqPlacement(kept, excluded)


def _matches(use: Use, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(use.owner, p) or fnmatch.fnmatchcase(use.block, p) for p in patterns)


def _is_residual(node: onnx.NodeProto, index: GraphIndex) -> bool:
    if len(node.input) != 2 or any(name in index.initializers for name in node.input):
        return False
    return any(c.op_type == "Relu" for c in index.users(node.output[0]))


# ----------------------------------------------------------------------------------------------- calibration


def calibrate(
    model: onnx.ModelProto, tensors: Sequence[str], data: np.ndarray, *, method: str = "entropy",
    batch: int = 8, progress: ProgressFn | None = None,
) -> dict[str, float]:
    """Absolute range (amax) of each tensor over ``data``, by ONNX Runtime's calibrator for ``method``.

    Symmetric ranges for TensorRT's signed Q/DQ; see :func:`collect_ranges` for how any number of images works.

    Args:
        model: The float graph.
        tensors: Tensors to calibrate.
        data: Preprocessed images [N, 3, H, W], N >= 1.
        method: ``max`` (MinMax), ``entropy`` (KL divergence, 2048 bins into 128) or ``percentile`` (99.99%).
        batch: Images per inference (ignored for graphs with a fixed batch: their own batch is used).
        progress: Called with (``calibrate``, images done, total).

    Raises:
        ConfigError: Unknown method, bad batch, or no images.
    """
    ranges = collect_ranges(model, tensors, data, method=method, symmetric=True, batch=batch, progress=progress)
    amax = {}
    for name in tensors:
        if name in ranges:
            lo, hi = ranges[name].range_value
            amax[name] = float(max(np.abs(np.asarray(lo)).max(), np.abs(np.asarray(hi)).max()))
    return amax


def collect_ranges(
    model: onnx.ModelProto, tensors: Sequence[str] | None, data: np.ndarray, *, method: str, symmetric: bool,
    batch: int = 8, per_call: int = 32, progress: ProgressFn | None = None,
) -> Any:
    """ONNX Runtime's ``TensorsData`` (a range per tensor) over ``data``, for ``tensors`` (None: every tensor
    ONNX Runtime's quantizer would calibrate).

    Any number of images works: ONNX Runtime's histogram calibrators stack the outputs of one ``collect_data``
    call into one array, so each call is given batches of a single shape (whole batches, or the remainder on its
    own) and the calibrator merges the calls' histograms. ``max`` gives the same ranges whatever the batch split.
    ``per_call`` bounds the images whose activations a histogram calibrator holds at once.

    Raises:
        ConfigError: Unknown method, bad batch, or no images.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    if batch < 1:
        raise ConfigError(f"calibration batch must be >= 1, got {batch}")
    if len(data) == 0:
        raise ConfigError("no calibration images")
    fixed = fixed_batch(model)
    step = fixed or batch
    with tempfile.TemporaryDirectory(prefix="resnest-deploy-calib-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save_model(model, str(path))
        calibrator = _calibrator(Method(method).value, path, Path(tmp) / "augmented.onnx", tensors, symmetric)
        for start, stop in uniform_calls(len(data), step, per_call):
            interrupts.check()
            reader = _Reader(data[start:stop], step, fixed is not None, model.graph.input[0].name)
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print as they go
                calibrator.collect_data(reader)
            if progress:
                progress("calibrate", stop, len(data))
        with contextlib.redirect_stdout(io.StringIO()):
            return calibrator.compute_data()


def uniform_calls(total: int, step: int, per_call: int = 32) -> list[tuple[int, int]]:
    """(start, stop) ranges of ``collect_data`` calls in which every batch of ``step`` images has one shape.

    Whole batches go in calls of about ``per_call`` images (histogram calibrators keep every output of a call
    in memory); a remainder smaller than ``step`` gets a call of its own.
    """
    whole = total - total % step
    size = max(step, per_call // step * step)
    calls = [(start, stop) for start, stop in chunks(whole, size)]
    if whole < total:
        calls.append((whole, total))
    return calls


def _calibrator(method: str, path: Path, augmented: Path, tensors: Sequence[str] | None, symmetric: bool):
    from onnxruntime.quantization import calibrate as ort_calibrate

    base = {"max": ort_calibrate.MinMaxCalibrater, "entropy": ort_calibrate.EntropyCalibrater,
            "percentile": ort_calibrate.PercentileCalibrater}[method]
    if tensors is None:
        calibrator_class = base
    else:
        wanted = frozenset(tensors)

        class calibrator_class(base):  # only the tensors that get Q/DQ, not every input/output of an op type
            def select_tensors_to_calibrate(self, model):
                infos = {vi.name: vi for vi in (*model.graph.value_info, *model.graph.output, *model.graph.input)}
                return {t for t in wanted if t in infos}, infos

    options = {"max": {"symmetric": symmetric},
               "entropy": {"symmetric": symmetric, "num_bins": 2048, "num_quantized_bins": 128},
               "percentile": {"symmetric": symmetric, "num_bins": 2048, "percentile": PERCENTILE}}[method]
    calibrator = calibrator_class(str(path), None, str(augmented), **options)
    calibrator.augment_graph()
    calibrator.create_inference_session()
    return calibrator


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over an array, in batches (padded for fixed-batch graphs)."""

    def __init__(self, data: np.ndarray, batch: int, pad: bool, name: str) -> None:
        self._batches = []
        for start, stop in chunks(len(data), batch):
            x = data[start:stop]
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


def insert_qdq(model: onnx.ModelProto, plan: QdqPlacement, amax: dict[str, float], *,
               fp16_scales: bool = False) -> onnx.ModelProto:
    """A copy of ``model`` with the plan's Q/DQ pairs (activations) and INT8 weights + DequantizeLinear.

    ``fp16_scales``: every scale is a value FP16 holds exactly (rounded up, so no weight clips), for a graph that
    :func:`~resnest_deploy.calibration.fp16.fp16_around_qdq` types FP16 afterwards: the INT8 weights are
    quantized against the scale the engine will use, not against one FP16 rounds later.
    """
    if default_opset(model) < 13:
        raise ConfigError("per-channel Q/DQ needs opset >= 13")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    nodes = {n.name: n for n in graph.node}
    exact = _fp16_exact if fp16_scales else _identity
    after, inits = _activation_qdq(plan, amax, nodes, exact)  # tensor -> Q/DQ nodes to emit once it exists
    before, weight_inits = _weight_dq(plan, {i.name: i for i in graph.initializer}, nodes, exact)  # node -> its DQ
    ordered: list[onnx.NodeProto] = []
    for value in graph.input:
        ordered += after.pop(value.name, [])
    for node in graph.node:
        ordered += before.pop(node.name, [])
        ordered.append(node)
        for name in node.output:
            ordered += after.pop(name, [])
    set_nodes(graph, ordered)
    graph.initializer.extend(inits + weight_inits)
    drop_unused_initializers(graph)
    return out


def _identity(scale: np.ndarray) -> np.ndarray:
    return scale


def _fp16_exact(scale: np.ndarray) -> np.ndarray:
    """The smallest FP16 values at or above ``scale`` (as float32): FP16 holds them exactly, and a scale never
    shrinks, so ``round(w / scale)`` stays within [-127, 127]. Below FP16's normal range (6.1e-5) this coarsens
    a scale by at most one subnormal step (6e-8)."""
    scale = np.asarray(scale, dtype=np.float32)
    half = scale.astype(np.float16)
    half = np.where(half.astype(np.float32) < scale, np.nextafter(half, np.float16(np.inf)), half)
    return np.maximum(half, np.float16(6e-8)).astype(np.float32)


def _activation_qdq(plan: QdqPlacement, amax: dict[str, float], nodes: dict[str, onnx.NodeProto],
                    exact: Callable[[np.ndarray], np.ndarray] = _identity) -> tuple[dict[str, list[onnx.NodeProto]], list[TensorProto]]:
    """One symmetric per-tensor Q/DQ pair per quantized activation; its users are rewired to the DQ output."""
    after: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    inits: list[TensorProto] = []
    by_tensor: dict[str, list[Use]] = defaultdict(list)
    for use in plan.uses:
        if use.kind != "weight":
            by_tensor[use.tensor].append(use)
    for tensor, uses in by_tensor.items():
        if tensor not in amax:
            raise ConfigError(f"no calibration range for {tensor}")
        scale = exact(np.float32(max(amax[tensor], 1e-8) / QMAX))
        s_name, z_name = f"{tensor}_scale", f"{tensor}_zero_point"
        inits += [numpy_helper.from_array(np.asarray(scale, dtype=np.float32), s_name),
                  numpy_helper.from_array(np.asarray(0, dtype=np.int8), z_name)]
        q_out, dq_out = f"{tensor}_quantized", f"{tensor}_dequantized"
        after[tensor] += [
            helper.make_node("QuantizeLinear", [tensor, s_name, z_name], [q_out], name=f"{tensor}_QuantizeLinear"),
            helper.make_node("DequantizeLinear", [q_out, s_name, z_name], [dq_out],
                             name=f"{tensor}_DequantizeLinear"),
        ]
        for use in uses:
            nodes[use.node].input[use.index] = dq_out
    return after, inits


def _weight_dq(plan: QdqPlacement, initializers: dict[str, TensorProto], nodes: dict[str, onnx.NodeProto],
               exact: Callable[[np.ndarray], np.ndarray] = _identity) -> tuple[dict[str, list[onnx.NodeProto]], list[TensorProto]]:
    """INT8 weights with one symmetric scale per output channel, dequantized right before their node."""
    before: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    inits: list[TensorProto] = []
    for use in plan.uses:
        if use.kind != "weight":
            continue
        weights = numpy_helper.to_array(initializers[use.tensor]).astype(np.float32)
        moved = np.moveaxis(weights, use.axis, 0)
        channel_max = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
        scale = exact(np.where(channel_max > 0, channel_max / QMAX, 1.0 / QMAX).astype(np.float32))
        shape = [1] * weights.ndim
        shape[use.axis] = -1
        quantized = np.clip(np.round(weights / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
        base = use.tensor
        inits += [numpy_helper.from_array(quantized, f"{base}_quantized"),
                  numpy_helper.from_array(scale, f"{base}_scale"),
                  numpy_helper.from_array(np.zeros(len(scale), dtype=np.int8), f"{base}_zero_point")]
        before[use.node].append(helper.make_node(
            "DequantizeLinear", [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"],
            [f"{base}_dequantized"], name=f"{base}_DequantizeLinear", axis=use.axis))
        nodes[use.node].input[use.index] = f"{base}_dequantized"
    return before, inits
