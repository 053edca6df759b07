"""Find the first stage whose output diverges: the artifact's block outputs against eager forward hooks, then the
classifier head (its logits), which is a stage too.

Block outputs are found in the ONNX graph by structure, which survives FP16 conversion and Q/DQ insertion: the
stem ends at the MaxPool, and each residual block ends at a Relu fed by an Add. A copy of the graph exposes them
as extra outputs; the artifact itself is not changed, so no fusion is broken in what is deployed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..checks import Check
from ..errors import ArtifactError
from ..metrics import max_abs_rel
from ..models.config import HEAD
from resnest_deploy.exporters.graph_index import GraphIndex
from ..runners.ort_runner import OrtRunner
from ..runners.torch_runner import TorchRunner


@dataclass(frozen=True)
class Localization:
    """Per-stage errors and the verdict: the first stage over tolerance and the stage with the largest jump.

    Each stage is a :class:`Check` whose value is the stage output's relative error
    (:func:`~resnest_deploy.metrics.max_abs_rel` with a small floor: feature maps can be small) and whose limit is
    the precision's stage tolerance.
    """

    stages: tuple[Check, ...]
    first_bad: str | None
    largest_jump: str | None

    def to_dict(self) -> dict[str, object]:
        return {"first_bad": self.first_bad, "largest_jump": self.largest_jump,
                "stages": [s.to_dict() for s in self.stages]}


def stage_outputs(model: onnx.ModelProto) -> list[str]:
    """Tensor names of the stem output and of every block output, in execution order.

    A block output is a Relu whose input comes from an Add, looking through Cast and Q/DQ nodes that FP16 and INT8
    passes may put between them.
    """
    index = GraphIndex(model.graph)
    pools = [n.output[0] for n in model.graph.node if n.op_type == "MaxPool"]
    blocks = [n.output[0] for n in model.graph.node
              if n.op_type == "Relu" and (src := index.source(n.input[0])) is not None and src.op_type == "Add"]
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
    logits = model.graph.output[0].name
    with eager:
        reference = eager.forward_with_stages(x)
    with OrtRunner(expose(model, names), provider="cpu", outputs=[*names, logits]) as runner:
        actual = runner.infer({runner.input_specs[0].name: x})
    errors = [_stage_check(stage, reference[stage], actual[name].astype(np.float32), tolerance)
              for stage, name in zip(stages, names)]
    errors.append(_stage_check(HEAD, reference["logits"], actual[logits].astype(np.float32), tolerance, floor=1.0))
    first_bad = next((e.name for e in errors if not e.passed), None)
    jumps = [(errors[i].value / max(errors[i - 1].value, 1e-12), errors[i].name) for i in range(1, len(errors))]
    largest = max(jumps)[1] if jumps else None
    return Localization(tuple(errors), first_bad, largest)


FEATURE_FLOOR = 1e-6  # relative error of a feature map: its own scale, however small (not the logits' floor of 1)


def _stage_check(stage: str, ref: np.ndarray, got: np.ndarray, tolerance: float,
                 floor: float = FEATURE_FLOOR) -> Check:
    """The stage's relative error against its tolerance (inf when the shapes differ); logits take parity's floor."""
    if ref.shape != got.shape:
        return Check(stage, False, f"shape {list(got.shape)} vs eager {list(ref.shape)}", float("inf"), tolerance)
    rel = max_abs_rel(ref, got, floor=floor)
    max_abs = float(np.abs(got.astype(np.float64) - ref).max())
    return Check(stage, rel <= tolerance, f"{rel:.3g} (max-abs {max_abs:.3g})", rel, tolerance)
