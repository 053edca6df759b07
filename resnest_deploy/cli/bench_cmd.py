"""`resnest-deploy bench` and `resnest-deploy report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..bench.options import Backend, BenchOptions
from .options import FLAG, Iters, Seed, Warmup, comma_list, defaults, positive_int
from .render import print_table

_D = defaults(BenchOptions)


def bench(
    artifacts: Annotated[list[Path], typer.Argument(metavar="ARTIFACT...", help="ONNX files (or engines) to time.")] = [],  # noqa: B006
    arch: Annotated[str | None, typer.Option(metavar="ARCH", help="Architecture [default: from the artifacts' metadata].")] = _D.arch,
    weights: Annotated[Path | None, typer.Option(metavar="FILE", help="Checkpoint for the eager model.")] = _D.weights,
    backends: Annotated[str, typer.Option(
        metavar="eager,compile,ort,trt", parser=comma_list(Backend, "backend"),
        help="Comma-separated backends to time: eager (on the GPU where there is one: FP32, FP16, FP16 "
             "channels-last), compile (torch.compile reduce-overhead, CUDA only), ort, trt.")]
    = ",".join(b.value for b in _D.backends),
    bench_batch: Annotated[str, typer.Option(
        "--bench-batch", metavar="N,N,...", parser=comma_list(positive_int, "batch size"),
        help="Batch sizes to time, comma-separated (each one a separate table row per contender).")]
    = ",".join(map(str, _D.batches)),
    warmup: Warmup = _D.warmup,
    iters: Iters = _D.iters,
    threads: Annotated[int | None, typer.Option(min=1, metavar="N", help="CPU threads for every backend [default: torch's].")]
    = _D.threads,
    output: Annotated[str | None, typer.Option("--output", metavar="PATH",
        help="Report path: JSON and Markdown side by side (r.json or r.md names both) [default: "
             "<first artifact>.bench.json beside it, or runs/<arch>/<arch>.bench.json].")] = None,
    cuda_graph: Annotated[bool, typer.Option("--cuda-graph", metavar=FLAG,
                                             help="TensorRT: replay a captured CUDA graph.")] = _D.cuda_graph,
    seed: Seed = _D.seed,
) -> None:
    """Time eager PyTorch and each artifact, interleaved round by round; p50/p90/p99, throughput, ratio to eager."""
    from ..bench.harness import reference_name, report_paths, run_bench, write_reports
    from .progress import progress_bar

    options = BenchOptions(artifacts=tuple(artifacts), arch=arch, weights=weights, backends=tuple(backends),
                           batches=tuple(bench_batch), warmup=warmup, iters=iters, threads=threads, cuda_graph=cuda_graph,
                           seed=seed)
    paths = report_paths(output, options)
    with progress_bar("bench") as update:
        result = run_bench(options, progress=update)
    json_path, md_path = write_reports(result, paths)
    env = result.environment
    typer.echo(f"{result.arch} @ {result.input_size}px, weights: {result.weights}; {env['cpu']}, "
               f"{env['threads']} threads")
    print_table("latency (interleaved, ms)",
                ("contender", "timing", "batch", "p50", "p90", "p99", "img/s", f"vs {reference_name(result)}"), [
                    (r.name, r.timing, str(r.batch), f"{r.stats.p50:.2f}", f"{r.stats.p90:.2f}",
                     f"{r.stats.p99:.2f}", f"{r.stats.throughput:.1f}", f"{r.ratio:.2f}x" if r.ratio else "")
                    for r in result.rows])
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"reports {json_path} and {md_path}")


def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Folder holding *.parity.json and *.bench.json files.")],
    output: Annotated[str | None, typer.Option(metavar="PATH",
        help="Page path: HTML and Markdown side by side (r.html or r.md names both) [default: RUN_DIR/report.html].")]
    = None,
) -> None:
    """Gather a run folder's parity and latency reports into one self-contained HTML page and a Markdown summary."""
    from ..reports import build_report

    html, md = build_report(run_dir, output)
    typer.echo(f"wrote {html} and {md}")


def register(app: typer.Typer) -> None:
    app.command("bench", rich_help_panel="Checks")(bench)
    app.command("report", rich_help_panel="Checks")(report)
