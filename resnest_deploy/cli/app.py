"""Typer application: command registration and the one place that turns errors into a red line and exit code."""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import ResnestDeployError
from . import bench_cmd, build_cmd, export_cmd, models_cmd, parity_cmd, quantize_cmd

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
export_cmd.register(app)
quantize_cmd.register(app)
build_cmd.register(app)
parity_cmd.register(app)
bench_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app; errors become one red line on stderr and an exit code.

    Package errors exit with their ``exit_code`` (2 for bad input, 1 for failed verification); click's usage
    errors (unknown option, bad value) exit 2, also as one line.
    """
    import signal

    # SIGTERM unwinds like Ctrl-C, so temporary files are removed and no partial artifact is left.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        code = app(args=argv, prog_name="resnest-deploy", standalone_mode=False)
    except ResnestDeployError as exc:
        _fail(str(exc), getattr(exc, "details", []))
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except _CLICK_ERROR as exc:  # usage errors: unknown command or option, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer.echo(exc.ctx.get_help() if getattr(exc, "ctx", None) else "")
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(exc.format_message() + hint, [])
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


# typer may vendor click; find its ClickException through a public typer class.
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _fail(message: str, details: list[str]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]error:[/] {escape(message)}")
    for line in details:
        console.print(f"  - {escape(line)}")
