"""`resnest-deploy quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from resnest_deploy.calibration.int8 import Method
from resnest_deploy.calibration.options import QUANTIZED, QuantizeOptions

from ..kinds import Precision, Runtime
from .options import FLAG, AccuracyData, ClassIndex, MaxAccuracyDrop, MaxTrials, MinAgreement, defaults, one_of
from .render import print_checks, print_table

_D = defaults(QuantizeOptions)


def quantize(
    model: Annotated[Path, typer.Argument(metavar="MODEL.onnx", help="FP32 ONNX file (this tool's export, or any with --arch).")],
    precision: Annotated[Precision, typer.Option(
        metavar="fp16|int8", parser=one_of(Precision, QUANTIZED), help="fp16 (FP16-typed graph) or int8 (explicit Q/DQ).")],
    calib_data: Annotated[str | None, typer.Option(
        metavar="DIR|LIST|synthetic", help="Folder (class tree or flat) or list file of calibration images; 'synthetic' only checks the "
             "pipeline. Required for int8.")] = _D.calib_data,
    calib_size: Annotated[int, typer.Option(min=1, metavar="N", help="Calibration images, sampled with --seed.")] = _D.calib_size,
    method: Annotated[Method, typer.Option(metavar="percentile|max|entropy", help="INT8 calibration: percentile (99.99%), max or entropy.")]
    = _D.method,
    exclude: Annotated[list[str], typer.Option(
        "--exclude", metavar="PATTERN", help="Keep matching layers/stages in float, e.g. 'layer4.*', 'stem', '*.conv2.fc1'. "
                          "Repeatable; a pattern that matches nothing is an error.")] = [],  # noqa: B006
    quantize_attention: Annotated[bool, typer.Option(
        "--quantize-attention", metavar=FLAG, help="INT8 for the attention fc layers too (float by default).")]
    = _D.quantize_attention,
    keep_fp32: Annotated[list[str], typer.Option(
        "--keep-fp32", metavar="OP", help="FP16 graphs (fp16, and int8's float parts with --high-precision fp16): "
                                          "op types to keep in FP32, e.g. Softmax. Repeatable.")] = [],  # noqa: B006
    high_precision: Annotated[str | None, typer.Option(
        "--high-precision", metavar="fp16|fp32", help="INT8 for TensorRT: the type of everything outside the Q/DQ "
        "pairs (TensorRT runs a strongly typed graph as typed) [default: fp16].")] = _D.high_precision,
    sensitivity: Annotated[bool, typer.Option(
        "--sensitivity", metavar=FLAG, help="INT8: quantize one block at a time, rank blocks, suggest --exclude.")]
    = _D.sensitivity,
    output: Annotated[str | None, typer.Option(metavar="PATH",
        help="Target .onnx, or an existing folder [default: <model>.<precision>.onnx].")] = _D.output,
    arch: Annotated[str | None, typer.Option(metavar="ARCH", help="Architecture, for ONNX files without metadata.")] = _D.arch,
    img_size: Annotated[int | None, typer.Option(min=1, metavar="N", help="Input size, for ONNX without metadata.")] = _D.img_size,
    seed: Annotated[int, typer.Option(min=0, metavar="N", help="Seed of the image sampling.")] = _D.seed,
    cache_dir: Annotated[str | None, typer.Option(
        metavar="DIR", help="Calibration cache [default: ~/.cache/resnest-deploy].")]
    = _D.cache_dir,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", metavar=FLAG,
                                        help="Cache preprocessed calibration images.")] = _D.use_cache,
    accuracy_data: AccuracyData = _D.accuracy_data,
    max_accuracy_drop: MaxAccuracyDrop = _D.max_accuracy_drop,
    min_agreement: MinAgreement = _D.min_agreement,
    class_index: ClassIndex = _D.class_index,
    max_trials: MaxTrials = _D.max_trials,
    runtime: Annotated[Runtime, typer.Option("--runtime", metavar="tensorrt|cpu", parser=one_of(Runtime),
        help="INT8: tensorrt (signed Q/DQ placed for TensorRT's fusions) or cpu (U8S8 for ONNX Runtime's CPU "
             "kernels, written as <model>.int8-cpu.onnx; measured faster than FP32 on every family, least on "
             "ResNeXt's grouped convolutions: docs/benchmarks.md).")] = _D.target,
) -> None:
    """Make the FP16 or INT8 (Q/DQ, TensorRT placement) version of an FP32 ONNX and check it on ONNX Runtime."""
    from resnest_deploy.calibration.quantize import quantize_onnx
    from .progress import progress_bar

    options = QuantizeOptions(
        model=model, precision=precision, output=output, calib_data=calib_data, calib_size=calib_size,
        method=method, exclude=tuple(exclude), quantize_attention=quantize_attention,
        keep_fp32_ops=tuple(keep_fp32), seed=seed, arch=arch, img_size=img_size, cache_dir=cache_dir,
        use_cache=cache, sensitivity=sensitivity, target=runtime, high_precision=high_precision,
        accuracy_data=accuracy_data, max_accuracy_drop=max_accuracy_drop, min_agreement=min_agreement,
        class_index=class_index, max_trials=max_trials,
    )
    with progress_bar(f"quantizing to {precision.value}") as update:
        result = quantize_onnx(options, progress=update)
    _print_result(result)


def _print_result(result) -> None:
    for warning in result.warnings:
        typer.secho(f"warning: {warning}", fg="yellow", err=True)
    calib = result.calibration
    if calib is not None:
        typer.echo(f"calibration data: {calib.array.shape[0]} images from {calib.source}"
                   f"{' (cached)' if calib.cache_hit else ''}; {len(calib.skipped)} unreadable skipped")
    if result.placement is not None:
        weights = [u for u in result.placement.uses if u.kind == "weight"]
        floats = sorted({u.owner for u in result.placement.excluded if u.kind == "weight"})
        typer.echo(f"INT8 layers: {len(weights)}; kept float: {len(floats)}"
                   + (f" ({', '.join(floats[:6])}{', ...' if len(floats) > 6 else ''})" if floats else ""))
    if result.rules:
        print_checks("Q/DQ for ONNX Runtime's CPU kernels" if result.meta.target == "cpu" else
                     "TensorRT Q/DQ placement", result.rules)
    a = result.agreement
    print_table(f"vs FP32 graph on {a.samples} images (ONNX Runtime CPU)",
                ("top-1 agreement", "mean cosine", "min cosine", "max_abs_rel"),
                [(f"{a.top1_agreement:.2%}", f"{a.cosine_mean:.6f}", f"{a.cosine_min:.6f}", f"{a.max_abs_rel:.3g}")])
    if result.sensitivity:
        print_table("sensitivity: error added by quantizing one block alone (1 - mean cosine)",
                    ("block", "sites", "error", "top-1 agreement"),
                    [(s.block, str(s.sites), f"{s.error:.3g}", f"{s.top1_agreement:.2%}") for s in result.sensitivity])
        hint = " ".join(f"--exclude '{p}'" for p in result.suggested_exclude)
        typer.echo(f"suggested: {hint}" if hint else "suggested: no block stands out; nothing to exclude")
    if result.budget is not None:
        _print_budget(result.budget)
    typer.echo(f"wrote {result.path} and {result.path.name}.json ({result.meta.precision})")


def _print_budget(budget: dict) -> None:
    goal, fp32, plain, chosen = budget["goal"], budget["fp32"], budget["plain_int8"], budget["int8"]
    unit = "top-1" if goal["kind"] == "accuracy" else "agreement"
    rows = [("FP32", f"{fp32['score']:.2f}%" if goal["kind"] == "accuracy" else "100.00%", "-", "")]
    rows += [("INT8 plain", f"{plain['score']:.2f}%", "0", ""),
             ("INT8 chosen", f"{chosen['score']:.2f}%", str(len(chosen["kept_float"])),
              ", ".join(chosen["kept_float"]))]
    print_table(f"accuracy budget: {goal['description']} on {budget['data']['images']} images "
                f"({budget['trials_run']} trials)", ("graph", unit, "float blocks", "kept float"), rows)
    latency = budget.get("latency")
    if latency:
        typer.echo(f"CPU latency (batch {latency['batch']}, interleaved): chosen {latency['speedup_vs_fp32']:.2f}x "
                   f"FP32, plain INT8 {latency['plain_speedup_vs_fp32']:.2f}x; kept blocks cost "
                   + (", ".join(f"{b} {ms:+.2f} ms" for b, ms in latency["cost_ms"].items()) or "nothing"))


def register(app: typer.Typer) -> None:
    app.command("quantize", rich_help_panel="Artifacts")(quantize)
