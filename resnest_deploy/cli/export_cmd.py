"""`resnest-deploy export` and `resnest-deploy inspect`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from resnest_deploy.exporters.options import ExportOptions
from .options import FLAG, Arch, ImgSize, Seed, Weights, defaults
from .progress import progress_bar
from .render import print_checks, print_table

_D = defaults(ExportOptions)


def export(
    arch: Arch,
    weights: Weights = _D.weights,
    output: Annotated[str | None, typer.Option(metavar="PATH",
        help="Target .onnx path, or an existing folder [default: artifacts/<arch>/<arch>.onnx].")] = _D.output,
    opset: Annotated[int, typer.Option(metavar="N", help="ONNX opset, 13 or newer.")] = _D.opset,
    img_size: ImgSize = _D.img_size,
    batch_axis: Annotated[str, typer.Option(
        "--batch-axis", metavar="dynamic|N",
        help="Batch axis of the file: 'dynamic' (any batch at run time) or a fixed size N.")] = _D.batch,
    dynamic_hw: Annotated[bool, typer.Option("--dynamic-hw", metavar=FLAG,
                                             help="Also make height and width dynamic.")] = _D.dynamic_hw,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", metavar=FLAG,
                                         help="Compare with eager on ONNX Runtime.")] = _D.verify,
    keep_failed: Annotated[bool, typer.Option("--keep-failed", metavar=FLAG,
                                              help="Keep a failing export as *.failed.onnx.")] = _D.keep_failed,
    num_classes: Annotated[int | None, typer.Option(min=1, metavar="N", help="Classifier size [default: the checkpoint's].")]
    = _D.num_classes,
    seed: Seed = _D.seed,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print the manifest as JSON.")] = False,
) -> None:
    """Export an architecture to a verified, dynamic-batch ONNX file (atomic write, manifest beside it)."""
    from resnest_deploy.exporters.onnx_export import export_onnx

    options = ExportOptions(
        arch=arch, weights=weights, output=output, opset=opset, img_size=img_size, batch=batch_axis,
        dynamic_hw=dynamic_hw, verify=verify, keep_failed=keep_failed, num_classes=num_classes, seed=seed,
    )
    with progress_bar(f"exporting {arch}") as update:
        result = export_onnx(options, progress=update)
    if as_json:
        typer.echo(result.manifest.read_text())
        return
    print_checks(f"graph contract: {result.path}", result.report.checks)
    if result.comparisons:
        print_checks("verification vs eager (ONNX Runtime CPU)", result.comparisons)
    print_table("time (s)", ("stage", "seconds"), [(k, f"{v:.1f}") for k, v in result.timings.items()])
    typer.echo(f"wrote {result.path} and {result.manifest} (weights: {result.meta.weights})")


def inspect(
    model: Annotated[Path, typer.Argument(metavar="MODEL.onnx", help="ONNX file.")],
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON instead of tables.")] = False,
) -> None:
    """Show an ONNX file's inputs/outputs, op histogram and graph-contract verdicts (exit 1 if any fails)."""
    from resnest_deploy.exporters.graph import inspect_onnx

    report = inspect_onnx(model)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        rows = [("input", t.name, t.dtype, str(list(t.shape)), str(t.dynamic_axes or "-")) for t in report.inputs]
        rows += [("output", t.name, t.dtype, str(list(t.shape)), str(t.dynamic_axes or "-")) for t in report.outputs]
        print_table(f"{model} (opset {report.opset}, {report.node_count} nodes, {report.size_bytes / 1e6:.1f} MB)",
                    ("", "name", "type", "shape", "dynamic axes"), rows)
        print_table("ops", ("op", "count"), [(k, str(v)) for k, v in report.op_histogram.items()])
        if report.meta:
            m = report.meta
            typer.echo(f"arch {m.arch}, precision {m.precision}, target: {m.target}, input {m.input.size}px "
                       f"{m.input.interpolation}, weights: {m.weights}")
        print_checks("graph contract", report.checks)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("export", rich_help_panel="Artifacts")(export)
    app.command("inspect", rich_help_panel="Artifacts")(inspect)
