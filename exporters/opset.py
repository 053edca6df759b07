"""Express an exported graph in an older ONNX opset (13 to 17).

torch's exporter emits opset 18, and ONNX's own version converter has no Split 18 -> 17 adapter, so this pass
rewrites the two op forms that changed (``ReduceXxx`` axes input -> attribute, ``Split`` num_outputs -> equal
split) and refuses any other op whose definition differs between the two opsets.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from resnest_deploy.errors import ConfigError

from .graph_index import default_opset, drop_unused_initializers

# Ops whose newer versions only widened accepted types or added attributes whose defaults keep the old behaviour.
_SAME_FOR_FLOAT = {"Add", "Mul", "Sub", "Div", "Relu", "Reshape", "Identity", "Sigmoid", "Flatten", "Transpose",
                   "Softmax", "Cast", "QuantizeLinear", "DequantizeLinear", "Gemm", "Conv", "MaxPool", "AveragePool"}


def convert_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """Return ``model`` expressed in opset ``target`` (a copy when anything changes).

    Raises:
        ConfigError: The graph has an op that cannot be expressed in ``target``.
    """
    current = default_opset(model)
    if target == current:
        return model
    if target > current:
        return onnx.version_converter.convert_version(model, target)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    for node in out.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        now = onnx.defs.get_schema(node.op_type, current).since_version
        then = onnx.defs.get_schema(node.op_type, target).since_version
        if now == then:
            continue
        if node.op_type.startswith("Reduce") and len(node.input) > 1 and now >= 18 > then:
            _axes_to_attribute(node, inits)
        elif node.op_type == "Split" and now >= 18 > then:
            _drop_num_outputs(node)
        elif node.op_type in _SAME_FOR_FLOAT:
            if node.op_type == "Reshape":
                _drop_irrelevant_allowzero(node, inits)
            _drop_default_attributes(node, current, target)
        else:
            raise ConfigError(f"{node.op_type} (opset {now}) cannot be expressed in opset {target}")
    for entry in out.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = target
    drop_unused_initializers(out.graph)
    return out


def _axes_to_attribute(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> None:
    axes_name = node.input[1]
    if axes_name not in inits:
        raise ConfigError(f"{node.op_type} {node.name}: axes are computed at run time; cannot move to an attribute")
    axes = numpy_helper.to_array(inits[axes_name]).astype(int).tolist()
    noop = [a for a in node.attribute if a.name == "noop_with_empty_axes"]
    if noop and noop[0].i and not axes:
        raise ConfigError(f"{node.op_type} {node.name}: noop_with_empty_axes has no older equivalent")
    kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.append(onnx.helper.make_attribute("axes", axes))
    del node.input[1:]


def _drop_default_attributes(node: onnx.NodeProto, current: int, target: int) -> None:
    """Remove attributes the older op version lacks when they hold the newer version's default value."""
    old = onnx.defs.get_schema(node.op_type, target).attributes
    new = onnx.defs.get_schema(node.op_type, current).attributes
    kept = []
    for attribute in node.attribute:
        if attribute.name in old:
            kept.append(attribute)
            continue
        default = new[attribute.name].default_value if attribute.name in new else None
        if default is None or not default.name or onnx.helper.get_attribute_value(default) != \
                onnx.helper.get_attribute_value(attribute):
            raise ConfigError(f"{node.op_type} attribute {attribute.name} has no equivalent in opset {target}")
    del node.attribute[:]
    node.attribute.extend(kept)


def _drop_irrelevant_allowzero(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> None:
    """``allowzero`` only changes how a 0 in the target shape is read; without zeros it can go."""
    shape = inits.get(node.input[1])
    if shape is not None and 0 not in numpy_helper.to_array(shape).tolist():
        kept = [a for a in node.attribute if a.name != "allowzero"]
        del node.attribute[:]
        node.attribute.extend(kept)


def _drop_num_outputs(node: onnx.NodeProto) -> None:
    kept = [a for a in node.attribute if a.name != "num_outputs"]
    del node.attribute[:]
    node.attribute.extend(kept)

