"""Calibration data: deterministic sampling, eval preprocessing, cache, unreadable files, bad sources."""

from __future__ import annotations

import os

import numpy as np
import pytest

from resnest_deploy.calibration.dataset import load_calibration, sample_images
from resnest_deploy.calibration.images import find_images, open_rgb, preprocess
from resnest_deploy.errors import ConfigError
from resnest_deploy.models import get_config
from tests.conftest import write_test_images

CFG = get_config("resnet18").input.__class__(**{**get_config("resnet18").input.__dict__, "size": 32})


@pytest.fixture
def folder(tmp_path):
    return write_test_images(tmp_path / "imgs", classes=3, per_class=4)


def test_sampling_is_seeded_and_sorted(folder):
    images = find_images(folder)
    a, _ = sample_images(images, 5, seed=1)
    b, _ = sample_images(images, 5, seed=1)
    c, _ = sample_images(images, 5, seed=2)
    assert a.files == b.files and len(a.files) == 5
    assert a.files != c.files
    assert list(a.files) == sorted(a.files)


def test_tensor_is_the_eval_transform_of_the_chosen_files_and_is_cached(folder, tmp_path):
    first = load_calibration(folder, CFG, count=6, seed=0, cache_dir=tmp_path / "cache")
    assert not first.cache_hit
    expected = np.stack([preprocess(open_rgb(__import__("pathlib").Path(f)), CFG) for f in first.files])
    np.testing.assert_array_equal(first.array, expected)
    again = load_calibration(folder, CFG, count=6, seed=0, cache_dir=tmp_path / "cache")
    assert again.cache_hit and again.files == first.files
    np.testing.assert_array_equal(again.array, first.array)
    assert again.file_list_sha256 == first.file_list_sha256 and len(first.file_list_sha256) == 64
    # Touching a chosen file changes the key: the cache is not reused for changed data.
    target = __import__("pathlib").Path(first.files[0])
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    changed = load_calibration(folder, CFG, count=6, seed=0, cache_dir=tmp_path / "cache")
    assert not changed.cache_hit and changed.file_list_sha256 != first.file_list_sha256
    # Other preprocessing, other key.
    other = load_calibration(folder, CFG.__class__(**{**CFG.__dict__, "size": 40}), count=6, seed=0,
                             cache_dir=tmp_path / "cache")
    assert other.array.shape[-1] == 40 and other.file_list_sha256 != changed.file_list_sha256


def test_unreadable_files_are_skipped_and_counted(folder, tmp_path):
    data = load_calibration(folder, CFG, count=100, seed=0, use_cache=False)
    assert len(data.skipped) == 2 and data.array.shape[0] == 12
    assert any("more than the 14 images" in w for w in data.warnings)
    assert any("skipped 2" in w for w in data.warnings)


def test_list_file_source(folder, tmp_path):
    files = sorted(p for p in folder.rglob("*.png"))[:3]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(os.path.relpath(f, tmp_path) for f in files) + "\n")
    data = load_calibration(listing, CFG, count=10, use_cache=False)
    assert sorted(data.files) == sorted(str(f.resolve()) for f in files if "truncated" not in f.name
                                        and "notes" not in f.name)


def test_bad_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no image files"):
        load_calibration(tmp_path / "empty", CFG)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_text("not an image")
    (corrupt / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ConfigError, match="no readable images among 2 files"):
        load_calibration(corrupt, CFG, use_cache=False)
    with pytest.raises(ConfigError, match="no such calibration folder"):
        load_calibration(tmp_path / "missing", CFG)
    with pytest.raises(ConfigError, match="--calib-size must be >= 1"):
        load_calibration(tmp_path / "empty", CFG, count=0)


def test_concurrent_runs_never_read_a_torn_cache_file(tmp_path):
    """Several processes calibrating from one folder into one cache at once: every one gets the full tensor, and
    the cache entry they leave reads back whole (entries are written to a temporary name and renamed)."""
    import subprocess
    import sys

    from tests import hostile
    from tests.conftest import ROOT

    folder = tmp_path / "images"
    hostile.write_readable(folder)
    code = ("import sys; from resnest_deploy.calibration.dataset import load_calibration; "
            "from resnest_deploy.models import get_config; "
            f"d = load_calibration({str(folder)!r}, get_config('resnet18').input.at_size(32), count=99, "
            f"cache_dir={str(tmp_path / 'cache')!r}); print(d.array.shape[0], d.cache_hit)")
    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
                 for _ in range(4)]
        outputs = [p.communicate(timeout=300)[0].split() for p in procs]
        assert all(p.returncode == 0 for p in procs) and all(o[0] == str(len(hostile.READABLE)) for o in outputs)
    entries = list((tmp_path / "cache" / "calibration").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".npz"
    with np.load(entries[0]) as stored:
        assert stored["array"].shape == (len(hostile.READABLE), 3, 32, 32)
