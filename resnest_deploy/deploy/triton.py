"""A Triton Inference Server model repository for a deployment (layout and config facts: docs/deploy.md).

- ``<arch>_onnx``: platform ``onnxruntime_onnx`` with ``1/model.onnx``, so the repository serves on a CPU-only
  host as it is;
- ``<arch>_trt_<precision>``: platform ``tensorrt_plan``, whose ``cc_model_filenames`` map each target's compute
  capability to its plan file (``1/model.sm86.plan``), so one repository serves every target GPU.

Input and output names, data types and dims come from the ONNX graph; ``max_batch_size`` is the batch profile's
max (the smallest over the targets of a plan model, which no engine may be asked to exceed) and dynamic
batching prefers the profile's opt. ``config.pbtxt`` is protobuf text format of Triton's ``ModelConfig``
(written here by hand; the tests parse it with Triton's own ``model_config.proto`` from ``tritonclient``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from ..atomic import atomic_path, write_text_atomic
from ..errors import ArtifactError
from ..kinds import Precision
from resnest_deploy.exporters.graph import tensor_info
from .targets import Target

# ONNX element type -> Triton data type (model_config.proto's DataType); ONNX types Triton has none for (FP8, INT4,
# complex) are refused when the repository is written.
_TRITON_TYPES = {"float": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "double": "TYPE_FP64",
                 "int64": "TYPE_INT64", "int32": "TYPE_INT32", "int16": "TYPE_INT16", "int8": "TYPE_INT8",
                 "uint64": "TYPE_UINT64", "uint32": "TYPE_UINT32", "uint16": "TYPE_UINT16", "uint8": "TYPE_UINT8",
                 "bool": "TYPE_BOOL", "string": "TYPE_STRING"}


@dataclass(frozen=True)
class TensorConfig:
    """One input or output as Triton sees it (dims without the batch axis; -1 where dynamic)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass
class ModelEntry:
    """One model folder of the repository."""

    name: str
    platform: str
    max_batch_size: int
    preferred_batch: int
    inputs: list[TensorConfig]
    outputs: list[TensorConfig]
    gpu: bool
    files: dict[str, str] = field(default_factory=dict)  # compute capability -> plan file (tensorrt_plan)
    label_file: str | None = None
    default_file: str | None = None  # the plan for GPUs no key names (a target with no pinned capability)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "platform": self.platform, "max_batch_size": self.max_batch_size,
                "preferred_batch": self.preferred_batch, "files": dict(self.files), "default_file": self.default_file,
                "labels": self.label_file}


def io_configs(model: onnx.ModelProto) -> tuple[list[TensorConfig], list[TensorConfig]]:
    """Triton inputs and outputs of a graph: its names, element types and dims after the batch axis.

    Raises:
        ArtifactError: An input or output of a type Triton has no data type for.
    """
    initializers = {i.name for i in model.graph.initializer}

    def convert(values) -> list[TensorConfig]:
        out = []
        for value in values:
            info = tensor_info(value)
            dims = tuple(d if isinstance(d, int) else -1 for d in info.shape[1:])
            if info.dtype not in _TRITON_TYPES:
                raise ArtifactError(f"{info.name} is a {info.dtype} tensor, a type Triton cannot serve")
            out.append(TensorConfig(info.name, _TRITON_TYPES[info.dtype], dims))
        return out

    return convert(v for v in model.graph.input if v.name not in initializers), convert(model.graph.output)


def render_config(entry: ModelEntry) -> str:
    """``config.pbtxt`` text for one model."""

    def tensor(t: TensorConfig, label: str | None = None) -> str:
        dims = ", ".join(str(d) for d in t.dims)
        extra = f'\n    label_filename: "{label}"' if label else ""
        return f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n    dims: [ {dims} ]{extra}\n  }}'

    lines = [f'name: "{entry.name}"', f'platform: "{entry.platform}"', f"max_batch_size: {entry.max_batch_size}",
             "input [", ",\n".join(tensor(t) for t in entry.inputs), "]",
             "output [", ",\n".join(tensor(t, entry.label_file if i == 0 else None)
                                    for i, t in enumerate(entry.outputs)), "]",
             "dynamic_batching {", f"  preferred_batch_size: [ {entry.preferred_batch} ]",
             "  max_queue_delay_microseconds: 100", "}",
             "instance_group [", f"  {{ kind: {'KIND_GPU' if entry.gpu else 'KIND_CPU'} count: 1 }}", "]"]
    if entry.default_file:
        lines.append(f'default_model_filename: "{entry.default_file}"')
    if entry.files:
        lines.append("cc_model_filenames [")
        lines.append(",\n".join(f'  {{ key: "{cc}" value: "{name}" }}' for cc, name in sorted(entry.files.items())))
        lines.append("]")
    first = entry.inputs[0]
    if entry.gpu and all(d > 0 for d in first.dims):  # TensorRT's first run is slow: warm up at load time
        dims = ", ".join(str(d) for d in first.dims)
        lines += ["model_warmup [", "  {", '    name: "zeros"', "    batch_size: 1", "    inputs {",
                  f'      key: "{first.name}"', "      value {", f"        data_type: {first.data_type}",
                  f"        dims: [ {dims} ]", "        zero_data: true", "      }", "    }", "  }", "]"]
    return "\n".join(lines) + "\n"


