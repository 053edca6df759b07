"""PyTorch -> ONNX export with the graph contract checked and ONNX Runtime verification, written atomically.

Exporter path: ``torch.onnx.export(..., dynamo=True)``, the path torch supports from 2.9 on (the TorchScript
exporter is deprecated there). It traces with ``torch.export`` and its optimizer folds BatchNorm and constants,
so the graph has no Shape/Gather/Concat chains: 356 nodes for resnest50 where the TorchScript path gives 700+.
BatchNorm is folded into the convs in PyTorch before tracing (the graph is the same, tracing is much faster);
verification still compares against the unfolded eager model. The example batch is 2, because
``torch.export`` specialises a batch of 1 into a constant.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch

from resnest_deploy import __version__, interrupts
from resnest_deploy.checks import Check, failures
from resnest_deploy.atomic import atomic_paths
from resnest_deploy.paths import check_output, output_file
from resnest_deploy.progress import ProgressFn
from resnest_deploy.errors import MAX_BATCH, ExportFailedError, VerificationError
from resnest_deploy.models import create_model
from resnest_deploy.models.fold import fold_batchnorm
from resnest_deploy.models.synthetic import synthetic_images
from resnest_deploy.stages import stage_durations

from .graph import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, TWO_GB, InspectReport, inspect_onnx
from .graph_index import set_dynamic_hw
from .metadata import ArtifactMeta, manifest_path, manifest_text, meta_for_model, write_metadata
from .opset import convert_opset
from .options import ExportOptions, validate_export
from .verify import compare_with_eager

EXPORT_STAGES = ("build model", "torch.onnx.export", "finalize graph", "write + check contract",
                 "verify with ONNX Runtime")


@dataclass
class ExportResult:
    """A finished export: the file, its manifest, contract report, verification and time per stage."""

    path: Path
    manifest: Path
    meta: ArtifactMeta
    report: InspectReport
    comparisons: list[Check]
    timings: dict[str, float] = field(default_factory=dict)


def default_output(arch: str) -> Path:
    """``artifacts/<arch>/<arch>.onnx``."""
    return Path("artifacts") / arch / f"{arch}.onnx"


def _torch_export(model: torch.nn.Module, size: int, batch: int | None, opset: int) -> onnx.ModelProto:
    example = synthetic_images(batch or 2, size, torch.Generator().manual_seed(0))
    dynamic_shapes = None
    if batch is None:
        dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}
    chatter = io.StringIO()
    # Test hook (RESNEST_DEPLOY_PAUSE_AT): a point inside torch's exporter, reached while it traces the model.
    hook = model.register_forward_pre_hook(lambda *_: interrupts.pause_point("inside torch.onnx.export")) \
        if os.environ.get("RESNEST_DEPLOY_PAUSE_AT") == "inside torch.onnx.export" else None
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (example,), None, dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic_shapes, opset_version=max(opset, DEFAULT_OPSET), optimize=True,
                verbose=False,
            )
    except Exception as exc:
        interrupts.check()  # torch wraps (or retries after) an interrupt: report the interrupt, not a failure
        text = _ANSI.sub("", str(exc))
        lines = [line for line in text.splitlines() if line.strip()]
        raise ExportFailedError(f"torch.onnx.export failed: {lines[0][:300] if lines else type(exc).__name__}") from exc
    finally:
        if hook is not None:
            hook.remove()
    interrupts.check()
    return program.model_proto


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _finalize(proto: onnx.ModelProto, meta: ArtifactMeta, *, dynamic: bool, dynamic_hw: bool) -> onnx.ModelProto:
    """Name the dynamic axes, drop exporter-only annotations, set the opset and store the metadata."""
    graph = proto.graph
    if dynamic:
        symbol = graph.input[0].type.tensor_type.shape.dim[0].dim_param
        for value in (*graph.input, *graph.output, *graph.value_info):
            for dim in value.type.tensor_type.shape.dim:
                if symbol and dim.dim_param == symbol:
                    dim.dim_param = "batch"
    if dynamic_hw:
        set_dynamic_hw(proto)
    # Stack traces and exporter annotations carry local paths and change from run to run.
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        del value.metadata_props[:]
    del proto.metadata_props[:]
    proto = convert_opset(proto, meta.opset)
    proto.producer_name = "resnest-deploy"
    proto.producer_version = __version__
    graph = proto.graph
    graph.name = meta.arch
    write_metadata(proto, meta)
    return proto


def _save(proto: onnx.ModelProto, path: Path, final_name: str) -> None:
    data_bytes = sum(t.ByteSize() for t in proto.graph.initializer)
    if data_bytes > TWO_GB:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{final_name}.data", size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))


def verification_cases(size: int, batch: int | None) -> list[tuple[int, int]]:
    """(batch, size) pairs: batch 1 and 3 (or the fixed batch) at the export size, and one at size + 1.

    The size + 1 case makes some feature maps odd, where ceil_mode average pooling with
    count_include_pad=False (ResNeSt's avg-down shortcut) is known to differ between runtimes.
    """
    if batch is None:
        return [(1, size), (3, size), (1, size + 1)]
    return [(batch, size), (batch, size + 1)]


def export_onnx(options: ExportOptions, *, progress: ProgressFn | None = None) -> ExportResult:
    """Export an architecture to ONNX, check the graph contract, verify against eager, and write atomically.

    Args:
        options: What to export.
        progress: Called as each stage starts: (stage name, stages done, number of stages; see ``EXPORT_STAGES``).

    Returns:
        The result, with the file at ``result.path`` and its manifest beside it.

    Raises:
        ConfigError: Invalid options (opset < 13, image size < 32, bad batch).
        OutputError: The output folder cannot be written.
        UnknownArchError, CheckpointError, WeightsMismatchError: From building the model.
        ExportFailedError: torch's exporter failed.
        VerificationError: The contract or the ONNX Runtime comparison failed; nothing is left at the target
            (with ``keep_failed``, the file is kept as ``*.failed.onnx``).
    """
    size, batch = validate_export(options)
    output = output_file(options.output or default_output(options.arch), f"{options.arch}.onnx")
    manifest = manifest_path(output)
    check_output(output)
    check_output(manifest)
    timings: dict[str, float] = {}

    def stage(name: str) -> None:
        timings[name] = time.perf_counter()
        interrupts.set_stage(name)
        if progress:
            progress(name, EXPORT_STAGES.index(name), len(EXPORT_STAGES))

    with interrupts.producing(output), interrupts.stage("export"):
        stage(EXPORT_STAGES[0])
        model = create_model(options.arch, weights=options.weights, num_classes=options.num_classes,
                             seed=options.seed)
        stage(EXPORT_STAGES[1])
        proto = _torch_export(fold_batchnorm(model), size, batch, options.opset)
        stage(EXPORT_STAGES[2])
        meta = meta_for_model(model, size=size, opset=options.opset,
                              batch="dynamic" if batch is None else str(batch), dynamic_hw=options.dynamic_hw)
        proto = _finalize(proto, meta, dynamic=batch is None, dynamic_hw=options.dynamic_hw)
        stage(EXPORT_STAGES[3])

        def describe(report: InspectReport, comparisons: list[Check]) -> str:
            timings.update(stage_durations(timings))
            return manifest_text(
                output, meta, graph={"nodes": report.node_count, "ops": report.op_histogram,
                                     "bytes": report.size_bytes},
                checks=[c.to_dict() for c in report.checks], verification=[c.to_dict() for c in comparisons],
                timings_s=timings)

        report, comparisons = _write_checked(proto, model, output, options, size, batch, stage, describe)
    return ExportResult(output, manifest, meta, report, comparisons, timings)


def _write_checked(proto: onnx.ModelProto, model: torch.nn.Module, output: Path, options: ExportOptions, size: int,
                   batch: int | None, stage: Callable[[str], None],
                   describe: Callable[[InspectReport, list[Check]], str]) -> tuple[InspectReport, list[Check]]:
    """Save to a temporary file, check the contract, verify against eager; rename the file and its manifest
    (``describe``'s text) into place together, only when all passed."""
    with atomic_paths(output, manifest_path(output)) as (tmp, tmp_manifest):
        _save(proto, tmp, output.name)
        report = inspect_onnx(tmp, model=proto)
        comparisons: list[Check] = []
        if options.verify:
            stage(EXPORT_STAGES[4])
            comparisons = compare_with_eager(model, proto, cases=verification_cases(size, batch), seed=options.seed)
        problems = [f"contract: {c.name}: {c.detail}" for c in report.failures]
        problems += [f"verify: {c.name}: {c.detail}" for c in failures(comparisons)]
        if problems:
            kept = ""
            if options.keep_failed:
                failed = output.with_name(output.stem + ".failed.onnx")
                os.replace(tmp, failed)
                kept = f"; kept as {failed}"
            raise VerificationError(f"export of {options.arch} failed its checks{kept}", details=problems)
        tmp_manifest.write_text(describe(report, comparisons), encoding="utf-8")
    return report, comparisons


