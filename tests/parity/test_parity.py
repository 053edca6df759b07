"""Parity of exported artifacts against eager PyTorch, localisation, accuracy and bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from resnest_deploy.calibration.images import find_images, iter_batches
from resnest_deploy.models import create_model, list_models
from resnest_deploy.parity import ParityOptions, run_parity
from tests.conftest import assert_one_line_error, write_test_images

SMALL = 64


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_test_images(tmp_path_factory.mktemp("images"), classes=3, per_class=3)


@pytest.mark.xdist_group("resnest50-native")
def test_correct_resnest50_export_passes_on_64_inputs(export_cache, cli, tmp_path):
    artifact = export_cache("resnest50").path
    report = tmp_path / "parity.json"
    result = cli("parity", str(artifact), "--samples", "64", "--output", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and data["metrics"]["samples"] == 64
    assert data["metrics"]["max_abs_rel"] <= 1e-4
    assert data["metrics"]["top1_agreement"] == 1.0
    assert report.with_suffix(".md").read_text().startswith("# Parity")


# The three deepest archs are left to the export test, which verifies the same graphs against eager on ONNX Runtime
# (compare_with_eager); the parity code path does not depend on the arch, and they cost ~3 minutes of suite time.
DEEPEST = {"resnest200", "resnest269", "resnext101_32x8d"}


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.xdist_group(a)) for a in list_models()
                                  if a not in DEEPEST])
def test_every_arch_passes_on_random_inputs_and_images(export_cache, images, arch):
    artifact = export_cache(arch, SMALL).path
    eager = create_model(arch)  # built once for both runs (the CLI tests cover rebuilding it from metadata)
    synthetic = run_parity(ParityOptions(artifact=artifact, samples=8, batch=4, model=eager))
    assert synthetic.passed, [v for v in synthetic.verdicts if not v.passed]
    real = run_parity(ParityOptions(artifact=artifact, data=images, batch=4, model=eager))
    assert real.passed, [v for v in real.verdicts if not v.passed]
    assert real.metrics.samples == 9 and len(real.skipped) == 2


def _perturbed_copy(path, tmp_path, name: str, factor: float = 1.5):
    model = onnx.load(str(path))
    target = next(t for t in model.graph.initializer if t.name == name)
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * factor, target.name))
    out = tmp_path / f"perturbed-{path.name}"
    onnx.save(model, str(out))
    return out


@pytest.mark.xdist_group("resnest26d")
def test_perturbed_layer3_weight_fails_and_is_localised(export_cache, cli, tmp_path):
    artifact = export_cache("resnest26d", SMALL).path
    bad = _perturbed_copy(artifact, tmp_path, "layer3.1.conv2.conv.weight")
    result = cli("parity", str(bad), "--samples", "16", "--localize", "--output", str(tmp_path / "r.json"))
    assert result.returncode == 1, result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert not data["passed"]
    loc = data["localization"]
    assert loc["first_bad"] == "layer3.1", loc
    before = [s for s in loc["stages"] if s["name"] in ("stem", "layer1.0", "layer2.1", "layer3.0")]
    assert all(s["passed"] for s in before)
    assert "first diverging stage: layer3.1" in result.stdout


@pytest.mark.xdist_group("resnet18-3cls")
def test_accuracy_on_a_class_tree(export_cache, images):
    artifact = export_cache("resnet18", SMALL, num_classes=3).path
    result = run_parity(ParityOptions(artifact=artifact, data=images, batch=4))
    acc = result.accuracy
    assert acc is not None and acc["mapping"] == "sorted folder names" and acc["samples"] == 9
    # Recompute eager top-1 independently from the same files.
    model = create_model("resnet18", num_classes=3)
    hits = []
    image_set = find_images(images)
    for batch in iter_batches(image_set, result_input(artifact), 4):
        with torch.no_grad():
            predicted = model(torch.from_numpy(batch.array)).argmax(1).numpy()
        hits += [p == image_set.classes.index(label) for p, label in zip(predicted, batch.labels)]
    assert acc["eager_top1"] == pytest.approx(np.mean(hits))
    assert acc["top1_change"] == pytest.approx(acc["artifact_top1"] - acc["eager_top1"])


def result_input(artifact):
    from resnest_deploy.exporters.metadata import read_metadata

    return read_metadata(onnx.load(str(artifact))).input


@pytest.mark.xdist_group("resnet18")
def test_bad_input(export_cache, cli, tmp_path):
    artifact = export_cache("resnet18", SMALL).path
    assert_one_line_error(cli("parity", str(tmp_path / "missing.onnx")), "no such file")
    text = tmp_path / "fake.onnx"
    text.write_text("hello")
    assert_one_line_error(cli("parity", str(text)), "not an ONNX model")
    assert_one_line_error(cli("parity", str(artifact), "--arch", "resnet34"), "does not match", "resnet18")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(cli("parity", str(artifact), "--data", str(empty)), "no image files")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (broken / "b.png").write_text("nope")
    assert_one_line_error(cli("parity", str(artifact), "--data", str(broken)), "no readable images")
    assert_one_line_error(cli("parity", str(artifact), "--tol", "bogus=1"), "unknown tolerance")
    assert_one_line_error(cli("parity", str(artifact), "--batch", "0"), "--batch")


@pytest.mark.xdist_group("resnet18")
def test_artifact_without_metadata_needs_a_fitting_arch(export_cache, cli, tmp_path):
    model = onnx.load(str(export_cache("resnet18", SMALL).path))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    assert_one_line_error(cli("parity", str(bare)), "no resnest-deploy metadata", "--arch")
    assert_one_line_error(cli("parity", str(bare), "--arch", "resnet34"), "64px", "224px")
    assert_one_line_error(cli("parity", str(bare), "--arch", "resnet18"), "64px", "224px")


@pytest.mark.xdist_group("skresnet18-b4")
def test_fixed_batch_artifact_runs_in_padded_chunks(export_cache):
    artifact = export_cache("skresnet18", SMALL, batch="4").path
    result = run_parity(ParityOptions(artifact=artifact, samples=7, batch=3, localize=True))
    assert result.passed and result.metrics.samples == 7
