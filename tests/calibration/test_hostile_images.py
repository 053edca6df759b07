"""Every way a file in a user's image folder can fail is one skipped-and-counted file, in calibration and parity
alike; folders hold classes, never hidden folders or dataset splits. The files are generated (tests/hostile.py):
each kind of readable, unreadable and not-a-file entry, and random mixes of them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnest_deploy.calibration.dataset import load_calibration
from resnest_deploy.calibration.images import ImageReadError, find_images, open_rgb, preprocess
from resnest_deploy.errors import ConfigError
from resnest_deploy.models import get_config
from resnest_deploy.parity.engine import run_parity
from resnest_deploy.parity.options import ParityOptions
from tests import hostile
from tests.conftest import assert_one_line_error, run_cli

CFG = get_config("resnet18").input.at_size(32)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    return {"ok": hostile.write_readable(root / "ok"), "bad": hostile.write_unreadable(root / "bad"),
            "not_files": hostile.write_not_files(root / "nf")}


@pytest.mark.parametrize("name", hostile.READABLE)
def test_every_readable_kind_decodes_to_rgb_as_stored(pool, name):
    path = next(p for p in pool["ok"] if p.name == name)
    image = open_rgb(path)
    assert image.mode == "RGB"
    stored = {"tiny_1x1.png": (1, 1), "wide.png": (400, 8)}.get(name, (64, 48))
    assert image.size == stored  # EXIF orientation is not applied, animations give their first frame
    assert preprocess(image, CFG).shape == (3, 32, 32)


@pytest.mark.parametrize("name", hostile.UNREADABLE + hostile.NOT_FILES)
def test_every_unreadable_kind_is_one_read_error_with_a_reason(pool, name):
    path = next(p for p in pool["bad"] + pool["not_files"] if p.name == name)
    with pytest.raises(ImageReadError) as caught:
        open_rgb(path)  # a FIFO must not block: it is refused before it is opened
    assert str(caught.value) and "\n" not in str(caught.value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good=st.sets(st.sampled_from(hostile.READABLE)), bad=st.sets(st.sampled_from(hostile.UNREADABLE)),
       odd=st.sets(st.sampled_from(hostile.NOT_FILES)))
def test_calibration_uses_every_readable_file_and_counts_the_rest(tmp_path_factory, good, bad, odd):
    folder = tmp_path_factory.mktemp("mix")
    hostile.write_readable(folder, tuple(sorted(good)))
    hostile.write_unreadable(folder, tuple(sorted(bad)))
    hostile.write_not_files(folder, tuple(sorted(odd)))
    count = len(good) + len(bad) + len(odd)
    if not count:
        return
    if not good:
        with pytest.raises(ConfigError, match="no readable images"):
            load_calibration(folder, CFG, count=count, use_cache=False)
        return
    data = load_calibration(folder, CFG, count=count, use_cache=False)
    assert data.array.shape == (len(good), 3, 32, 32) and np.isfinite(data.array).all()
    assert len(data.skipped) == len(bad) + len(odd)
    assert {p.split("/")[-1] for p, _ in data.skipped} == bad | odd


@pytest.mark.xdist_group("resnet18-3cls")
def test_hidden_folders_are_never_classes_and_split_roots_are_named(tmp_path, export_cache):
    root = tmp_path / "data"
    for name in ("cat", "dog", ".ipynb_checkpoints", ".git"):
        hostile.write_readable(root / name, ("rgb.png",))
    hostile.write_readable(root / "cat" / ".thumbnails", ("gray.jpg",))
    images = find_images(root)
    assert images.classes == ("cat", "dog") and len(images.files) == 2
    splits = tmp_path / "splits"
    for name in ("train", "val"):
        hostile.write_readable(splits / name / "cat", ("rgb.png",))
    artifact = export_cache("resnet18", 64, num_classes=3).path
    result = run_parity(ParityOptions(artifact=artifact, data=splits, batch=2))
    assert result.accuracy is None
    assert any("dataset root split into train, val" in n and "--data" in n for n in result.notes), result.notes


@pytest.mark.xdist_group("resnet18")
def test_commands_skip_and_count_hostile_files_and_never_crash(pool, tmp_path, export_cache):
    """quantize and parity on a folder of every hostile kind: exit 0, each bad file counted; a folder of only bad
    files: one line, exit 2, nothing written."""
    model = export_cache("resnet18", 64).path
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in pool["ok"][:2] + pool["bad"]:
        shutil.copy(path, mixed / path.name)
    hostile.write_not_files(mixed)
    out = tmp_path / "q.onnx"
    result = run_cli("quantize", str(model), "--precision", "int8", "--calib-data", str(mixed), "--calib-size", "99",
                     "--no-cache", "--output", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "q.onnx.json").read_text())["extra"]["quantization"]["calibration"]
    assert record["samples"] == 2 and record["skipped"] == len(hostile.UNREADABLE) + len(hostile.NOT_FILES)
    report = tmp_path / "p.json"
    result = run_cli("parity", str(model), "--data", str(mixed), "--output", str(report))
    assert result.returncode == 0, result.stderr
    assert len(json.loads(report.read_text())["skipped"]) == len(hostile.UNREADABLE) + len(hostile.NOT_FILES)
    only_bad = tmp_path / "bad"
    hostile.write_unreadable(only_bad)
    for args in (("quantize", str(model), "--precision", "int8", "--calib-data", str(only_bad), "--output",
                  str(tmp_path / "none.onnx")),
                 ("parity", str(model), "--data", str(only_bad), "--output", str(tmp_path / "none.json"))):
        assert_one_line_error(run_cli(*args), "no readable images")
    assert not list(tmp_path.glob("none*"))
