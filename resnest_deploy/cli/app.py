"""Typer application: command registration and the one place that turns errors into a red line and exit code."""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import ResnestDeployError
from . import models_cmd

app = typer.Typer(
    name="resnest-deploy",
    help="Take ResNeSt-family classifiers from PyTorch to ONNX, FP16/INT8 and TensorRT, with parity reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"resnest-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Take ResNeSt-family classifiers from PyTorch to ONNX, FP16/INT8 and TensorRT, with parity reports."""


models_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, printing package errors as one line with their exit code."""
    try:
        app(args=argv, prog_name="resnest-deploy")
    except ResnestDeployError as exc:
        from rich.console import Console

        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {exc}", markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
