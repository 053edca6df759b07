"""Shared fixtures: CLI subprocess runner and small checkpoint files made from real reference models."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRIPWIRE = Path(__file__).resolve().parent / "tripwire"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """The suite's time budget rests on ``--dist loadgroup`` keeping each group's session fixtures on one worker;
    a pytest/xdist pair that drops the grouping silently would run them once per worker. Stop instead."""
    if not getattr(config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(f"pytest-xdist did not group {lost[0]} (and {len(lost) - 1} more): pytest "
                                f"{pytest.__version__} is not one the suite supports (pyproject.toml pins it)")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


_NO_GPU_BIN: list[Path] = []


def no_gpu_env() -> dict[str, str]:
    """The environment of a host without a usable GPU, whatever this host has, so the suite passes on GPU hosts
    too: torch sees no CUDA device (``CUDA_VISIBLE_DEVICES`` empty) and a failing ``nvidia-smi`` stand-in comes
    first on PATH (as on a host whose driver is missing)."""
    if not _NO_GPU_BIN:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="no-gpu-bin-"))
        smi = folder / "nvidia-smi"
        smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA "
                       "driver' >&2\nexit 9\n")
        smi.chmod(0o755)
        _NO_GPU_BIN.append(folder)
    return {"CUDA_VISIBLE_DEVICES": "", "PATH": f"{_NO_GPU_BIN[0]}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None,
            no_gpu: bool = True) -> CliResult:
    """Run ``resnest-deploy ARGS`` in a fresh interpreter, on a host without a GPU (:func:`no_gpu_env`) unless
    ``no_gpu`` is False; ``env`` comes last (a test's own stand-in ``nvidia-smi`` on PATH wins).

    ``tests/tripwire`` is put first on PYTHONPATH: it holds a stand-in ``tensorrt`` package whose import ends
    the process with exit code 97, so any command that imports tensorrt (which must never happen without a
    GPU) fails loudly. The stand-in is a tripwire, not a fake TensorRT: it implements nothing.
    """
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(TRIPWIRE), str(ROOT), full_env.get("PYTHONPATH", "")])
    full_env.setdefault("COLUMNS", "200")
    if no_gpu:
        full_env.update(no_gpu_env())
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "resnest_deploy", *args], cwd=cwd or ROOT, env=full_env, capture_output=True,
        text=True, timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def run_cli_here(*args: str, cwd: Path | None = None, env: dict | None = None) -> CliResult:
    """Run ``resnest-deploy ARGS`` in this process (``main``), for cases that fail before any real work: the same
    exit code, stdout and stderr as a fresh interpreter gives, in milliseconds instead of seconds. Afterwards the
    worker's state is put back (cwd, environment, signal handlers, torch's thread count) and TensorRT must still be
    unimported, as the tripwire checks for subprocess runs."""
    import contextlib
    import io
    import signal

    import torch

    from resnest_deploy.cli import app as cli_app

    from unittest import mock

    from resnest_deploy.exporters import tensorrt_env

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    os.environ.update({"COLUMNS": "200", **(env or {})})
    code = 0
    try:
        os.chdir(cwd or ROOT)
        # A host without a GPU, whatever this one has (torch here may already have seen one: patch, not env).
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                mock.patch.object(tensorrt_env, "gpu_info", lambda index=0: None), \
                mock.patch.object(tensorrt_env, "nvidia_smi_gpus", lambda: None):
            try:
                cli_app.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert "tensorrt" not in sys.modules, f"{args} imported tensorrt"
    return CliResult(code, out.getvalue(), err.getvalue())


def wait_for_trace(proc: subprocess.Popen, trace: Path, line: str, timeout: float = 300) -> None:
    """Block until ``proc`` (run with ``RESNEST_DEPLOY_TRACE=trace``) has traced ``line``; with
    ``RESNEST_DEPLOY_PAUSE_AT`` it then waits there for the test's signal, so no timing is guessed. Polls the
    trace file (the process holds still once it is there)."""
    import time

    deadline = time.monotonic() + timeout
    while line not in (trace.read_text() if trace.exists() else ""):
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {line!r}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{line!r} not traced within {timeout:.0f} s")
        time.sleep(0.02)


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
    """The CLI, run in this process (:func:`run_cli_here`); tests that need a fresh interpreter (signals, the
    tensorrt tripwire, PATH tricks) call :func:`run_cli`."""
    return run_cli_here


def write_test_images(folder: Path, *, classes: int = 2, per_class: int = 3, corrupt: bool = True) -> Path:
    """Write a small class-per-subfolder tree of real image files (PNG, JPEG, WebP, BMP, TIFF) made with Pillow.

    Includes the awkward modes users meet (grayscale, RGBA, palette, CMYK, 16-bit) and, when ``corrupt``, a
    truncated JPEG and a text file named .png, which must be skipped.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    kinds = [("png", "RGB"), ("jpg", "L"), ("webp", "RGBA"), ("bmp", "P"), ("tiff", "CMYK"), ("png", "I;16")]
    for c in range(classes):
        sub = folder / f"class_{c}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ext, mode = kinds[(c * per_class + i) % len(kinds)]
            h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
            base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
            rgb = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
            if mode == "I;16":
                gray = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
                img = Image.fromarray(gray)
            elif mode == "P":
                img = rgb.convert("P")
            else:
                img = rgb.convert(mode)
            img.save(sub / f"img_{i}.{ext}")
    if corrupt:
        good = next(folder.rglob("*.png")).read_bytes()
        (folder / "class_0" / "truncated.png").write_bytes(good[: len(good) // 3])
        (folder / "class_0" / "notes.png").write_text("not an image")
    return folder


_EXPORT_MEMO: dict = {}


@pytest.fixture(scope="session")
def export_cache(tmp_path_factory):
    """Export an arch once per test worker and size; tests share the file (they must not modify it)."""
    from resnest_deploy.exporters.onnx_export import ExportOptions, export_onnx

    # Under `make mutation` (tests/mutation.py) every mutant runs a new pytest session in a process forked from
    # the one that ran the whole selection: a process-wide memo and folder let those sessions reuse its exports.
    if os.environ.get("RESNEST_DEPLOY_TEST_EXPORTS") == "memo":
        if not _EXPORT_MEMO:
            _EXPORT_MEMO["root"] = Path(tempfile.mkdtemp(prefix="resnest-deploy-exports-"))
        root, cache = _EXPORT_MEMO["root"], _EXPORT_MEMO.setdefault("cache", {})
    else:
        root, cache = tmp_path_factory.mktemp("exports"), {}

    def get(arch: str, size: int | None = None, **options):
        key = (arch, size, tuple(sorted(options.items())))
        if key not in cache:
            name = f"{arch}-{size or 'native'}-{len(cache)}.onnx"
            cache[key] = export_onnx(ExportOptions(arch=arch, output=root / name, img_size=size, **options))
        return cache[key]

    return get


@pytest.fixture
def host(tmp_path):
    """A stand-in GPU host for the scripts this tool writes (tests/standin_host.py): (environment, calls file)."""
    from tests.standin_host import make_host

    return make_host(tmp_path)


@pytest.fixture(scope="session")
def trained():
    """The small trained resnest14d with its train/val PNG folders (trained once, cached in .cache/tests).

    Tests that use it carry ``pytest.mark.xdist_group("trained")`` so one worker trains and reuses it.
    """
    from tests.trained_model import get_trained_model

    return get_trained_model()
