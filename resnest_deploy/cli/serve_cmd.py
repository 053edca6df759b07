"""`resnest-deploy serve` and `classify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import FLAG
from .render import print_table

_MISSING_BACKEND_NOTE = ("note: this Triton has no {backends} backend (the nvidia-pytriton server ships only the "
                         "python backend): the models marked 'needs backend' are expected to be unavailable here and "
                         "load on a Triton that has it (docs/deploy.md)")


def _models(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise typer.BadParameter("needs at least one model name")
    return names


def serve(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A deploy run folder (or its model_repository).")],
    http_port: Annotated[int, typer.Option(metavar="PORT", help="HTTP endpoint (0: any free port).")] = 8000,
    grpc_port: Annotated[int, typer.Option(metavar="PORT", help="gRPC endpoint (0: any free port).")] = 8001,
    metrics_port: Annotated[int, typer.Option(metavar="PORT", help="Prometheus metrics (0: any free port).")] = 8002,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address the endpoints listen on; 0.0.0.0 exposes "
                                                               "them to the network.")] = "127.0.0.1",
    models: Annotated[str | None, typer.Option(metavar="NAME,...", parser=_models,
                                                           help="Load only these models [default: all].")] = None,
    start_timeout: Annotated[float, typer.Option(metavar="SECONDS", help="How long the server may take to come "
                                                                          "up.")] = 300.0,
    check: Annotated[bool, typer.Option("--check", metavar=FLAG, help="Start, report every model, stop (exit 0 "
                                                                       "when every model loads or lacks only a "
                                                                       "backend this host has not).")] = False,
) -> None:
    """Start a real Triton (the [serve] extra's) on a run's model repository, print its endpoints and every model's
    state, and serve until Ctrl-C or SIGTERM."""
    from ..serving import serve as serving

    options = serving.ServeOptions(run_dir, http_port, grpc_port, metrics_port, host, tuple(models or ()),
                                   start_timeout)
    serving.check_options(options)
    server = serving.start(options)
    try:
        states = serving.settle(server)
        rows = [(s.name, s.version, serving.verdict(s), serving.explain(s))
                for s in sorted(states, key=lambda s: s.name)]
        typer.echo(f"Triton {server.url}: HTTP http://{server.host}:{server.http_port}, gRPC "
                   f"{server.host}:{server.grpc_port}, metrics http://{server.host}:{server.metrics_port}/metrics")
        print_table(f"models in {options.repository}", ("model", "version", "state", "why not"), rows)
        lacking = serving.lacking_backends(states)
        if lacking:
            typer.echo(_MISSING_BACKEND_NOTE.format(backends=" or ".join(lacking)), err=True)
        failed = serving.failures(states)
        if failed:
            raise serving.ModelLoadError(f"model {failed[0].name} failed to load: {failed[0].reason}")
        if check:
            return
        typer.echo("serving; Ctrl-C stops the server", err=True)
        status = serving.wait(server)
        raise serving.ModelLoadError(f"Triton stopped on its own with status {status} (its log: {server.log})")
    finally:
        server.stop()


def classify(
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE...", help="Image files to send.")],
    url: Annotated[str, typer.Option(metavar="HOST:PORT", help="The server's gRPC endpoint.")] = "127.0.0.1:8001",
    model: Annotated[str | None, typer.Option(metavar="NAME", help="Model to send to: the ensemble <arch> or "
                                                                    "<arch>_preprocess [default: the ready "
                                                                    "ensemble, else preprocess + CPU model].")] = None,
    top: Annotated[int, typer.Option(min=1, max=1000, metavar="K", help="Classes to print per image.")] = 5,
    timeout: Annotated[float, typer.Option(metavar="SECONDS", help="How long to wait for the server.")] = 10.0,
) -> None:
    """Send image files to a running Triton: top-k classes with labels, or (to <arch>_preprocess) the served
    tensor compared with this package's preprocessing of the same file (exit 1 when they differ)."""
    from ..errors import VerificationError, check_number
    from ..serving.client import classify as send

    check_number("--timeout", timeout, 0, 3600, low_open=True)
    route, answers = send(url, list(images), model=model, top=top, timeout=timeout)
    typer.echo(f"via {' -> '.join(route)}")
    rows, bad = [], []
    for a in answers:
        if a.error:
            bad.append(f"{a.path}: {a.error}")
            rows.append((str(a.path), "error", a.error))
        elif a.top is not None:
            rows += [(str(a.path) if i == 0 else "", f"{score:.4f}", f"{index} {label}".strip())
                     for i, (score, index, label) in enumerate(a.top)]
        else:
            if not a.matches:
                bad.append(f"{a.path}: served tensor differs from resnest-deploy's by {a.difference:.3g}")
            rows.append((str(a.path), f"{list(a.tensor.shape)} {a.tensor.dtype}",
                         f"max |served - resnest-deploy| = {a.difference:.3g}"))
    print_table("answers", ("image", "score / tensor", "class / check"), rows)
    if bad:
        raise VerificationError(f"{len(bad)} of {len(answers)} images failed", details=bad)


def register(app: typer.Typer) -> None:
    app.command("serve", rich_help_panel="Serving")(serve)
    app.command("classify", rich_help_panel="Serving")(classify)
