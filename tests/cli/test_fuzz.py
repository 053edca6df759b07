"""A fuzz harness for the whole CLI: it walks the Typer app's own parameter list (a new option is covered without
anyone adding a test), starts from a cheap valid command line on small models, and replaces one to three of its
parameters with values drawn from hostile pools for that parameter's type.

Invariants for every example: the exit code is 0, 1 or 2; a non-zero exit prints exactly one ``error:`` line and
no traceback; a refused run (exit 2) leaves no new file or folder anywhere in the workspace; no temporary file
survives any run; nothing is written outside the workspace.

``make test`` runs the short profile; ``HYPOTHESIS_PROFILE=long`` runs a thorough pass (docs/reliability.md has
its last count and findings). Commands run in-process (``resnest_deploy.cli.app.main``), so an example costs
milliseconds unless it reaches real work.
"""

from __future__ import annotations

import contextlib
import enum
import io
import os
import shutil
import signal
import typing
from pathlib import Path

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnest_deploy.cli.app import app, main
from tests import hostile

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "short")
EXAMPLES = {"short": 45, "long": 1500}[PROFILE]

# Cheap valid command lines on small models; the fuzzer spoils one to three parameters of each.
BASE = {
    "models": ["resnet1*"],
    "show": ["resnet18"],
    "download": ["resnest50", "--url", "file://{ws}/nothing.pth", "--output", "{ws}/dl"],
    "export": ["--arch", "resnet18", "--img-size", "32", "--no-verify", "--output", "{ws}/out/m.onnx"],
    "inspect": ["{ws}/model.onnx"],
    "quantize": ["{ws}/model.onnx", "--precision", "fp16", "--output", "{ws}/out/q.onnx"],
    "build": ["{ws}/model.onnx", "--emit-script", "{ws}/out/bundle"],
    "parity": ["{ws}/model.onnx", "--samples", "2", "--batch", "2", "--output", "{ws}/out/p.json"],
    "bench": ["{ws}/model.onnx", "--iters", "1", "--warmup", "0", "--bench-batch", "1", "--output", "{ws}/out/b.json"],
    "report": ["{ws}/run"],
    "doctor": ["--json"],
    "serve": ["{ws}/run", "--check", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
    "classify": ["{ws}/images/a/rgb.png", "--url", "127.0.0.1:9", "--timeout", "1"],
    "deploy": ["--arch", "resnet18", "--img-size", "32", "--precisions", "fp32", "--samples", "2", "--iters", "1",
               "--bench-batch", "1", "--output", "{ws}/out/run", "--dry-run"],
}

PATHS = ["{ws}/missing/nothing.onnx", "{ws}/images", "{ws}/corrupt", "{ws}/text.txt", "{ws}/text.txt/below.onnx",
         "{ws}/dir [1] with space", "{ws}/dir [1] with space/", "{ws}/fifo.png", "{ws}/loop.jpg", "{ws}/model.onnx",
         "{ws}/run/r.parity.json", "{ws}/model.onnx.json", "", " ", "~/nowhere/x.onnx", "{ws}/" + "n" * 300,
         "{ws}/ünï cødé.onnx", "{ws}/images/"]
INTS = ["-1", "0", "1", "3", "64", "4097", "999999999999", str(2**64), "-0", "1e3", "nan", "", " 7", "٣", "0x10"]
FLOATS = ["nan", "inf", "-inf", "-1", "0", "1e308", "1e-320", "2.5", "", "1,5", "NaN"]
STRINGS = ["", " ", "nan", "-1", "0", "1:0:2", "8:4:2", "0:1:2", "1,,2", "fp8", "int8,int8", "ü", "a" * 300,
           "resnet18", "resnest14d", "not-an-arch", "synthetic", "layer9.*", "cosine_min=nan", "max_abs_rel=inf",
           "kl_mean=-1", "top1_agreement=2", "x=1", "=", "1:8:32", "dynamic", "4096"]


def _kind(annotation: object) -> str:
    """The pool a parameter draws from, by its annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = typing.get_origin(annotation)
    if base is typing.Annotated:
        return _kind(args[0])
    if base in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return _kind(args[0])
    if base is list:
        return _kind(args[0]) if args else "str"
    if annotation is bool:
        return "flag"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is Path:
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "str"
    return "str"


def _parameters() -> dict[str, list[tuple[str, str, bool]]]:
    """command -> [(option or argument name, pool kind, is an argument)] from the Typer app itself."""
    group = typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        hints = typing.get_type_hints(command.callback, include_extras=True)
        params = []
        for p in command.params:
            kind = _kind(hints.get(p.name, str))
            is_argument = not getattr(p, "opts", [""])[0].startswith("-")
            path_like = p.name in ("weights", "output", "data", "calib_data", "targets", "out", "report",
                                   "class_index", "accuracy_data", "cache_dir", "timing_cache", "emit_script", "directory", "model",
                                   "artifact", "artifacts", "run_dir", "images")
            params.append((p.opts[0], "path" if path_like and kind in ("str", "path") else kind, is_argument))
        found[name] = params
    return found


PARAMETERS = _parameters()


def test_every_command_has_a_base_line():
    assert set(BASE) == set(PARAMETERS), "a new command needs a cheap valid command line in BASE"


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(sorted(BASE)))
    argv = list(BASE[command])
    params = PARAMETERS[command]
    for _ in range(draw(st.integers(1, 3))):
        opt, kind, is_argument = draw(st.sampled_from(params))
        value = draw(st.sampled_from({"path": PATHS, "int": INTS, "float": FLOATS, "str": STRINGS + PATHS[:4],
                                      "flag": [None]}[kind]))
        if is_argument:
            index = 0 if command != "bench" else 0
            if argv and not argv[index].startswith("-"):
                argv[index] = value
            else:
                argv.insert(0, value)
        elif kind == "flag":
            argv.append(opt)
        elif opt in argv:
            argv[argv.index(opt) + 1] = value
        else:
            argv += [opt, value]
    return [command, *argv]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, export_cache):
    ws = tmp_path_factory.mktemp("fuzz")
    shutil.copy(export_cache("resnet18", 64).path, ws / "model.onnx")
    shutil.copy(export_cache("resnet18", 64).manifest, ws / "model.onnx.json")
    hostile.write_readable(ws / "images" / "a", ("rgb.png", "gray.jpg"))
    hostile.write_readable(ws / "images" / "b", ("cmyk.jpg", "sixteen.png"))
    hostile.write_unreadable(ws / "corrupt")
    hostile.write_not_files(ws, ("fifo.png", "loop.jpg"))
    (ws / "text.txt").write_text("hello\n")
    (ws / "dir [1] with space").mkdir()
    (ws / "run").mkdir()
    (ws / "home").mkdir()
    return ws


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _invoke(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return code, err.getvalue()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=PROFILE == "short", database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=command_lines())
def test_no_command_line_breaks_a_promise(workspace, monkeypatch, argv):
    ws = workspace
    argv = [a.replace("{ws}", str(ws)) for a in argv]
    monkeypatch.chdir(ws)
    monkeypatch.setenv("HOME", str(ws / "home"))
    monkeypatch.setenv("RESNEST_DEPLOY_CACHE", str(ws / "home" / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    outside = _tree(ws.parent)
    before = _tree(ws)
    try:
        code, stderr = _invoke(argv)
        after = _tree(ws)
        new = after - before
        assert code in (0, 1, 2), (argv, code, stderr)
        assert "Traceback" not in stderr, (argv, stderr)
        if code:
            errors = [line for line in stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "internal error" not in errors[0], (argv, stderr)
        if code == 2:
            assert not new, (argv, stderr, sorted(new))
        assert not [n for n in after if n.endswith(".tmp")], (argv, sorted(after))
        assert _tree(ws.parent) - outside <= {str(Path(ws.name) / n) for n in new}, argv
    finally:
        for name in sorted(_tree(ws) - before, key=len, reverse=True):
            path = ws / name
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
