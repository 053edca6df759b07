"""`resnest-deploy models` and `resnest-deploy download`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def models(
    pattern: Annotated[str, typer.Argument(help="Shell-style wildcard over names, e.g. 'resnest50*'.")] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List registered architectures with family, parameters, GMACs at native size and input size."""
    from ..models import list_models, summarize

    rows = [summarize(name) for name in list_models(pattern)]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} architectures")
    for column in ("name", "family", "params (M)", "GMACs", "input"):
        table.add_column(column, justify="left" if column in ("name", "family") else "right")
    for r in rows:
        table.add_row(r.name, r.family, f"{r.params / 1e6:.2f}", f"{r.gmacs:.2f}", f"{r.input_size}")
    Console().print(table)


def download(
    arch: Annotated[str, typer.Argument(help="Architecture with published weights, e.g. resnest50.")],
    directory: Annotated[Path, typer.Option("--dir", help="Folder to store the checkpoint in.")] = Path(
        "artifacts/weights"
    ),
    url: Annotated[str | None, typer.Option(help="Alternative address (mirror or file://) of the same file.")] = None,
) -> None:
    """Download an architecture's published checkpoint and check its SHA-256 prefix."""
    from ..models import download_weights, get_config
    from .progress import byte_progress

    cfg = get_config(arch)
    if cfg.weights is None:
        from ..errors import ConfigError

        raise ConfigError(f"{arch} has no published checkpoint to download; pass your own with --weights")
    with byte_progress(f"downloading {arch}") as update:
        path = download_weights(url or cfg.weights.url, cfg.weights.sha256_prefix, directory, progress=update)
    typer.echo(str(path))


def show(
    arch: Annotated[str, typer.Argument(help="Registered architecture, e.g. resnest50.")],
    weights: Annotated[
        Path | None, typer.Option(help="Checkpoint (.pth/.pt/.safetensors) in official, timm or torchvision layout.")
    ] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classifier size (default: the checkpoint's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Build an architecture (loading --weights strictly) and print its config, input settings and weights."""
    from ..models import describe_model

    info = describe_model(arch, weights=weights, num_classes=num_classes)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, title=arch)
    for key, value in info.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("show")(show)
    app.command("download")(download)
