"""`resnest-deploy quantize` end to end: metadata and manifest records, warnings, and bad input."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from resnest_deploy.exporters.metadata import META_PREFIX, manifest_path, read_metadata
from tests.conftest import assert_one_line_error

pytestmark = pytest.mark.xdist_group("trained")


@pytest.fixture
def few_images(trained, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for path in sorted(trained.train_dir.rglob("*.png"))[::100][:12]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def test_int8_records_precision_method_samples_and_file_list(cli, trained, few_images, tmp_path):
    out = tmp_path / "m.int8.onnx"
    result = cli("quantize", str(trained.onnx), "--precision", "int8", "--calib-data", str(few_images),
                 "--calib-size", "50", "--method", "max", "--output", str(out), "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    assert "using all 13" in result.stderr and "skipped 1 unreadable" in result.stderr
    meta = read_metadata(onnx.load(str(out)))
    record = meta.extra["quantization"]
    assert meta.precision == "int8" and record["method"] == "max"
    assert record["calibration"]["samples"] == 12 and record["calibration"]["skipped"] == 1
    assert len(record["calibration"]["file_list_sha256"]) == 64
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["precision"] == "int8" and manifest["extra"]["quantization"] == record
    assert all(r["passed"] for r in manifest["rules"])
    # Same files again: the preprocessed tensor comes from the cache, and the recorded hash is the same.
    again = cli("quantize", str(trained.onnx), "--precision", "int8", "--calib-data", str(few_images),
                "--calib-size", "50", "--method", "max", "--output", str(tmp_path / "b.onnx"),
                "--cache-dir", str(tmp_path / "c"))
    assert again.returncode == 0 and "(cached)" in again.stdout
    meta_b = read_metadata(onnx.load(str(tmp_path / "b.onnx")))
    assert meta_b.extra["quantization"]["calibration"] == record["calibration"]


def test_fp16_of_an_onnx_without_metadata_needs_arch(cli, trained, tmp_path):
    foreign = onnx.load(str(trained.onnx))
    keep = [p for p in foreign.metadata_props if not p.key.startswith(META_PREFIX)]
    del foreign.metadata_props[:]
    foreign.metadata_props.extend(keep)
    path = tmp_path / "foreign.onnx"
    onnx.save(foreign, str(path))
    assert_one_line_error(cli("quantize", str(path), "--precision", "fp16"), "no resnest-deploy metadata", "--arch")
    ok = cli("quantize", str(path), "--precision", "fp16", "--arch", "resnest14d")
    assert ok.returncode == 0, ok.stderr
    meta = read_metadata(onnx.load(str(tmp_path / "foreign.fp16.onnx")))
    assert meta.precision == "fp16" and meta.arch == "resnest14d" and meta.input.size == 32


def test_bad_input(cli, trained, tmp_path):
    model = str(trained.onnx)
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_text("not an image")
    (corrupt / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    out = ["--output", str(tmp_path / "x.onnx")]
    assert_one_line_error(cli("quantize", model, "--precision", "int8", "--calib-data", str(empty), *out),
                          "no image files")
    assert_one_line_error(cli("quantize", model, "--precision", "int8", "--calib-data", str(corrupt), *out),
                          "no readable images among 2 files")
    assert_one_line_error(cli("quantize", model, "--precision", "int8", *out), "INT8 needs --calib-data")
    assert_one_line_error(cli("quantize", model, "--precision", "int4", *out), "--precision", "int4")
    assert_one_line_error(cli("quantize", model, "--precision", "int8", "--calib-data", "synthetic",
                              "--method", "kl", *out), "--method", "kl")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(cli("quantize", model, "--precision", "fp16", "--output", str(blocker / "m.onnx")))
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_methods_calibrate_a_ragged_image_count(cli, trained, few_images, tmp_path, method):
    """12 readable images (+1 corrupt) do not fill batches of 8: the histogram calibrators used to crash here."""
    out = tmp_path / "m.int8.onnx"
    result = cli("quantize", str(trained.onnx), "--precision", "int8", "--calib-data", str(few_images),
                 "--method", method, "--output", str(out), "--no-cache")
    assert result.returncode == 0, result.stderr
    record = read_metadata(onnx.load(str(out))).extra["quantization"]
    assert record["method"] == method and record["calibration"]["samples"] == 12
