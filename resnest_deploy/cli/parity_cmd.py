"""`resnest-deploy parity`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..checks import Check
from ..parity.options import DEFAULT_SAMPLES, ParityOptions
from ..runners.ort_runner import Provider
from .options import FLAG, ClassIndex, defaults
from .render import print_checks, print_table

_D = defaults(ParityOptions)


def _parse_tolerances(items: list[str]) -> dict[str, float]:
    from ..errors import ConfigError

    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            parsed[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--tol takes METRIC=VALUE, got {item!r}")
    return parsed


def parity(
    artifact: Annotated[Path, typer.Argument(metavar="ARTIFACT", help="ONNX file (or TensorRT engine) to check.")],
    arch: Annotated[str | None, typer.Option(metavar="ARCH", help="Architecture [default: from the artifact's metadata].")] = _D.arch,
    weights: Annotated[Path | None, typer.Option(metavar="FILE", help="Checkpoint the artifact was exported from.")] = _D.weights,
    data: Annotated[Path | None, typer.Option(metavar="DIR", help="Folder of images (recursive) [default: seeded synthetic].")]
    = _D.data,
    samples: Annotated[int | None, typer.Option(
        min=1, metavar="N", help=f"Number of inputs [default: {DEFAULT_SAMPLES} synthetic, or all images].")] = _D.samples,
    batch: Annotated[int, typer.Option(min=1, metavar="N", help="Images per inference.")] = _D.batch,
    output: Annotated[str | None, typer.Option("--output", metavar="PATH",
        help="Report path: JSON and Markdown side by side (r.json or r.md names both) "
             "[default: <artifact>.parity.json].")] = None,
    localize: Annotated[bool, typer.Option("--localize", metavar=FLAG,
                                           help="On failure, find the first diverging block.")] = _D.localize,
    tol: Annotated[list[str], typer.Option("--tol", metavar="METRIC=VALUE", help="Override a limit, e.g. --tol cosine_min=0.999.")] = [],  # noqa: B006
    class_index: ClassIndex = _D.class_index,
    provider: Annotated[Provider, typer.Option(metavar="auto|cuda|tensorrt|cpu", help="ONNX Runtime provider.")] = _D.provider,
    seed: Annotated[int, typer.Option(min=0, metavar="N", help="Seed of synthetic inputs and sampling.")] = _D.seed,
    triton: Annotated[str | None, typer.Option(
        metavar="HOST:PORT", help="Compare the model a running Triton serves (gRPC endpoint) instead of running the "
                                  "artifact here: the --data files' bytes are sent, so the served preprocessing is "
                                  "checked too [default report: <artifact>.served.parity.json].")] = _D.triton,
    triton_model: Annotated[str | None, typer.Option(
        metavar="NAME", help="The served model taking encoded images [default: the ensemble named after the "
                             "arch].")] = _D.triton_model,
) -> None:
    """Compare an artifact with the eager model: metrics, verdicts, class flips, accuracy; exit 1 on failure."""
    from ..parity.engine import run_parity
    from ..parity.report import report_paths, write_reports
    from .progress import progress_bar

    options = ParityOptions(
        artifact=artifact, arch=arch, weights=weights, data=data, samples=samples, batch=batch, seed=seed,
        tolerances=_parse_tolerances(tol), localize=localize, class_index=class_index, provider=provider,
        triton=triton, triton_model=triton_model,
    )
    if triton and output is None:  # never over the artifact's own report
        output = str(artifact.with_name(f"{artifact.name}.served.parity.json"))
    paths = report_paths(output, artifact)
    with progress_bar("parity") as update:
        result = run_parity(options, progress=update)
    json_path, md_path = write_reports(result, paths)
    _print_result(result)
    typer.echo(f"{'PASS' if result.passed else 'FAIL'}: reports {json_path} and {md_path}")
    if not result.passed:
        raise typer.Exit(1)


def _print_result(result) -> None:
    typer.echo(f"{result.arch} {result.precision} on {result.runner}; weights: {result.weights}; {result.inputs}")
    if result.judgement:
        typer.echo(f"judged as {result.judgement.preset}: {result.judgement.reason}")
    judged = {v.name: v for v in result.verdicts}
    print_checks("parity vs eager", [judged.get(name) or Check(name, None, f"{value:.6g}")
                                     for name, value in result.metrics.to_dict().items()])
    if result.accuracy:
        acc = result.accuracy
        print_table(f"accuracy ({acc['mapping']})", ("", "top-1", "top-5"), [
            ("eager", f"{acc['eager_top1']:.2%}", f"{acc['eager_top5']:.2%}"),
            ("artifact", f"{acc['artifact_top1']:.2%}", f"{acc['artifact_top5']:.2%}"),
        ])
    if result.budget and "error" not in result.budget:
        b = result.budget
        kept = ", ".join(f"{k['block']}" + (f" ({k['points_lost_alone']:.2f} pt alone"
                                              + (f", {k['latency_cost_ms']:+.2f} ms" if k.get("latency_cost_ms")
                                                 is not None else "") + ")" if k.get("points_lost_alone") is not None
                                             else "") for k in b["kept_float"]) or "none"
        typer.echo(f"accuracy budget ({'met' if b['met'] else 'NOT met'}, measured by quantize on {b['images']} "
                   f"images): {b['goal']}; INT8 plain {b['plain_int8']:.2f}%, chosen {b['int8']:.2f}%; kept float: "
                   f"{kept}")
    elif result.budget:
        typer.secho(f"warning: {result.budget['error']}", fg="yellow", err=True)
    if result.flips:
        print_table(f"class flips ({len(result.flips)})", ("input", "eager", "artifact"),
                    [(f.sample, str(f.eager), str(f.artifact)) for f in result.flips[:10]])
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} unreadable files (listed in the report)")
    if result.localization:
        loc = result.localization
        print_checks("localisation (per-stage relative error)", loc.stages)
        typer.echo(f"first diverging stage: {loc.first_bad or 'none'}; largest jump at {loc.largest_jump}")
    for note in result.notes:
        typer.echo(f"note: {note}")


def register(app: typer.Typer) -> None:
    app.command("parity", rich_help_panel="Checks")(parity)
