"""Every path a command writes, side files included, is checked before any work (a refused run writes nothing),
and a write that fails midway (file-size limit, full disk) is one line, exit 2, with nothing partial or temporary
left and the earlier good artifact exactly as it was. Cases are generated: every writing command times every way
an output can be impossible."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TRIPWIRE, assert_one_line_error, run_cli_here

# command -> (its arguments before the output, the output option, the side file of an output named PATH)
WRITERS = {
    "export": (["--arch", "resnet18", "--img-size", "32", "--no-verify"], "--output", "{}.json"),
    "quantize": (["{model}", "--precision", "fp16"], "--output", "{}.json"),
    "parity": (["{model}", "--samples", "2"], "--output", "{stem}.md"),
    "bench": (["{model}", "--iters", "1", "--warmup", "0", "--bench-batch", "1"], "--output", "{stem}.md"),
    "report": (["{run}"], "--output", "{stem}.md"),
    "build": (["{model}"], "--output", "{}.json"),
}
NAMES = {"export": "o.onnx", "quantize": "o.onnx", "parity": "o.json", "bench": "o.json", "report": "o.html",
         "build": "o.engine"}


def _main(*argv: str) -> tuple[int, str]:
    result = run_cli_here(*argv, cwd=Path.cwd())
    return result.returncode, result.stderr


@pytest.fixture(scope="module")
def ws(tmp_path_factory, export_cache):
    root = tmp_path_factory.mktemp("outputs")
    shutil.copy(export_cache("resnet18", 64).path, root / "m.onnx")
    shutil.copy(export_cache("resnet18", 64).manifest, root / "m.onnx.json")
    (root / "run").mkdir()
    code, err = _main("parity", str(root / "m.onnx"), "--samples", "2", "--output", str(root / "run" / "p.json"))
    assert code == 0, err
    (root / "file.txt").write_text("a file, not a folder\n")
    return root


def _arrangements(ws: Path, command: str) -> dict[str, tuple[str, str]]:
    """Ways an output can be impossible, each set up in ``ws``: the path the user gives, and what the one error
    line must say."""
    name = NAMES[command]
    side = WRITERS[command][2]
    cases = {}
    blocked = ws / f"side-{command}"
    blocked.mkdir(exist_ok=True)
    target = blocked / name
    stem = str(target)[: -len(target.suffix)]
    Path(side.format(str(target), stem=stem)).mkdir(exist_ok=True)
    cases["its side file is a folder"] = (str(target), "existing folder")
    cases["a file where its folder should be"] = (str(ws / "file.txt" / "below" / name), "is a file")
    cases["a name longer than the file system takes"] = (str(ws / ("n" * 300 + Path(name).suffix)), "longer than")
    return cases


@pytest.mark.xdist_group("resnet18")
@pytest.mark.parametrize("command", sorted(WRITERS))
def test_every_impossible_output_is_refused_before_work_and_writes_nothing(ws, command):
    args, option, _ = WRITERS[command]
    for what, (output, says) in _arrangements(ws, command).items():
        before = {p for p in ws.rglob("*")}
        argv = [command, *(a.format(model=ws / "m.onnx", run=ws / "run") for a in args), option, output]
        code, err = _main(*argv)
        assert code == 2 and err.count("error:") == 1 and says in err, (what, err)
        assert {p for p in ws.rglob("*")} == before, (what, err)


@pytest.mark.xdist_group("resnet18")
def test_outputs_as_users_type_them(ws, tmp_path, monkeypatch):
    """A trailing / names a folder (created); ~ after = is expanded; the report pair follows a folder too."""
    monkeypatch.setenv("HOME", str(tmp_path))
    code, err = _main("quantize", str(ws / "m.onnx"), "--precision", "fp16", "--output", f"{tmp_path}/newdir/")
    assert code == 0, err
    assert (tmp_path / "newdir" / "m.fp16.onnx").is_file() and (tmp_path / "newdir" / "m.fp16.onnx.json").is_file()
    code, err = _main("quantize", str(ws / "m.onnx"), "--precision", "fp16", "--output=~/home.onnx")
    assert code == 0, err
    assert (tmp_path / "home.onnx").is_file() and not (ws / "~").exists() and not Path("~").exists()
    code, err = _main("parity", str(ws / "m.onnx"), "--samples", "2", "--output", f"{tmp_path}/reports/")
    assert code == 0, err
    assert {p.name for p in (tmp_path / "reports").iterdir()} == {"m.onnx.parity.json", "m.onnx.parity.md"}


def _limited(limit: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # No bytecode writes: a .pyc over the limit would be cut before the tool could install its handling.
    env = {**os.environ, "PYTHONPATH": f"{TRIPWIRE}:{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "resnest_deploy", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, preexec_fn=preexec, timeout=600)


@pytest.mark.xdist_group("resnet18")
@pytest.mark.parametrize("command,limit", [("export", 1 << 20), ("quantize", 1 << 20), ("parity", 256)])
def test_a_write_cut_short_by_the_file_size_limit_leaves_the_earlier_artifact_as_it_was(ws, tmp_path, command,
                                                                                        limit):
    args, option, _ = WRITERS[command]
    out = tmp_path / NAMES[command]
    argv = [command, *(a.format(model=ws / "m.onnx", run=ws / "run") for a in args), option, str(out)]
    first = _limited(resource.RLIM_INFINITY, *argv, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    good = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    cut = _limited(limit, *argv, cwd=tmp_path)
    result = type("R", (), {"returncode": cut.returncode, "stderr": cut.stderr})
    assert_one_line_error(result, "cannot write", "File too large")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good  # nothing partial, no temporary file


@pytest.mark.xdist_group("resnet18")
def test_a_full_disk_is_one_line_and_leaves_nothing(ws, tmp_path):
    """A real small file system (tmpfs, mounted when the tests run as root; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        env = {**os.environ, "PYTHONPATH": f"{TRIPWIRE}:{ROOT}"}
        run = subprocess.run([sys.executable, "-m", "resnest_deploy", "quantize", str(ws / "m.onnx"), "--precision",
                              "fp16", "--output", str(disk / "q.onnx")], env=env, capture_output=True, text=True,
                             timeout=600)
        assert_one_line_error(run, "cannot write", "No space left on device")
        assert not list(disk.iterdir())
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
