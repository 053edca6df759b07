"""``resnest-deploy serve``: a real Triton on a run's model repository, checked model by model.

The server runs with ``--exit-on-error=false`` so the models this host can run keep serving while the others are
reported: a model whose backend this host's Triton lacks (the nvidia-pytriton server has only the python backend,
so ``<arch>_onnx``, the ``*_trt_*`` plans and the ensemble over them) is expected and said once; any other failure
is the server's own message and exit 1.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ResnestDeployError, check_number
from . import python_env
from .server import ModelState, TritonServer, free_port

MAX_PORT = 65535


class ModelLoadError(ResnestDeployError):
    """A model of the repository failed to load for a reason other than a backend this host lacks."""

    exit_code = 1


@dataclass(frozen=True)
class ServeOptions:
    """What ``serve`` starts: the repository, the endpoints (0 picks a free port) and the models to load."""

    run_dir: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "127.0.0.1"
    models: tuple[str, ...] = ()
    timeout: float = 300.0

    @property
    def repository(self) -> Path:
        """A run folder's ``model_repository``, or the folder itself when it is a repository."""
        inner = self.run_dir / "model_repository"
        return inner if inner.is_dir() else self.run_dir


def repository_models(repository: Path) -> list[str]:
    """The model folders of a repository (those with a ``config.pbtxt``)."""
    return sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))


def check_options(o: ServeOptions) -> None:
    """Everything ``serve`` can refuse before it starts anything.

    Raises:
        ConfigError: Not a run folder or repository, a port out of range or repeated, an unknown model name.
    """
    if not o.run_dir.is_dir():
        raise ConfigError(f"{o.run_dir}: no such run folder (give the folder deploy wrote, e.g. runs/resnest50)")
    available = repository_models(o.repository)
    if not available:
        raise ConfigError(f"{o.run_dir}: no Triton model repository there (deploy writes <run>/model_repository)")
    ports = [p for p in (o.http_port, o.grpc_port, o.metrics_port) if p]
    for port in (o.http_port, o.grpc_port, o.metrics_port):
        if not 0 <= port <= MAX_PORT:
            raise ConfigError(f"port {port} is out of range (0-{MAX_PORT}; 0 picks a free one)")
    if len(set(ports)) != len(ports):
        raise ConfigError(f"--http-port, --grpc-port and --metrics-port must differ (got {', '.join(map(str, ports))})")
    unknown = [m for m in o.models if m not in available]
    if unknown:
        raise ConfigError(f"no model {unknown[0]!r} in {o.repository} (it has: {', '.join(available)})")
    check_number("--start-timeout", o.timeout, 0, 86400, low_open=True)
    try:
        socket.getaddrinfo(o.host, None)
    except (OSError, UnicodeError):
        raise ConfigError(f"--host {o.host!r} is not an address this host can listen on (e.g. 127.0.0.1, 0.0.0.0)") \
            from None


def start(o: ServeOptions) -> TritonServer:
    """Start Triton on the repository (after :func:`check_options`) and wait until it is live.

    Raises:
        ServeError: No server installed, a port in use, stub packages that cannot be installed, or the server
            died before it was live.
    """
    from .server import require_tritonserver

    require_tritonserver()
    packages = python_env.install()  # once per environment; a no-op when the pins are in place
    server = TritonServer(o.repository, http_port=o.http_port or free_port(o.host),
                          grpc_port=o.grpc_port or free_port(o.host), metrics_port=o.metrics_port or free_port(o.host),
                          host=o.host, models=o.models, exit_on_error=False, log=o.repository.parent / "triton.log",
                          environment={python_env.ENV_VAR: str(packages)})
    server.start(timeout=o.timeout)
    if server.exited is not None:
        raise ModelLoadError(f"Triton exited with status {server.exited} while loading the repository "
                             f"(its log: {server.log})")
    return server


def settle(server: TritonServer, timeout: float = 60.0) -> list[ModelState]:
    """The models' states once none is still loading (with ``--models``: those asked for, and what they load)."""
    deadline = time.monotonic() + timeout
    states = server.states()
    while any(s.state == "LOADING" for s in states) and time.monotonic() < deadline:
        time.sleep(0.5)
        states = server.states()
    if server.models:
        states = [s for s in states if s.name in server.models or s.state != "UNKNOWN"]
    return states


def explain(state: ModelState) -> str:
    """One short phrase: why a model is not ready (empty when it is)."""
    if state.ready:
        return ""
    if state.missing_backend:
        backend = re.search(r"backend '([^']+)'", state.reason)
        which = f"no {backend.group(1)} backend here" if backend else "a backend this Triton lacks"
        via = re.match(r"composing model (\S+) not loaded", state.reason)
        return f"needs {via.group(1)} ({which})" if via else which
    return state.reason


def verdict(state: ModelState) -> str:
    """``ready``, ``needs backend`` (only a backend this Triton lacks) or ``FAILED``."""
    return "ready" if state.ready else "needs backend" if state.missing_backend else "FAILED"


def lacking_backends(states: list[ModelState]) -> list[str]:
    """The backends this Triton lacks that some model of the repository needs."""
    return sorted({b for s in states if s.missing_backend for b in ("onnxruntime", "tensorrt") if f"'{b}'" in s.reason})


def failures(states: list[ModelState]) -> list[ModelState]:
    """Models that are neither ready nor refused only for a backend this host's Triton lacks."""
    return [s for s in states if not s.ready and not s.missing_backend]


def wait(server: TritonServer) -> int:
    """Block until the server exits on its own (Ctrl-C and SIGTERM reach the caller as an interrupt); its status."""
    while server.exited is None:
        time.sleep(0.5)
    return server.exited
