"""Find the first stage whose output diverges: the artifact's block outputs against eager forward hooks.

Block outputs are found in the ONNX graph by structure, which survives FP16 conversion and Q/DQ insertion: the
stem ends at the MaxPool, and each residual block ends at a Relu fed by an Add. A copy of the graph exposes them
as extra outputs; the artifact itself is not changed, so no fusion is broken in what is deployed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx

from ..errors import ArtifactError
from ..runners.ort_runner import OrtRunner
from ..runners.torch_runner import TorchRunner


@dataclass(frozen=True)
class StageError:
    """Divergence of one stage's output."""

    stage: str
    max_abs: float
    rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.rel)) and self.rel <= self.tolerance

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


@dataclass(frozen=True)
class Localization:
    """Per-stage errors and the verdict: the first stage over tolerance and the stage with the largest jump."""

    stages: tuple[StageError, ...]
    first_bad: str | None
    largest_jump: str | None

    def to_dict(self) -> dict[str, object]:
        return {"first_bad": self.first_bad, "largest_jump": self.largest_jump,
                "stages": [s.to_dict() for s in self.stages]}


_PASS_THROUGH = {"Cast", "QuantizeLinear", "DequantizeLinear"}


def stage_outputs(model: onnx.ModelProto) -> list[str]:
    """Tensor names of the stem output and of every block output, in execution order.

    A block output is a Relu whose input comes from an Add, looking through Cast and Q/DQ nodes that FP16 and INT8
    passes may put between them.
    """
    producers = {out: node for node in model.graph.node for out in node.output}

    def source(name: str) -> onnx.NodeProto | None:
        node = producers.get(name)
        while node is not None and node.op_type in _PASS_THROUGH:
            node = producers.get(node.input[0])
        return node

    pools = [n.output[0] for n in model.graph.node if n.op_type == "MaxPool"]
    blocks = [n.output[0] for n in model.graph.node
              if n.op_type == "Relu" and (src := source(n.input[0])) is not None and src.op_type == "Add"]
    return pools[:1] + blocks


def expose(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` with ``names`` added as graph outputs (types from shape inference)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(out)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    existing = {o.name for o in out.graph.output}
    for name in names:
        if name not in existing:
            elem = types.get(name, onnx.TensorProto.FLOAT)
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    return out


def localize(eager: TorchRunner, model: onnx.ModelProto, x: np.ndarray, *, tolerance: float) -> Localization:
    """Compare every stage's output of the artifact with the eager model's on input ``x``.

    Raises:
        ArtifactError: The graph's block structure does not match the eager model's stages.
    """
    names = stage_outputs(model)
    stages = [name for name, _ in eager.model.stages()]
    if len(names) != len(stages):
        raise ArtifactError(f"cannot map the graph's blocks to the model: found {len(names)} stage outputs, "
                            f"the model has {len(stages)} stages")
    reference = eager.forward_with_stages(x)
    with OrtRunner(expose(model, names), provider="cpu", outputs=names) as runner:
        actual = runner.infer({runner.input_specs[0].name: x})
    errors = []
    for stage, name in zip(stages, names):
        ref, got = reference[stage], actual[name].astype(np.float32)
        if ref.shape != got.shape:
            errors.append(StageError(stage, float("inf"), float("inf"), tolerance))
            continue
        max_abs = float(np.abs(got - ref).max())
        errors.append(StageError(stage, max_abs, max_abs / max(float(np.abs(ref).max()), 1e-6), tolerance))
    first_bad = next((e.stage for e in errors if not e.passed), None)
    jumps = [(errors[i].rel / max(errors[i - 1].rel, 1e-12), errors[i].stage) for i in range(1, len(errors))]
    largest = max(jumps)[1] if jumps else None
    return Localization(tuple(errors), first_bad, largest)
