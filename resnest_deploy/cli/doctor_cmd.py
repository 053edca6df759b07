"""`resnest-deploy doctor`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .options import FLAG
from .render import print_table


def doctor(
    gpu: Annotated[bool, typer.Option("--gpu", metavar=FLAG,
                                      help="Exit 2 with one line when this host cannot build and check engines "
                                           "(what a bundle's build.sh asks first).")] = False,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON instead of a table.")] = False,
) -> None:
    """What this host can do: Python, torch and its CUDA, the GPU and driver, TensorRT, ONNX Runtime and the Triton
    server for serve, each with the fix when something does not fit."""
    from ..doctor import diagnose, gpu_problems
    from ..errors import GpuUnavailableError

    findings = diagnose()
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        print_table("this host", ("component", "found", "status", "fix"),
                    [(f.component, f.found, f.status, f.fix) for f in findings])
    problems = gpu_problems(findings) if gpu else []
    if problems:
        first = problems[0]
        raise GpuUnavailableError(f"this host cannot build engines: {first.component}: {first.found}"
                                  + (f"; {first.fix}" if first.fix else ""))


def register(app: typer.Typer) -> None:
    app.command("doctor", rich_help_panel="Pipeline")(doctor)
