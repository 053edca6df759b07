"""Every file the tool writes (artifacts, manifests, reports, caches, the GPU build folder) gets the permissions
a plain ``open(path, "w")`` would give under the user's umask, so a server running as another user can read it."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest

from resnest_deploy.atomic import atomic_path, write_text_atomic
from resnest_deploy.hashing import file_sha256
from resnest_deploy.models import download_weights
from tests.conftest import run_cli, write_test_images


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, mask, expected):
    with umask(mask):
        write_text_atomic(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"y")
    assert _modes(tmp_path) == {"a.txt": expected, "b.bin": expected}


def test_every_command_writes_files_readable_by_others_under_022(tmp_path):
    cache = tmp_path / "cache"
    run = tmp_path / "run"
    images = write_test_images(tmp_path / "images", classes=2, per_class=2, corrupt=False)
    with umask(0o022):
        steps = [
            ("export", "--arch", "resnet18", "--img-size", "64", "--output", str(run / "m.onnx")),
            ("quantize", str(run / "m.onnx"), "--precision", "fp16"),
            ("quantize", str(run / "m.onnx"), "--precision", "int8", "--calib-data", str(images)),
            ("parity", str(run / "m.fp16.onnx"), "--samples", "4"),
            ("bench", str(run / "m.onnx"), "--bench-batch", "1", "--iters", "1", "--warmup", "0"),
            ("report", str(run)),
            ("build", str(run / "m.int8.onnx"), "--emit-script", str(run / "gpu-build")),
        ]
        for args in steps:
            result = run_cli(*args, cwd=tmp_path, env={"RESNEST_DEPLOY_CACHE": str(cache)})
            assert result.returncode == 0, result.stderr
        source = run / "m.onnx.json"
        download_weights(f"file://{source}", file_sha256(source)[:8], tmp_path / "weights")
    modes = {name: mode for name, mode in _modes(tmp_path).items() if not name.startswith("images/")}
    assert "run/m.onnx" in modes and "run/report.html" in modes and "run/gpu-build/build.sh" in modes
    assert any(name.startswith("cache/") for name in modes)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o755 if name.endswith("build.sh") else 0o644)}
    assert not wrong, wrong
    assert "weights/m.onnx.json" in modes
