"""A real Triton Inference Server on a run's model repository: found, started bound to loopback by default, waited
for, asked which models are ready (and why the others are not), and always stopped with everything it started.

The server is the ``tritonserver`` binary (Triton 2.51) that the ``nvidia-pytriton`` wheel ships with the python
backend; install it without its dependencies (``pip install --no-deps nvidia-pytriton==0.7.0``: its numpy<2 pin
would otherwise downgrade the whole environment). Its python-backend stub embeds the host's ``libpython`` and
ignores ``PYTHONPATH``, so python models put their own pinned packages on ``sys.path`` (see
:mod:`resnest_deploy.serving.python_env`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ResnestDeployError

TRITON_PACKAGE = "nvidia-pytriton==0.7.0"
MISSING_BACKEND = "unable to find backend library"


class ServeError(ResnestDeployError):
    """The server cannot start here (no binary, a port in use, no repository), or it stopped on its own."""


@dataclass(frozen=True)
class ModelState:
    """One model as the server reports it: READY, or why not."""

    name: str
    version: str
    state: str
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "READY"

    @property
    def missing_backend(self) -> bool:
        """Not ready only because this host's Triton lacks the model's backend (onnxruntime, tensorrt)."""
        return not self.ready and MISSING_BACKEND in self.reason

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "state": self.state, "reason": self.reason}


def find_tritonserver() -> Path | None:
    """The ``tritonserver`` binary: ``$RESNEST_DEPLOY_TRITONSERVER``, the one in the nvidia-pytriton package, or
    one on PATH."""
    import importlib.util

    chosen = os.environ.get("RESNEST_DEPLOY_TRITONSERVER")
    if chosen:
        return Path(chosen) if Path(chosen).is_file() else None
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(list(spec.submodule_search_locations)[0]) / "tritonserver" / "bin" / "tritonserver"
        if binary.is_file():
            return binary
    found = shutil.which("tritonserver")
    return Path(found) if found else None


def require_tritonserver() -> Path:
    """The binary, made executable, with the python backend's stub for this Python in place.

    Raises:
        ServeError: No server is installed (one line naming the package to install).
    """
    binary = find_tritonserver()
    if binary is None:
        raise ServeError(f"no Triton server found: pip install --no-deps {TRITON_PACKAGE} (the server with its python "
                         "backend), or set RESNEST_DEPLOY_TRITONSERVER to a tritonserver binary")
    _prepare_pytriton(binary)
    return binary


def _prepare_pytriton(binary: Path) -> None:
    """nvidia-pytriton ships its binary and stubs without execute bits and one stub per Python version; the python
    backend expects the stub beside its library."""
    root = binary.parent.parent
    stubs = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
    backend = root / "backends" / "python"
    for path in (binary, stubs / "triton_python_backend_stub"):
        if path.is_file() and not os.access(path, os.X_OK):
            path.chmod(path.stat().st_mode | 0o111)
    if (stubs / "triton_python_backend_stub").is_file() and backend.is_dir() and \
            not (backend / "triton_python_backend_stub").is_file():
        shutil.copy2(stubs / "triton_python_backend_stub", backend / "triton_python_backend_stub")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (for tests and --http-port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


@dataclass
class TritonServer:
    """One server process on ``repository``.

    Args:
        repository: The model repository folder.
        http_port, grpc_port, metrics_port: Ports (bound to ``host``).
        host: Address the endpoints listen on [default: loopback only].
        models: Load only these models (explicit model control) [default: every model].
        exit_on_error: Triton's default: stop when any model fails to load. ``serve`` turns it off so the models
            this host can run keep serving while the others are reported.
        log: File the server's output goes to.
        environment: Variables set for the server and its python stubs (``RESNEST_DEPLOY_TRITON_PACKAGES``).
    """

    repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "127.0.0.1"
    models: tuple[str, ...] = ()
    exit_on_error: bool = True
    log: Path | None = None
    environment: dict[str, str] = field(default_factory=dict)  # added to this process's for the server and stubs
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{self.host}:{self.http_port}"

    def command(self, binary: Path) -> list[str]:
        args = [str(binary), f"--model-repository={self.repository}",
                f"--backend-directory={binary.parent.parent / 'backends'}",
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
                f"--exit-on-error={'true' if self.exit_on_error else 'false'}", "--log-verbose=0"]
        if self.models:
            args += ["--model-control-mode=explicit", *(f"--load-model={m}" for m in self.models)]
        return args

    def start(self, timeout: float = 120.0) -> None:
        """Start the server and wait until it is live (or it exits: a model failing with ``exit_on_error``).

        Raises:
            ServeError: A port in use, no repository, no binary, or the server died before it was live.
        """
        if not (self.repository / ".").is_dir():
            raise ServeError(f"{self.repository}: no model repository there (run deploy first)")
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            if port_in_use(port, self.host):
                raise ServeError(f"port {port} on {self.host} is in use; choose another with --http-port/--grpc-port/"
                                 "--metrics-port")
        binary = require_tritonserver()
        self.log = self.log or self.repository.parent / "triton.log"
        handle = open(self.log, "w", encoding="utf-8")  # noqa: SIM115 (the child writes to it until stop)
        self.process = subprocess.Popen(self.command(binary), stdout=handle, stderr=subprocess.STDOUT,
                                        start_new_session=True, env={**os.environ, **self.environment})
        handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None or self.live():
                return
            time.sleep(0.2)
        self.stop()
        raise ServeError(f"Triton did not come up within {timeout:.0f} s (its log: {self.log})")

    def live(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/live", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @property
    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def states(self) -> list[ModelState]:
        """Every model of the repository and its state: from the running server's index, or, when the server
        exited, from the status table it printed."""
        if self.exited is None and self.live():
            request = urllib.request.Request(f"http://{self.url}/v2/repository/index", data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=10) as response:
                index = json.loads(response.read())
            logged = _ensemble_reasons(self.log.read_text(encoding="utf-8", errors="replace") if self.log else "")
            return [ModelState(m["name"], str(m.get("version", "")), m.get("state", "UNKNOWN"),
                               m.get("reason", "") or logged.get(m["name"], "")) for m in index]
        return parse_status_table(self.log.read_text(encoding="utf-8", errors="replace") if self.log else "")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and every process it started (its python-backend stubs): SIGTERM, then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        try:
            os.killpg(group, signal.SIGKILL)  # stubs that outlived the server
        except ProcessLookupError:
            pass

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_ROW = re.compile(r"^\|\s*(?P<name>[^|]+?)\s*\|\s*(?P<version>\d+)\s*\|\s*(?P<status>[^|]*?)\s*\|\s*$")
_ENSEMBLE = re.compile(r"ensemble '(?P<name>[^']+)' depends on '(?P<dep>[^']+)'.*?(?P<why>Model '.*?)\"?$")
_POLL = re.compile(r"Poll failed for model directory '(?P<name>[^']+)': (?P<reason>.*?)\"?$")


def parse_status_table(log: str) -> list[ModelState]:
    """The ``| Model | Version | Status |`` table Triton prints after loading the repository, and the models whose
    configuration it refused when it polled the repository (they never reach the table)."""
    states = []
    for line in log.splitlines():
        match = _ROW.match(line.strip())
        if match:
            status = match["status"]
            state, _, reason = status.partition(":")
            states.append(ModelState(match["name"], match["version"], state.strip(), reason.strip()))
        elif poll := _POLL.search(line.strip()):
            states.append(ModelState(poll["name"], "", "UNAVAILABLE", f"config refused: {poll['reason']}"))
    # Ensembles whose composing model failed never reach the table.
    listed = {s.name for s in states}
    states += [ModelState(name, "", "UNAVAILABLE", reason) for name, reason in _ensemble_reasons(log).items()
               if name not in listed]
    return states


def _ensemble_reasons(log: str) -> dict[str, str]:
    """Why ensembles were not loaded (the repository index gives them no reason): the composing model that failed,
    with its own reason."""
    return {m["name"]: f"composing model {m['dep']} not loaded: {m['why']}" for line in log.splitlines()
            if (m := _ENSEMBLE.search(line.strip()))}
