"""Every command, used the way a careless user would: wrong, truncated, malicious and hand-edited files, empty and
corrupt folders, typos in patterns and class indices, outputs that cannot be written, names full of brackets,
Ctrl-C. Each case must end with one line on stderr (no traceback), the documented exit code, and nothing at the
path it would have written (nor a stray temporary file).

Inputs are made here, small: a resnet18 export at 64 px, real image files, real checkpoints and their broken
copies. The CLI runs in a fresh interpreter per case, with the tensorrt tripwire first on the path.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from resnest_deploy.exporters.metadata import META_PREFIX
from tests.conftest import ROOT, TRIPWIRE, assert_one_line_error, run_cli, run_cli_here, wait_for_trace

SMALL = 64


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.fixture(scope="module")
def ws(export_cache, tmp_path_factory) -> Path:
    """A workspace of inputs, good and bad, shared by every case (cases never write into it)."""
    root = tmp_path_factory.mktemp("ws")
    shutil.copy(export_cache("resnet18", SMALL).path, root / "m.onnx")
    shutil.copy(export_cache("resnet18", SMALL).manifest, root / "m.onnx.json")
    shutil.copy(export_cache("resnet18", SMALL, batch="4").path, root / "fixed4.onnx")
    model = onnx.load(str(root / "m.onnx"))
    # Images: a good class tree, an empty folder, a folder of corrupt files, a lone image.
    for cls in ("n01440764", "n01443537"):
        (root / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
                root / "imgs" / cls / f"{i}.png")
    (root / "empty").mkdir()
    (root / "corrupt").mkdir()
    (root / "corrupt" / "a.png").write_text("not an image")
    (root / "corrupt" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    Image.new("RGB", (30, 30)).save(root / "lone.png")
    (root / "binary.list").write_bytes(bytes(range(256)) * 4)
    # Checkpoints: real resnet18 weights, cut in half; a pickle that would run code; text; another arch's.
    from tests.references import build_reference

    torch.save(build_reference("resnet18").state_dict(), root / "r18.pth")
    (root / "cut.pth").write_bytes((root / "r18.pth").read_bytes()[:300_000])
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "x": _Payload()}, root / "evil.pth")
    (root / "evil-raw.pt").write_bytes(pickle.dumps(_Payload()))
    (root / "notes.pth").write_text("these are my notes")
    # Metadata: hand-edited to nonsense, cut to one field; an engine with a broken manifest, one without.
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    for prop in bad.metadata_props:
        if prop.key == META_PREFIX + "input":
            prop.value = json.dumps({"size": "big", "mean": [0.5]})
    onnx.save(bad, str(root / "edited.onnx"))
    partial = onnx.ModelProto()
    partial.CopyFrom(model)
    keep = [p for p in partial.metadata_props if p.key == META_PREFIX + "arch"]
    del partial.metadata_props[:]
    partial.metadata_props.extend(keep)
    onnx.save(partial, str(root / "partial.onnx"))
    foreign_op = onnx.ModelProto()
    foreign_op.CopyFrom(model)
    foreign_op.graph.node[0].domain = "com.example"
    onnx.save(foreign_op, str(root / "foreign-op.onnx"))
    (root / "m.engine").write_bytes(b"not an engine")
    (root / "m.engine.json").write_text('{"arch": "resnet18", "engine": {"tensorrt": ')
    (root / "bare.engine").write_bytes(b"not an engine")
    # Class index files: malformed JSON, an index past the 1000 classes, one that lacks a folder.
    (root / "broken.json").write_text('{"n01440764": 0,')
    (root / "outside.json").write_text(json.dumps({"n01440764": 0, "n01443537": 1000}))
    (root / "partial-index.txt").write_text("n01440764 tench\n")
    (root / "keras-bad.json").write_text(json.dumps({"zero": ["n01440764", "tench"]}))
    (root / "blocker").write_text("a file where a folder should be")
    (root / "cut-reports").mkdir()
    (root / "cut-reports" / "m.parity.json").write_text(json.dumps({"schema": "resnest-deploy/parity/2",
                                                                    "artifact": "m.onnx", "metrics": {}}))
    return root


@dataclass(frozen=True)
class Case:
    """A command line ({ws} is the workspace, {out} the case's empty output folder), what its one error line
    names, its exit code, and the path it must not leave behind."""

    args: str
    fragments: tuple[str, ...]
    target: str | None = None
    code: int = 2


CASES: dict[str, Case] = {
    # export
    "export-unknown-arch": Case("export --arch resnet99 --output {out}/m.onnx", ("unknown architecture", "resnet50"),
                                "{out}/m.onnx"),
    "export-weights-folder": Case("export --arch resnet18 --weights {ws} --output {out}/m.onnx", ("is a folder",),
                                  "{out}/m.onnx"),
    "export-weights-missing": Case("export --arch resnet18 --weights {ws}/nope.pth --output {out}/m.onnx",
                                   ("no such checkpoint file",), "{out}/m.onnx"),
    "export-weights-truncated": Case("export --arch resnet18 --weights {ws}/cut.pth --output {out}/m.onnx",
                                     ("truncated or corrupt",), "{out}/m.onnx"),
    "export-weights-malicious": Case("export --arch resnet18 --weights {ws}/evil.pth --output {out}/m.onnx",
                                     ("refused", "posix.system"), "{out}/m.onnx"),
    "export-weights-raw-pickle": Case("export --arch resnet18 --weights {ws}/evil-raw.pt --output {out}/m.onnx",
                                      ("refused",), "{out}/m.onnx"),
    "export-weights-text": Case("export --arch resnet18 --weights {ws}/notes.pth --output {out}/m.onnx",
                                ("not a PyTorch or safetensors checkpoint",), "{out}/m.onnx"),
    "export-weights-other-arch": Case("export --arch resnet34 --weights {ws}/r18.pth --output {out}/m.onnx",
                                      ("does not fit resnet34", "it fits resnet18"), "{out}/m.onnx"),
    "export-output-under-file": Case("export --arch resnet18 --output {ws}/blocker/m.onnx", ("cannot write",),
                                     "{ws}/blocker/m.onnx"),
    "export-batch-zero": Case("export --arch resnet18 --batch-axis 0 --output {out}/m.onnx", ("--batch-axis",), "{out}/m.onnx"),
    "export-opset-12": Case("export --arch resnet18 --opset 12 --output {out}/m.onnx", ("--opset 12",),
                            "{out}/m.onnx"),
    "export-img-size-huge": Case("export --arch resnet18 --img-size 100000 --output {out}/m.onnx", ("--img-size",),
                                 "{out}/m.onnx"),
    "export-negative-seed": Case("export --arch resnet18 --seed -1 --output {out}/m.onnx", ("--seed",),
                                 "{out}/m.onnx"),
    "export-zero-classes": Case("export --arch resnet18 --num-classes 0 --output {out}/m.onnx", ("--num-classes",),
                                "{out}/m.onnx"),
    # inspect
    "inspect-missing": Case("inspect {out}/nope[v2].onnx", ("no such file", "nope[v2].onnx")),
    "inspect-folder": Case("inspect {ws}", ("is a folder",)),
    "inspect-json": Case("inspect {ws}/m.onnx.json", ("not an ONNX model",)),
    "inspect-edited-metadata": Case("inspect {ws}/edited.onnx", ("damaged resnest-deploy metadata", "input")),
    "inspect-partial-metadata": Case("inspect {ws}/partial.onnx", ("damaged resnest-deploy metadata", "missing")),
    # quantize
    # quantize: accuracy budget
    **{f"quantize-budget-{name}": Case(f"quantize {{ws}}/m.onnx --precision int8 --calib-data synthetic {extra} "
                                       "--output {out}/q.onnx", fragments, "{out}/q.onnx")
       for name, extra, fragments in [
           ("nan", "--accuracy-data {ws}/imgs --max-accuracy-drop nan", ("--max-accuracy-drop", "finite")),
           ("inf", "--accuracy-data {ws}/imgs --max-accuracy-drop inf", ("--max-accuracy-drop", "finite")),
           ("zero", "--accuracy-data {ws}/imgs --max-accuracy-drop 0", ("--max-accuracy-drop", "more than 0")),
           ("negative", "--accuracy-data {ws}/imgs --max-accuracy-drop -1", ("--max-accuracy-drop", "more than 0")),
           ("over-100", "--accuracy-data {ws}/imgs --max-accuracy-drop 150", ("at most 100",)),
           ("agreement-one", "--accuracy-data {ws}/imgs --min-agreement 1", ("--min-agreement", "only FP32")),
           ("agreement-percent", "--accuracy-data {ws}/imgs --min-agreement 99", ("--min-agreement", "0.99")),
           ("agreement-nan", "--accuracy-data {ws}/imgs --min-agreement nan", ("--min-agreement", "finite")),
           ("both-goals", "--accuracy-data {ws}/imgs --max-accuracy-drop 1 --min-agreement 0.9", ("not both",)),
           ("no-data", "--max-accuracy-drop 1", ("needs --accuracy-data",)),
           ("data-without-goal", "--accuracy-data {ws}/imgs", ("--accuracy-data", "--max-accuracy-drop")),
           ("missing-folder", "--accuracy-data {ws}/nope --min-agreement 0.9", ("not a folder of images",)),
           ("empty-folder", "--accuracy-data {ws}/empty --min-agreement 0.9", ("no image files",)),
           ("unlabelled", "--accuracy-data {ws}/imgs --max-accuracy-drop 50", ("no labels for --max-accuracy-drop",
                                                                            "--class-index")),
           ("too-few", "--accuracy-data {ws}/imgs --min-agreement 0.9", ("4 images cannot resolve", "at least 20 images")),
           ("class-index-agreement", "--accuracy-data {ws}/imgs --min-agreement 0.5 --class-index {ws}/outside.json",
            ("--min-agreement needs no labels",)),
           ("max-trials-zero", "--accuracy-data {ws}/imgs --min-agreement 0.5 --max-trials 0", ("--max-trials",)),
       ]},
    "quantize-budget-fp16": Case("quantize {ws}/m.onnx --precision fp16 --accuracy-data {ws}/imgs "
                                 "--max-accuracy-drop 1 --output {out}/q.onnx", ("--precision int8",), "{out}/q.onnx"),
    "quantize-int4": Case("quantize {ws}/m.onnx --precision int4 --output {out}/q.onnx", ("--precision", "int4"),
                          "{out}/q.onnx"),
    "quantize-method-typo": Case("quantize {ws}/m.onnx --precision int8 --calib-data synthetic --method kl "
                                 "--output {out}/q.onnx", ("--method",), "{out}/q.onnx"),
    "quantize-int8-no-data": Case("quantize {ws}/m.onnx --precision int8 --output {out}/q.onnx",
                                  ("INT8 needs --calib-data",), "{out}/q.onnx"),
    "quantize-empty-folder": Case("quantize {ws}/m.onnx --precision int8 --calib-data {ws}/empty "
                                  "--output {out}/q.onnx", ("no image files",), "{out}/q.onnx"),
    "quantize-corrupt-folder": Case("quantize {ws}/m.onnx --precision int8 --calib-data {ws}/corrupt "
                                    "--no-cache --output {out}/q.onnx", ("no readable images among 2 files",),
                                    "{out}/q.onnx"),
    "quantize-calib-missing": Case("quantize {ws}/m.onnx --precision int8 --calib-data {ws}/nope "
                                   "--output {out}/q.onnx", ("no such calibration folder",), "{out}/q.onnx"),
    "quantize-calib-is-image": Case("quantize {ws}/m.onnx --precision int8 --calib-data {ws}/lone.png "
                                    "--output {out}/q.onnx", ("is an image",), "{out}/q.onnx"),
    "quantize-calib-binary-list": Case("quantize {ws}/m.onnx --precision int8 --calib-data {ws}/binary.list "
                                       "--output {out}/q.onnx", ("not a text file listing images",),
                                       "{out}/q.onnx"),
    "quantize-calib-size-zero": Case("quantize {ws}/m.onnx --precision int8 --calib-data synthetic --calib-size 0 "
                                     "--output {out}/q.onnx", ("--calib-size",), "{out}/q.onnx"),
    "quantize-exclude-no-match": Case("quantize {ws}/m.onnx --precision int8 --calib-data synthetic --calib-size 4 "
                                      "--exclude layer9.* --output {out}/q.onnx", ("'layer9.*' matches no layer",),
                                      "{out}/q.onnx"),
    "quantize-fp16-exclude-no-match": Case("quantize {ws}/m.onnx --precision fp16 --exclude Layer4 "
                                           "--output {out}/q.onnx", ("'Layer4' matches no layer",), "{out}/q.onnx"),
    "quantize-keep-fp32-absent-op": Case("quantize {ws}/m.onnx --precision fp16 --keep-fp32 Softmax "
                                         "--output {out}/q.onnx", ("'Softmax'", "no such op"), "{out}/q.onnx"),
    "quantize-sensitivity-fp16": Case("quantize {ws}/m.onnx --precision fp16 --sensitivity --output {out}/q.onnx",
                                      ("int8 only",), "{out}/q.onnx"),
    "quantize-overwrite-input": Case("quantize {ws}/m.onnx --precision fp16 --output {ws}/m.onnx",
                                     ("would overwrite the input",)),
    "quantize-edited-metadata": Case("quantize {ws}/edited.onnx --precision fp16 --output {out}/q.onnx",
                                     ("damaged resnest-deploy metadata",), "{out}/q.onnx"),
    "quantize-output-under-file": Case("quantize {ws}/m.onnx --precision fp16 --output {ws}/blocker/q.onnx",
                                       ("cannot write",), "{ws}/blocker/q.onnx"),
    # parity
    "parity-weights-folder": Case("parity {ws}/m.onnx --weights {ws} --output {out}/r.json", ("is a folder",),
                                  "{out}/r.json"),
    "parity-weights-missing": Case("parity {ws}/m.onnx --weights {ws}/nope.pth --output {out}/r.json",
                                   ("no such checkpoint file",), "{out}/r.json"),
    "parity-class-index-missing": Case("parity {ws}/m.onnx --data {ws}/imgs --class-index {ws}/nope.json "
                                       "--output {out}/r.json", ("no such class index file",), "{out}/r.json"),
    "parity-class-index-broken-json": Case("parity {ws}/m.onnx --data {ws}/imgs --class-index {ws}/broken.json "
                                           "--output {out}/r.json", ("not valid JSON",), "{out}/r.json"),
    "parity-class-index-outside": Case("parity {ws}/m.onnx --data {ws}/imgs --class-index {ws}/outside.json "
                                       "--output {out}/r.json", ("index 1000 is outside",), "{out}/r.json"),
    "parity-class-index-lacks-folder": Case("parity {ws}/m.onnx --data {ws}/imgs --class-index "
                                            "{ws}/partial-index.txt --output {out}/r.json",
                                            ("no index for folders", "n01443537"), "{out}/r.json"),
    "parity-class-index-bad-keys": Case("parity {ws}/m.onnx --data {ws}/imgs --class-index {ws}/keras-bad.json "
                                        "--output {out}/r.json", ("'zero' is not a class index",), "{out}/r.json"),
    "parity-class-index-without-data": Case("parity {ws}/m.onnx --class-index {ws}/outside.json "
                                            "--output {out}/r.json", ("give --data too",), "{out}/r.json"),
    "parity-data-is-a-file": Case("parity {ws}/m.onnx --data {ws}/lone.png --output {out}/r.json",
                                  ("not a folder of images",), "{out}/r.json"),
    "parity-bad-tolerance": Case("parity {ws}/m.onnx --tol cosine=0.9 --output {out}/r.json",
                                 ("unknown tolerance cosine",), "{out}/r.json"),
    "parity-negative-seed": Case("parity {ws}/m.onnx --seed -3 --output {out}/r.json", ("--seed",), "{out}/r.json"),
    "parity-report-under-file": Case("parity {ws}/m.onnx --output {ws}/blocker/r.json", ("cannot write",),
                                     "{ws}/blocker/r.json"),
    "parity-engine-damaged-manifest": Case("parity {ws}/m.engine --output {out}/r.json", ("damaged manifest",),
                                           "{out}/r.json"),
    "parity-engine-no-manifest": Case("parity {ws}/bare.engine --output {out}/r.json", ("no manifest",),
                                      "{out}/r.json"),
    # bench
    "bench-unknown-backend": Case("bench {ws}/m.onnx --backends eager,tvm --output {out}/b.json",
                                  ("'tvm' is not one of",), "{out}/b.json"),
    "bench-batch-zero": Case("bench {ws}/m.onnx --bench-batch 1,0 --output {out}/b.json", ("--bench-batch",), "{out}/b.json"),
    "bench-threads-zero": Case("bench {ws}/m.onnx --threads 0 --output {out}/b.json", ("--threads",),
                               "{out}/b.json"),
    "bench-fixed-batch-mismatch": Case("bench {ws}/fixed4.onnx --bench-batch 1,8 --iters 1 --warmup 0 "
                                       "--output {out}/b.json", ("fixed batch of 4", "add 4"), "{out}/b.json"),
    "bench-engine-without-trt": Case("bench {ws}/m.engine --output {out}/b.json", ("add the trt backend",),
                                     "{out}/b.json"),
    "bench-report-under-file": Case("bench {ws}/m.onnx --iters 1 --output {ws}/blocker/b.json", ("cannot write",),
                                    "{ws}/blocker/b.json"),
    # build
    "build-no-gpu": Case("build {ws}/m.onnx --output {out}/m.engine", ("needs an NVIDIA GPU",), "{out}/m.engine"),
    "build-bad-profile": Case("build {ws}/m.onnx --profile 8:1:32 --output {out}/m.engine", ("MIN:OPT:MAX",),
                              "{out}/m.engine"),
    "build-compat-typo": Case("build {ws}/m.onnx --hardware-compat turing --output {out}/m.engine",
                              ("--hardware-compat",), "{out}/m.engine"),
    "build-foreign-op": Case("build {ws}/foreign-op.onnx --emit-script {out}/job", ("com.example::",),
                             "{out}/job/build.sh"),
    "build-script-under-file": Case("build {ws}/m.onnx --emit-script {ws}/blocker/job", ("cannot write",),
                                    "{ws}/blocker/job"),
    # report, models, show, download
    "report-missing-folder": Case("report {out}/nope", ("not a folder",), "{out}/nope/report.html"),
    "report-no-reports": Case("report {ws}/empty --output {out}/page.html", ("no parity or bench reports",),
                              "{out}/page.html"),
    "report-only-cut-reports": Case("report {ws}/cut-reports --output {out}/page.html",
                                    ("not a complete parity report",), "{out}/page.html"),
    "models-no-match": Case("models resnet9*", ("no architecture matches",)),
    "show-bad-weights": Case("show resnet18 --weights {ws}/notes.pth", ("not a PyTorch",)),
    "download-no-release": Case("download resnest14d --output {out}/w", ("no published checkpoint",), "{out}/w"),
    "download-bad-hash": Case("download resnet18 --output {out}/w --url file://{ws}/r18.pth", ("SHA-256",),
                              "{out}/w/r18.pth"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_gets_one_line_and_leaves_nothing(ws, tmp_path, name):
    case = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(ws=ws, out=out) for a in case.args.split()]
    before = sorted(p.name for p in ws.rglob("*"))
    result = run_cli_here(*args, cwd=tmp_path)
    assert_one_line_error(result, *case.fragments, code=case.code)
    if case.target:
        assert not Path(case.target.format(ws=ws, out=out)).exists(), "something was written at the target"
    assert not [p for p in tmp_path.rglob(".*") if p.name.endswith(".tmp")], "a temporary file was left"
    assert sorted(p.name for p in ws.rglob("*")) == before, "the case wrote into the shared inputs"


def test_there_are_at_least_40_cases_across_every_command():
    commands = {case.args.split()[0] for case in CASES.values()}
    assert len(CASES) >= 40
    assert commands >= {"export", "inspect", "quantize", "parity", "bench", "build", "report", "models", "show",
                        "download"}


def test_markdown_named_reports_never_overwrite_their_json(ws, tmp_path):
    result = run_cli("parity", str(ws / "m.onnx"), "--samples", "2", "--output", str(tmp_path / "r.md"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["schema"] == "resnest-deploy/parity/2"
    assert (tmp_path / "r.md").read_text().startswith("# Parity")
    page = run_cli("report", str(tmp_path), "--output", str(tmp_path / "page.md"))
    assert page.returncode == 0, page.stderr
    assert (tmp_path / "page.html").read_text().startswith("<!doctype html>")
    assert (tmp_path / "page.md").read_text().startswith("# resnest-deploy run")


def test_an_existing_folder_as_output_gets_the_default_name_inside(ws, tmp_path):
    for args, name in ((("parity", str(ws / "m.onnx"), "--samples", "2", "--output"), "m.onnx.parity.json"),
                       (("quantize", str(ws / "m.onnx"), "--precision", "fp16", "--output"), "m.fp16.onnx")):
        result = run_cli(*args, str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert (tmp_path / name).is_file()


def test_names_with_brackets_are_text_not_markup(ws, tmp_path):
    model = tmp_path / "m[bold][v2].onnx"
    shutil.copy(ws / "m.onnx", model)
    result = run_cli("parity", str(model), "--samples", "2")
    assert result.returncode == 0, result.stderr
    assert "m[bold][v2].onnx" in result.stdout and (tmp_path / "m[bold][v2].onnx.parity.md").is_file()


def test_help_shows_defaults_and_no_value_type_for_flags():
    result = run_cli("export", "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    assert "[default: artifacts/<arch>/<arch>.onnx]" in " ".join(result.stdout.split())
    assert "[default: 18]" in result.stdout and "<bool>" not in result.stdout
    listed = run_cli("quantize", "--help", env={"COLUMNS": "200"})
    assert "fp16|int8" in listed.stdout and "percentile|max|entropy" in listed.stdout


def test_ctrl_c_during_torch_export_is_one_line_and_leaves_nothing(tmp_path):
    """SIGINT while torch.onnx.export runs (which catches broadly and may even finish the export): exit 130, one
    line naming the step and the path, no file at the target and no temporary file."""
    target = tmp_path / "out" / "m.onnx"
    trace = tmp_path / "trace.txt"
    # The test hook holds the export inside torch's exporter (tracing the model) until the signal comes.
    env = {**os.environ, "PYTHONPATH": f"{TRIPWIRE}:{ROOT}", "RESNEST_DEPLOY_TRACE": str(trace),
           "RESNEST_DEPLOY_PAUSE_AT": "inside torch.onnx.export"}
    proc = subprocess.Popen([sys.executable, "-m", "resnest_deploy", "export", "--arch", "resnet18", "--img-size",
                             "64", "--output", str(target)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for_trace(proc, trace, "paused at inside torch.onnx.export")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 130, stderr
    assert lines == [f"interrupted during torch.onnx.export; nothing written at {target}"], stderr
    assert not target.exists() and not list(tmp_path.rglob("*.tmp"))
