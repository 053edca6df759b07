"""Shared fixtures: CLI subprocess runner and small checkpoint files made from real reference models."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRIPWIRE = Path(__file__).resolve().parent / "tripwire"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> CliResult:
    """Run ``resnest-deploy ARGS`` in a fresh interpreter.

    ``tests/tripwire`` is put first on PYTHONPATH: it holds a stand-in ``tensorrt`` package whose import ends
    the process with exit code 97, so any command that imports tensorrt (which must never happen without a
    GPU) fails loudly. The stand-in is a tripwire, not a fake TensorRT: it implements nothing.
    """
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(TRIPWIRE), str(ROOT), full_env.get("PYTHONPATH", "")])
    full_env.setdefault("COLUMNS", "200")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "resnest_deploy", *args], cwd=cwd or ROOT, env=full_env, capture_output=True,
        text=True, timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *fragments: str, code: int = 2) -> None:
    """The command failed with ``code``, printed one line on stderr naming every fragment, and no traceback."""
    assert result.returncode == code, f"exit {result.returncode}, stderr:\n{result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.fixture
def cli():
    return run_cli
