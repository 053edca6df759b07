"""The accuracy data of the INT8 budget: labels from real image folders, the data hash, and the scores, checked
against torch's own losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from resnest_deploy.calibration.accuracy import Scorer, load_accuracy_data, standard_error
from resnest_deploy.calibration.budget import ACCURACY, AGREEMENT
from resnest_deploy.errors import ConfigError
from resnest_deploy.models import get_config

CFG = get_config("resnet18").input.at_size(32)

logits = arrays(np.float64, st.tuples(st.integers(2, 40), st.integers(2, 12)),
                elements=st.floats(-30, 30, allow_nan=False, allow_infinity=False))


@given(logits, st.data())
@settings(max_examples=60, deadline=None)
def test_accuracy_score_is_torch_top1_and_cross_entropy(x, data):
    labels = np.asarray(data.draw(st.lists(st.integers(0, x.shape[1] - 1), min_size=len(x), max_size=len(x))))
    fp32 = x + data.draw(st.floats(-1, 1))
    score, loss = Scorer(ACCURACY, fp32, labels).score(x)
    t = torch.from_numpy(x)
    assert score == pytest.approx(100.0 * float((t.argmax(1) == torch.from_numpy(labels)).double().mean()))
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(t, torch.from_numpy(labels))), rel=1e-9,
                                 abs=1e-9)


@given(logits, st.data())
@settings(max_examples=60, deadline=None)
def test_agreement_score_is_top1_agreement_and_kl_from_fp32(x, data):
    # a tied top-1 is a matter of convention (parity's, shared here) and real logits do not tie: tiny distinct
    # offsets per class keep hypothesis's many equal values apart
    x = x + np.arange(x.shape[1]) * np.pi * 1e-6
    fp32 = x + data.draw(arrays(np.float64, x.shape, elements=st.floats(-3, 3))) + np.arange(x.shape[1]) * 1e-7
    score, loss = Scorer(AGREEMENT, fp32, None).score(x)
    assert score == pytest.approx(100.0 * float(np.mean(x.argmax(1) == fp32.argmax(1))))
    expected = torch.nn.functional.kl_div(torch.log_softmax(torch.from_numpy(x), 1),
                                          torch.log_softmax(torch.from_numpy(fp32), 1), log_target=True,
                                          reduction="batchmean")
    assert loss == pytest.approx(float(expected), rel=1e-7, abs=1e-9)
    assert Scorer(AGREEMENT, fp32, None).score(fp32) == (100.0, pytest.approx(0.0, abs=1e-12))


def test_standard_error_of_a_paired_drop():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    right = np.eye(2)[labels] * 5
    wrong = right.copy()
    wrong[:2] = np.eye(2)[1 - labels[:2]] * 5  # two images flip to wrong
    d = np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    assert standard_error(ACCURACY, right, wrong, labels) == pytest.approx(100 * d.std(ddof=1) / np.sqrt(8))
    assert standard_error(ACCURACY, right, right, labels) == 0.0
    assert standard_error(AGREEMENT, right, wrong, None) == pytest.approx(100 * np.sqrt(0.75 * 0.25 / 8))


def _tree(root, per_class=3, classes=("cat", "dog")):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_labels_come_from_the_folders_and_unreadable_files_are_counted(tmp_path):
    root = _tree(tmp_path / "data")
    (root / "dog" / "broken.png").write_bytes(b"not an image")
    data = load_accuracy_data(root, CFG, kind=ACCURACY, limit=100, num_classes=2)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1] and data.array.shape == (6, 3, 32, 32)
    assert data.mapping == "sorted folder names" and len(data.skipped) == 1
    assert data.record()["images"] == 6 and data.record()["skipped"] == 1


def test_the_hash_follows_bytes_labels_and_names(tmp_path):
    root = _tree(tmp_path / "data")
    first = load_accuracy_data(root, CFG, kind=ACCURACY, limit=100, num_classes=2).sha256
    assert load_accuracy_data(root, CFG, kind=ACCURACY, limit=100, num_classes=2).sha256 == first
    Image.new("RGB", (24, 24), (9, 9, 9)).save(root / "cat" / "0.png")
    edited = load_accuracy_data(root, CFG, kind=ACCURACY, limit=100, num_classes=2).sha256
    assert edited != first
    (root / "cat" / "0.png").rename(root / "dog" / "9.png")  # the same file, relabelled
    assert load_accuracy_data(root, CFG, kind=AGREEMENT, limit=0.1, num_classes=2).sha256 != edited


def test_too_few_images_names_how_many_are_needed(tmp_path):
    root = _tree(tmp_path / "data", per_class=2)
    for f in (root / "dog").iterdir():
        f.write_bytes(b"cut")
    with pytest.raises(ConfigError, match=r"2 readable images \(2 unreadable\) cannot resolve 0.5 agreement.*"
                                          r"at least 4 images"):
        load_accuracy_data(root, CFG, kind=AGREEMENT, limit=0.5, num_classes=2)
    with pytest.raises(ConfigError, match="no labels for --max-accuracy-drop"):
        load_accuracy_data(_tree(tmp_path / "three", classes=("a", "b", "c")), CFG, kind=ACCURACY, limit=100,
                           num_classes=2)
