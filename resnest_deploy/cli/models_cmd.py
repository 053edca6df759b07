"""`resnest-deploy models`, `show` and `download`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .options import FLAG
from .render import print_table


def models(
    pattern: Annotated[str, typer.Argument(metavar="PATTERN", help="Shell-style wildcard over names, e.g. 'resnest50*'.")] = "*",
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON instead of a table.")] = False,
) -> None:
    """List registered architectures with family, parameters, GMACs at native size and input size."""
    from ..models import matching_models, summarize

    rows = [summarize(name) for name in matching_models(pattern)]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    print_table(f"{len(rows)} architectures", ("name", "family", "params (M)", "GMACs", "input"),
                [(r.name, r.family, f"{r.params / 1e6:.2f}", f"{r.gmacs:.2f}", str(r.input_size)) for r in rows])


def download(
    arch: Annotated[str, typer.Argument(metavar="ARCH", help="Architecture with published weights, e.g. resnest50.")],
    directory: Annotated[Path, typer.Option("--output", metavar="DIR", help="Folder to store the checkpoint in.")]
    = Path("artifacts/weights"),
    url: Annotated[str | None, typer.Option(metavar="URL", help="Alternative address (mirror or file://) of the same file.")] = None,
) -> None:
    """Download an architecture's published checkpoint and check its SHA-256 prefix."""
    from ..models import download_published
    from .progress import progress_bar

    with progress_bar(f"downloading {arch}", in_bytes=True) as update:
        path = download_published(arch, directory, url=url, progress=update)
    typer.echo(str(path))


def show(
    arch: Annotated[str, typer.Argument(metavar="ARCH", help="Registered architecture, e.g. resnest50.")],
    weights: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Checkpoint (.pth/.pt/.safetensors) in official, timm or torchvision layout.")
    ] = None,
    num_classes: Annotated[int | None, typer.Option(min=1, metavar="N", help="Classifier size [default: the checkpoint's].")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON instead of text.")] = False,
) -> None:
    """Build an architecture (loading --weights strictly) and print its config, input settings and weights."""
    from ..models import describe_model

    info = describe_model(arch, weights=weights, num_classes=num_classes)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    print_table(arch, ("field", "value"),
                [(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
                 for key, value in info.items()])


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("show")(show)
    app.command("download")(download)
