"""One index of an ONNX graph (who produces and who uses each tensor, which tensors are constants) and the few
graph facts and rewrites every pass shares.

The FP16 and Q/DQ passes add Cast, QuantizeLinear and DequantizeLinear nodes around the original ops; checks
that look for a pattern (rSoftMax, residual blocks, Q/DQ placement) walk through them with :meth:`source` and
:meth:`sinks`. onnxscript's IR gives producers and uses too, but these passes edit ``NodeProto`` objects in
place, and a proto -> IR -> proto round trip per check would cost more than this index and change the file.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

TRANSPARENT = frozenset({"Cast", "QuantizeLinear", "DequantizeLinear"})
DEFAULT_DOMAINS = ("", "ai.onnx")


class GraphIndex:
    """Producers, consumers and constants of one graph (a snapshot: rebuild it after editing the graph)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.initializers: dict[str, onnx.TensorProto] = {i.name: i for i in graph.initializer}
        self.producers: dict[str, onnx.NodeProto] = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)

    def producer(self, name: str) -> onnx.NodeProto | None:
        return self.producers.get(name)

    def users(self, name: str) -> list[onnx.NodeProto]:
        return self.consumers.get(name, [])

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producers.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute:
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def source(self, name: str, through: frozenset[str] = TRANSPARENT) -> onnx.NodeProto | None:
        """The node that really produces ``name``, walking up past ``through`` ops (Cast, Q/DQ)."""
        node = self.producers.get(name)
        while node is not None and node.op_type in through:
            node = self.producers.get(node.input[0])
        return node

    def sinks(self, name: str, through: frozenset[str] = TRANSPARENT) -> list[onnx.NodeProto]:
        """The nodes that really use ``name``, walking down single-use chains of ``through`` ops."""
        users = self.users(name)
        while len(users) == 1 and users[0].op_type in through:
            users = self.users(users[0].output[0])
        return users


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """An attribute's value, or ``default``."""
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def op_label(node: onnx.NodeProto) -> str:
    """``Conv``, or ``domain::Op`` for ops outside the default domain."""
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The batch size a graph's first input is fixed to, or None when the batch axis is dynamic."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def default_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset a model imports."""
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed (or duplicate-named) node a unique name; passes refer to nodes by name."""
    taken: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in taken:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
        taken.add(node.name)


def set_dynamic_hw(model: onnx.ModelProto) -> None:
    """Name the input's height and width as dynamic axes and drop stored inner shapes (in place).

    Valid only for graphs with no shape-dependent constants, which the graph contract guarantees.
    """
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for index, name in ((2, "height"), (3, "width")):
        dims[index].Clear()
        dims[index].dim_param = name
    del model.graph.value_info[:]


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after the producers of its inputs (ONNX requires it; so do parsers)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a dangling input at {pending[0].name}")
        ready_ids = {id(n) for n in ready}
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if id(n) not in ready_ids]
    set_nodes(graph, ordered)


def set_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Make ``nodes`` the graph's nodes, in that order. They are copied first: they may be the graph's own, and a
    message deleted from its repeated field is not one to rely on afterwards."""
    copies = [onnx.NodeProto() for _ in nodes]
    for copy, node in zip(copies, nodes):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers that no node and no graph output uses."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
