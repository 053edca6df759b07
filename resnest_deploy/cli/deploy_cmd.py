"""`resnest-deploy deploy`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..deploy.options import CPU_MODELS, DeployOptions
from ..kinds import Precision
from .options import (FLAG, AccuracyData, Arch, BenchBatch, CalibData, CalibSize, Data, ImgSize, Iters,
                      MaxAccuracyDrop, MinAgreement, Profile, Samples, Seed, Warmup, Weights, comma_list, defaults,
                      invocation, one_of)
from .render import print_table

_D = defaults(DeployOptions)


def deploy(
    arch: Arch,
    weights: Weights = _D.weights,
    precisions: Annotated[str | None, typer.Option(
        metavar="fp32,fp16,int8", parser=comma_list(Precision, "precision"),
        help="Artifacts to make, check and build engines for [default: fp32,fp16, and int8 when --calib-data is "
             "given].")] = None,
    calib_data: CalibData = _D.calib_data,
    calib_size: CalibSize = _D.calib_size,
    data: Data = _D.data,
    targets: Annotated[Path | None, typer.Option(
        metavar="FILE",
        help="targets.toml: one table per target GPU [default: this host's GPU, else one bundle for any GPU host].")]
    = _D.targets,
    profile: Profile = _D.profile,
    output: Annotated[str | None, typer.Option(
        "--output", metavar="DIR", help="Run folder [default: runs/<arch>].")] = _D.output,
    force: Annotated[bool, typer.Option("--force", metavar=FLAG, help="Rerun every step.")] = _D.force,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar=FLAG,
                                          help="Print every step, whether it would run and why; do nothing.")]
    = _D.dry_run,
    samples: Samples = _D.samples,
    bench_batch: BenchBatch = ",".join(map(str, _D.bench_batches)),
    warmup: Warmup = _D.warmup,
    iters: Iters = _D.iters,
    seed: Seed = _D.seed,
    img_size: ImgSize = _D.img_size,
    cpu_precision: Annotated[Precision, typer.Option(
        "--cpu-precision", metavar="fp32|int8", parser=one_of(Precision, tuple(map(str, CPU_MODELS))),
        help="What the Triton repository serves on CPUs: fp32, or int8 (an INT8 graph made for ONNX Runtime's CPU "
             "kernels, measured faster than FP32 on every family, least on ResNeXt: docs/benchmarks.md; needs "
             "--calib-data).")] = _D.cpu_precision,
    wait: Annotated[bool, typer.Option("--wait", metavar=FLAG, help="If another deploy is using the run folder, wait for "
                                                                    "it to finish.")] = _D.wait,
    max_accuracy_drop: MaxAccuracyDrop = _D.max_accuracy_drop,
    min_agreement: MinAgreement = _D.min_agreement,
    accuracy_data: AccuracyData = _D.accuracy_data,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG,
                                          help="Print the run's summary.json instead of the table.")] = False,
) -> None:
    """Export, FP16/INT8, parity, latency, engines per target GPU (or build bundles) and a Triton repository, in one
    run folder; a rerun redoes only what changed. Exit 1 if any parity failed."""
    from ..deploy.pipeline import run_deploy
    from .progress import progress_bar

    options = DeployOptions(
        arch=arch, weights=weights, precisions=tuple(precisions) if precisions else None, calib_data=calib_data,
        calib_size=calib_size, data=data, targets=targets, profile=profile, output=output, force=force,
        dry_run=dry_run, samples=samples, bench_batches=tuple(bench_batch), iters=iters, warmup=warmup, seed=seed,
        img_size=img_size, cpu_precision=cpu_precision, wait=wait, command=invocation(),
        max_accuracy_drop=max_accuracy_drop, min_agreement=min_agreement,
        accuracy_data=Path(accuracy_data) if accuracy_data else None)
    with progress_bar(f"deploy {arch}") as update:
        result = run_deploy(options, progress=update)
    if as_json and result.summary is not None:
        typer.echo(result.summary.read_text(encoding="utf-8"), nl=False)
    else:
        _print_result(result)
    if result.failed:
        raise typer.Exit(1)


def _print_result(result) -> None:
    title = f"plan for {result.run_dir} (--dry-run: nothing done)" if result.dry_run else f"deploy {result.run_dir}"
    print_table(title, ("step", "status", "seconds", "output", "why"),
                [(s.name, s.status, f"{s.seconds:.1f}" if s.status in ("ran", "failed") and s.seconds else "",
                  s.output, s.reason) for s in result.steps])
    for step in result.steps:
        for warning in step.warnings:
            typer.secho(f"warning: {step.name}: {warning}", fg="yellow", err=True)
    for note in result.notes:
        typer.echo(f"note: {note}")
    if not result.dry_run:
        typer.echo(f"report: {result.run_dir / 'report.html'}; summary: {result.summary}; Triton repository: "
                   f"{result.run_dir / 'model_repository'}")


def register(app: typer.Typer) -> None:
    app.command("deploy", rich_help_panel="Pipeline")(deploy)
