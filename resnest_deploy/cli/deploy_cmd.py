"""`resnest-deploy deploy`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..deploy.options import CPU_MODELS, DeployOptions
from ..kinds import Precision
from .options import FLAG, comma_list, defaults, one_of, positive_int
from .render import print_table

_D = defaults(DeployOptions)


def deploy(
    arch: Annotated[str, typer.Option("--arch", help="Registered architecture, e.g. resnest50.")],
    weights: Annotated[Path | None, typer.Option(help="Checkpoint [default: random init, BatchNorm re-estimated].")]
    = _D.weights,
    precisions: Annotated[str, typer.Option(
        metavar="fp32,fp16,int8", parser=comma_list(Precision, "precision"),
        help="Artifacts to make, check and build engines for.")] = ",".join(_D.precisions),
    calib_data: Annotated[str | None, typer.Option(
        help="INT8 calibration images: folder, list file, or 'synthetic' (pipeline check only).")] = _D.calib_data,
    calib_size: Annotated[int, typer.Option(min=1, help="Calibration images, sampled with --seed.")] = _D.calib_size,
    data: Annotated[Path | None, typer.Option(
        help="Images for parity (class folders also name Triton's labels) [default: synthetic inputs].")] = _D.data,
    targets: Annotated[Path | None, typer.Option(
        help="targets.toml: one table per target GPU [default: this host's GPU, else one bundle for any GPU host].")]
    = _D.targets,
    batch: Annotated[str, typer.Option(help="Engine profile MIN:OPT:MAX (targets may set their own).")] = _D.batch,
    out: Annotated[Path | None, typer.Option(help="Run folder [default: runs/<arch>].")] = _D.out,
    force: Annotated[bool, typer.Option("--force", metavar=FLAG, help="Rerun every step.")] = _D.force,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar=FLAG,
                                          help="Print every step, whether it would run and why; do nothing.")]
    = _D.dry_run,
    samples: Annotated[int, typer.Option(min=1, help="Parity inputs per artifact.")] = _D.samples,
    bench_batch: Annotated[str, typer.Option(
        metavar="N,N,...", parser=comma_list(positive_int, "batch size"), help="Batch sizes to time.")]
    = ",".join(map(str, _D.bench_batches)),
    iters: Annotated[int, typer.Option(min=1, help="Timed rounds per batch size.")] = _D.iters,
    seed: Annotated[int, typer.Option(min=0, help="Seed of random init, sampling and synthetic inputs.")] = _D.seed,
    img_size: Annotated[int | None, typer.Option(min=1, help="Square input size [default: the arch's native size].")]
    = _D.img_size,
    cpu_model: Annotated[Precision, typer.Option(
        metavar="fp32|int8", parser=one_of(Precision, tuple(map(str, CPU_MODELS))), help="What the Triton repository serves on CPUs: fp32, or int8 (an INT8 graph made for "
                                  "ONNX Runtime's CPU kernels, measured faster than FP32 on every family, least on "
                                  "ResNeXt: docs/benchmarks.md; needs --calib-data).")]
    = _D.cpu_model,
) -> None:
    """Export, FP16/INT8, parity, latency, engines per target GPU (or build bundles) and a Triton repository, in one
    run folder; a rerun redoes only what changed. Exit 1 if any parity failed."""
    from ..deploy.pipeline import run_deploy
    from .progress import progress_bar

    options = DeployOptions(arch=arch, weights=weights, precisions=tuple(precisions), calib_data=calib_data,
                            calib_size=calib_size, data=data, targets=targets, batch=batch, out=out, force=force,
                            dry_run=dry_run, samples=samples, bench_batches=tuple(bench_batch), iters=iters, seed=seed,
                            img_size=img_size, cpu_model=cpu_model)
    with progress_bar(f"deploy {arch}") as update:
        result = run_deploy(options, progress=update)
    title = f"plan for {result.run_dir} (--dry-run: nothing done)" if result.dry_run else f"deploy {result.run_dir}"
    print_table(title, ("step", "status", "seconds", "output", "why"),
                [(s.name, s.status, f"{s.seconds:.1f}" if s.status in ("ran", "failed") and s.seconds else "",
                  s.output, s.reason) for s in result.steps])
    if not result.dry_run:
        typer.echo(f"report: {result.run_dir / 'report.html'}; Triton repository: "
                   f"{result.run_dir / 'model_repository'}")
    if result.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("deploy", rich_help_panel="Pipeline")(deploy)