def onnx_model_name(arch: str) -> str:
    return f"{arch}_onnx"


def plan_model_name(arch: str, precision: str) -> str:
    return f"{arch}_trt_{precision}"


def repository_files(arch: str, targets: list[Target]) -> dict[str, set[str]]:
    """model folder -> the files its version folder holds when every target has built its plans (the repository's
    layout, without reading any graph)."""
    from .triton_image import repository_files as image_files

    files = {onnx_model_name(arch): {"model.onnx"}, **image_files(arch)}
    for precision in Precision:
        users = [t for t in targets if precision in t.precisions]
        if users:
            files[plan_model_name(arch, precision)] = {t.plan_name() for t in users}
    return files


def plan_path(root: Path, arch: str, precision: str, target: Target) -> Path:
    """Where a target's engine of ``precision`` lives in the repository: ``<model>/1/model.sm<XY>.plan``."""
    return root / plan_model_name(arch, precision) / "1" / target.plan_name()


# Triton's ONNX Runtime backends built with ONNX Runtime before 1.17 read at most IR version 9 ("Unsupported model
# IR version: 10"); opset 18 is valid at IR 9 (ONNX 1.14), so the repository's copy says 9 and declares only the
# operator sets its nodes use. ONNX Runtime 1.15 is the first to read IR 9.
TRITON_IR_VERSION = 9


def triton_onnx(source: Path, target: Path) -> None:
    """Write ``source`` to ``target`` as Triton's ONNX Runtime backends of the last years read it: IR version 9,
    only the operator-set imports its nodes use. Nothing else in the graph changes."""
    model = onnx.load(str(source), load_external_data=True)
    used = {node.domain or "" for node in model.graph.node} | {""}
    kept = [o for o in model.opset_import if (o.domain or "") in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    model.ir_version = min(model.ir_version, TRITON_IR_VERSION)
    onnx.checker.check_model(model)
    with atomic_path(target) as tmp:
        onnx.save_model(model, str(tmp))


def link_or_copy(source: Path, target: Path) -> None:
    """Put ``source``'s bytes at ``target`` atomically: a hard link when the folder allows it, else a copy."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def repository_entries(arch: str, onnx_path: Path, targets: list[Target], *,
                       labels: list[str] | None = None) -> list[ModelEntry]:
    """The models of the repository (the record its files are written from, and its report section read from):
    the ONNX model, and one plan model per precision whose plan files the targets' builds put in place
    (``1/model.sm<XY>.plan``)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    inputs, outputs = io_configs(model)
    label_file = "labels.txt" if labels else None
    cpu_max = max(t.profile[2] for t in targets) if targets else 32
    cpu_opt = min(t.profile[1] for t in targets) if targets else 8
    entries = [ModelEntry(onnx_model_name(arch), "onnxruntime_onnx", cpu_max, cpu_opt, inputs, outputs, False,
                          label_file=label_file)]
    for precision in Precision:
        users = [t for t in targets if precision in t.precisions]
        if not users:
            continue
        anywhere = next((t for t in users if not t.compute_capability), None)
        entries.append(ModelEntry(
            plan_model_name(arch, precision), "tensorrt_plan", min(t.profile[2] for t in users),
            min(t.profile[1] for t in users), inputs, outputs, True,
            {t.compute_capability: t.plan_name() for t in users if t.compute_capability}, label_file,
            anywhere.plan_name() if anywhere else None))
    return entries


def write_repository(root: Path, entries: list[ModelEntry], onnx_path: Path, *,
                     labels: list[str] | None = None) -> None:
    """Write (or refresh) the repository's configs, labels and the ONNX model file from ``entries``. A plan model
    is written only when one of its plans is in place (built here, or by a bundle's build.sh, which writes the
    config itself): a stock Triton server exits on a model folder without its file."""
    for entry in entries:
        plans = [*entry.files.values(), *([entry.default_file] if entry.default_file else [])]
        if entry.gpu and not any((root / entry.name / "1" / plan).is_file() for plan in plans):
            continue
        folder = root / entry.name
        write_text_atomic(folder / "config.pbtxt", render_config(entry))
        if labels:
            write_text_atomic(folder / "labels.txt", "\n".join(labels) + "\n")
    triton_onnx(onnx_path, root / entries[0].name / "1" / "model.onnx")
