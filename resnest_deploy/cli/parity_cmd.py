"""`resnest-deploy parity`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .render import print_checks, print_table


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
    artifact: Annotated[Path, typer.Argument(help="ONNX file (or TensorRT engine) to check.")],
    arch: Annotated[str | None, typer.Option(help="Architecture [default: from the artifact's metadata].")] = None,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint the artifact was exported from.")] = None,
    data: Annotated[Path | None, typer.Option(help="Folder of images (recursive); default: seeded synthetic.")]
    = None,
    samples: Annotated[int | None, typer.Option(help="Number of inputs [default: 64 synthetic, or all images].")]
    = None,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 8,
    report: Annotated[Path | None, typer.Option(help="JSON report path (Markdown beside it) "
                                                     "[default: <artifact>.parity.json].")] = None,
    localize: Annotated[bool, typer.Option("--localize", help="On failure, find the first diverging block.")]
    = False,
    tol: Annotated[list[str], typer.Option("--tol", help="Override a limit, e.g. --tol cosine_min=0.999.")] = [],  # noqa: B006
    class_index: Annotated[Path | None, typer.Option(help="JSON or text file mapping class folders to indices.")]
    = None,
    provider: Annotated[str, typer.Option(help="ONNX Runtime provider: auto, cuda, tensorrt or cpu.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of synthetic inputs and sampling.")] = 0,
) -> None:
    """Compare an artifact with the eager model: metrics, verdicts, class flips, accuracy; exit 1 on failure."""
    from ..parity import ParityOptions, default_report_path, run_parity, write_reports
    from .progress import count_progress

    options = ParityOptions(
        artifact=artifact, arch=arch, weights=weights, data=data, samples=samples, batch=batch, seed=seed,
        tolerances=_parse_tolerances(tol), localize=localize, class_index=class_index, provider=provider,
    )
    with count_progress("parity") as update:
        result = run_parity(options, progress=update)
    json_path, md_path = write_reports(result, report or default_report_path(artifact))
    typer.echo(f"{result.arch} {result.precision} on {result.runner}; weights: {result.weights}; {result.inputs}")
    judged = {v.metric: v for v in result.verdicts}
    print_checks("parity vs eager", [
        _Line(name, judged[name].passed if name in judged else None,
              judged[name].detail if name in judged else f"{value:.6g}")
        for name, value in result.metrics.to_dict().items()
    ])
    if result.accuracy:
        acc = result.accuracy
        print_table(f"accuracy ({acc['mapping']})", ("", "top-1", "top-5"), [
            ("eager", f"{acc['eager_top1']:.2%}", f"{acc['eager_top5']:.2%}"),
            ("artifact", f"{acc['artifact_top1']:.2%}", f"{acc['artifact_top5']:.2%}"),
        ])
    if result.flips:
        print_table(f"class flips ({len(result.flips)})", ("input", "eager", "artifact"),
                    [(f.sample, str(f.eager), str(f.artifact)) for f in result.flips[:10]])
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} unreadable files (listed in the report)")
    if result.localization:
        loc = result.localization
        print_checks("localisation (per-stage relative error)",
                     [_Line(s.stage, s.passed, f"{s.rel:.3g} (max-abs {s.max_abs:.3g})") for s in loc.stages])
        typer.echo(f"first diverging stage: {loc.first_bad or 'none'}; largest jump at {loc.largest_jump}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"{'PASS' if result.passed else 'FAIL'}: reports {json_path} and {md_path}")
    if not result.passed:
        raise typer.Exit(1)


class _Line:
    def __init__(self, name: str, passed: bool | None, detail: str) -> None:
        self.name, self.passed, self.detail = name, passed, detail


def register(app: typer.Typer) -> None:
    app.command("parity", rich_help_panel="Checks")(parity)
