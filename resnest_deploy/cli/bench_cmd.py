"""`resnest-deploy bench` and `resnest-deploy report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .render import print_table


def bench(
    artifacts: Annotated[list[Path], typer.Argument(help="ONNX files (or engines) to time.")] = [],  # noqa: B006
    arch: Annotated[str | None, typer.Option(help="Architecture [default: from the artifacts' metadata].")] = None,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint for the eager model.")] = None,
    backends: Annotated[str, typer.Option(help="Comma-separated: eager, ort, trt.")] = "eager,ort",
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8",
    warmup: Annotated[int, typer.Option(help="Untimed rounds before measuring.")] = 3,
    iters: Annotated[int, typer.Option(help="Timed rounds (each runs every contender once).")] = 20,
    threads: Annotated[int | None, typer.Option(help="CPU threads for every backend [default: torch's].")] = None,
    report: Annotated[Path | None, typer.Option(help="JSON report path (Markdown beside it).")] = None,
    cuda_graph: Annotated[bool, typer.Option("--cuda-graph", help="TensorRT: replay a captured CUDA graph.")]
    = False,
) -> None:
    """Time eager PyTorch and each artifact, interleaved round by round; p50/p90/p99, throughput, ratio to eager."""
    from ..bench.harness import BenchOptions, default_report_path, parse_list, run_bench, write_reports
    from ..errors import ConfigError
    from .progress import phase_progress

    try:
        batches = tuple(int(b) for b in parse_list(batch, kind="batch"))
    except ValueError:
        raise ConfigError(f"--batch takes comma-separated integers, got {batch!r}") from None
    options = BenchOptions(artifacts=tuple(artifacts), arch=arch, weights=weights,
                           backends=parse_list(backends, kind="backends"), batches=batches, warmup=warmup,
                           iters=iters, threads=threads, cuda_graph=cuda_graph)
    with phase_progress("bench") as update:
        result = run_bench(options, progress=update)
    json_path, md_path = write_reports(result, report or default_report_path(
        artifacts[0] if artifacts else None, result.arch))
    env = result.environment
    typer.echo(f"{result.arch} @ {result.input_size}px, weights: {result.weights}; {env['cpu']}, "
               f"{env['threads']} threads")
    print_table("latency (interleaved, ms)", ("contender", "batch", "p50", "p90", "p99", "img/s", "vs eager"), [
        (r["name"], str(r["batch"]), f"{r['p50_ms']:.1f}", f"{r['p90_ms']:.1f}", f"{r['p99_ms']:.1f}",
         f"{r['throughput_ips']:.1f}", f"{r['ratio_vs_eager']:.2f}x" if r["ratio_vs_eager"] else "")
        for r in result.rows
    ])
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"reports {json_path} and {md_path}")


def report(
    run_dir: Annotated[Path, typer.Argument(help="Folder holding *.parity.json and *.bench.json files.")],
    output: Annotated[Path | None, typer.Option(help="HTML path [default: RUN_DIR/report.html].")] = None,
) -> None:
    """Gather a run folder's parity and latency reports into one self-contained HTML page and a Markdown summary."""
    from ..reports import build_report

    html, md = build_report(run_dir, output)
    typer.echo(f"wrote {html} and {md}")


def register(app: typer.Typer) -> None:
    app.command("bench", rich_help_panel="Checks")(bench)
    app.command("report", rich_help_panel="Checks")(report)
