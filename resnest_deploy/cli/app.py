"""Typer application: command registration and the one place that turns errors into a red line and exit code."""

from __future__ import annotations

import os
import sys
import traceback

import typer

from .. import __version__, interrupts
from ..errors import ResnestDeployError
from .options import record_invocation
from . import (bench_cmd, build_cmd, deploy_cmd, doctor_cmd, export_cmd, models_cmd, parity_cmd, quantize_cmd,
               serve_cmd)

EXIT_FAILED_CHECK = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3

app = typer.Typer(
    name="resnest-deploy",
    help="Take ResNeSt-family classifiers from PyTorch to ONNX, FP16/INT8 and TensorRT, with parity reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help text: rich markup would eat every "[default: ...]" and any [bracketed] word in a help string.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"resnest-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                 help="Print the version."),
) -> None:
    """Take ResNeSt-family classifiers from PyTorch to ONNX, FP16/INT8 and TensorRT, with parity reports."""


models_cmd.register(app)
export_cmd.register(app)
quantize_cmd.register(app)
build_cmd.register(app)
parity_cmd.register(app)
bench_cmd.register(app)
deploy_cmd.register(app)
doctor_cmd.register(app)
serve_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app; every error becomes one red line on stderr and an exit code.

    Exit codes: 0 done; 1 a check failed (parity, verification); 2 bad input (package errors, usage errors,
    files the system refuses); 3 an internal error (a bug: set RESNEST_DEPLOY_DEBUG=1 for the traceback);
    130 Ctrl-C and 143 SIGTERM, with no partial file left behind.
    """
    interrupts.install()
    args = _renamed(_expand_home(sys.argv[1:] if argv is None else argv))
    record_invocation(args)
    try:
        code = app(args=args, prog_name="resnest-deploy", standalone_mode=False)
    except ResnestDeployError as exc:
        _fail(str(exc), getattr(exc, "details", []))
        sys.exit(exc.exit_code)
    except (interrupts.Interrupted, KeyboardInterrupt, typer.Abort) as exc:
        print(interrupts.describe(), file=sys.stderr)
        sys.exit(exc.exit_code if isinstance(exc, interrupts.Interrupted) else 130)
    except _CLICK_ERROR as exc:  # usage errors: unknown command or option, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer.echo(exc.ctx.get_help() if getattr(exc, "ctx", None) else "")
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(exc.format_message() + hint, [])
        sys.exit(exc.exit_code)
    except OSError as exc:  # disk full, permission denied mid-write, ...: the system's words, one line
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _fail(f"{where}{exc.strerror or exc}", [])
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:  # a bug: still one line, the traceback on request; exit 3 either way
        if debug_enabled():
            traceback.print_exc()
        _fail(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(please report it; RESNEST_DEPLOY_DEBUG=1 shows the traceback)", [])
        sys.exit(EXIT_INTERNAL)
    interrupts.ignore()  # done: a late Ctrl-C must not turn a finished run into a failure
    sys.exit(code if isinstance(code, int) else 0)


def debug_enabled() -> bool:
    """RESNEST_DEPLOY_DEBUG turns tracebacks on with 1, true, yes or on (any case); 0, false, no, off or empty
    leave them off."""
    return os.environ.get("RESNEST_DEPLOY_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _expand_home(argv: list[str]) -> list[str]:
    """``--option=~/path`` with ``~`` expanded, as the shell does for a separate ``~/path`` word but not after ``=``."""
    expanded = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        if arg.startswith("--") and sep and value.startswith("~"):
            arg = f"{name}={os.path.expanduser(value)}"
        expanded.append(arg)
    return expanded


# Old option names, per command, kept working for one release with a one-line note: one name per concept now
# (--output where a command writes, --runtime for tensorrt|cpu, --profile for an engine profile, --bench-batch for
# the batch sizes timed, --batch-axis for the ONNX batch axis, --cpu-precision for what the CPU model computes).
RENAMED = {
    "deploy": {"--out": "--output", "--cpu-model": "--cpu-precision", "--batch": "--profile"},
    "parity": {"--report": "--output"},
    "bench": {"--report": "--output", "--batch": "--bench-batch"},
    "download": {"--dir": "--output"},
    "build": {"--batch": "--profile"},
    "export": {"--batch": "--batch-axis"},
    "quantize": {"--target": "--runtime"},
}


def _renamed(argv: list[str]) -> list[str]:
    """``argv`` with a command's old option names replaced by the new ones, each noted once on stderr."""
    command = next((a for a in argv if not a.startswith("-")), None)
    renames = RENAMED.get(command or "", {})
    out = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        if name in renames:
            print(f"note: {name} is now {renames[name]} (the old name works until the next release)",
                  file=sys.stderr)
            arg = renames[name] + sep + value
        out.append(arg)
    return out


# typer vendors click; find its ClickException through a public typer class.
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _fail(message: str, details: list[str]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]error:[/] {escape(message)}")
    for line in details:
        console.print(f"  - {escape(line)}")
