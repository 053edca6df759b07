"""Which layer and which stage of the network each node of an ONNX graph belongs to: the one rule behind
``--exclude`` (FP16 and INT8 alike), ``--sensitivity`` and the INT8 placement's residual sites.

A Conv or Gemm belongs to the module whose weight it reads (``layer2.0.conv2.weight`` -> layer
``layer2.0.conv2``); every other node belongs to the weighted layer above it on its deepest input (the one with
the most Conv/Gemm layers above it: the residual branch rather than the shortcut, the feature map rather than an
attention gate). Stages are the model's own (:meth:`ModelConfig.stage_names`: ``stem``, ``layer1.0`` ...,
``fc``), so a pattern selects the same nodes whichever precision it is given to.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from resnest_deploy.errors import ConfigError
from resnest_deploy.models.config import HEAD, STEM

WEIGHTED = ("Conv", "Gemm")
_AUTO_NAMES = ("val_", "onnx::")  # initializer names exporters make up; they name no module
# Marks a slice of a module's weight (``layer1.0.conv1.weight#part0``): a layer that a graph rewrite computes as
# several nodes (the CPU INT8 graph's radix parts) still belongs to its module.
PART_MARK = "#part"


def weight_owner(node: onnx.NodeProto, initializers: set[str] | dict) -> str | None:
    """The module a Conv/Gemm node's weight belongs to (``layer1.0.conv1``), or None."""
    weight = node.input[1] if node.op_type in WEIGHTED and len(node.input) > 1 else ""
    whole = weight.partition(PART_MARK)[0]
    if weight in initializers and whole.endswith(".weight") and not whole.startswith(_AUTO_NAMES):
        return whole.removesuffix(".weight")
    return None


def stage_of(layer: str, stages: Sequence[str]) -> str:
    """The stage a layer name belongs to: the block whose name prefixes it, the head, else the stem."""
    head = layer.split(".", 1)[0]
    if head == HEAD:
        return HEAD
    for stage in stages:
        if layer == stage or layer.startswith(stage + "."):
            return stage
    return STEM


@dataclass(frozen=True)
class LayerMap:
    """Layer, stage and depth of every node of one graph (nodes must be named, see ``name_nodes``).

    Attributes:
        layers: Node name -> layer name.
        stages: Node name -> stage name.
        depth: Tensor name -> number of Conv/Gemm layers on the longest path from the graph input.
        stage_names: The model's stages, in order.
    """

    layers: dict[str, str]
    stages: dict[str, str]
    depth: dict[str, int]
    stage_names: tuple[str, ...]

    def matches(self, node_name: str, patterns: Sequence[str], layer: str | None = None) -> bool:
        """Whether a node's layer (or ``layer``, when given) or its stage matches an fnmatch pattern."""
        names = (layer or self.layers[node_name], self.stages[node_name])
        return any(fnmatch.fnmatchcase(name, p) for name in names for p in patterns)

    def check_patterns(self, patterns: Sequence[str], option: str, extra: Sequence[str] = ()) -> None:
        """Refuse patterns that select nothing, so a typo never passes silently.

        Raises:
            ConfigError: A pattern matches no layer or stage (nor any of ``extra``).
        """
        names = set(self.layers.values()) | set(self.stages.values()) | set(extra)
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                blocks = [s for s in self.stage_names if s not in (STEM, HEAD)]
                example = min((n for n in self.layers.values() if n not in self.stage_names), default=HEAD)
                raise ConfigError(
                    f"{option} {pattern!r} matches no layer or stage of this model; stages are {STEM}, "
                    f"{blocks[0]} ... {blocks[-1]}, {HEAD}; layers look like {example}")


def layer_map(model: onnx.ModelProto, stage_names: Sequence[str]) -> LayerMap:
    """Assign every node of a float graph to a layer and a stage (see the module docstring)."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    depth: dict[str, int] = {i.name: 0 for i in graph.input}
    source: dict[str, str] = {}  # tensor -> layer that produced it
    layers: dict[str, str] = {}
    for node in graph.node:
        activations = [name for name in node.input if name and name not in initializers]
        deepest = max(activations, key=lambda name: depth.get(name, 0), default=None)
        owner = weight_owner(node, initializers)
        layer = owner or (source.get(deepest) if deepest is not None else None) or STEM
        layers[node.name] = layer
        base = depth.get(deepest, 0) if deepest is not None else 0
        for out in node.output:
            depth[out] = base + (1 if node.op_type in WEIGHTED else 0)
            source[out] = layer
    stages = {name: stage_of(layer, stage_names) for name, layer in layers.items()}
    return LayerMap(layers, stages, depth, tuple(stage_names))
