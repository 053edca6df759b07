"""``deploy --max-accuracy-drop/--min-agreement``: which images the budget is measured on, and which steps a change
reruns (the plan of the real validator and workflow; quantize's search itself is tested in
tests/calibration/test_budgeted.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from resnest_deploy.deploy.options import DeployOptions
from resnest_deploy.deploy.pipeline import validate
from resnest_deploy.deploy.workflow import Workflow
from resnest_deploy.errors import ConfigError


@pytest.fixture
def folders(tmp_path):
    """A labelled tree (two class folders), a flat folder, and calibration images: real PNG files."""
    rng = np.random.default_rng(0)
    for sub in ("labelled/cat", "labelled/dog", "flat", "calib"):
        (tmp_path / sub).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / sub / f"{i}.png")
    return tmp_path


def _options(folders, **changes):
    base = dict(arch="resnet18", precisions=("fp32", "fp16", "int8"), calib_data=str(folders / "calib"),
                output=folders / "run", img_size=32)
    return DeployOptions(**{**base, **changes})


def _plan(folders, **changes) -> dict[str, dict]:
    settled = validate(_options(folders, **changes))
    steps = Workflow(settled.options, settled.targets, settled.host, settled.calibration, settled.data_key).build()
    return {s.name: s.options for s in steps}


def test_accuracy_data_defaults_to_a_labelled_parity_folder(folders):
    settled = validate(_options(folders, data=folders / "labelled", max_accuracy_drop=1.0))
    assert settled.options.accuracy_data == folders / "labelled"
    given = validate(_options(folders, data=folders / "labelled", accuracy_data=folders / "flat", min_agreement=0.9))
    assert given.options.accuracy_data == folders / "flat"
    agreement = validate(_options(folders, data=folders / "flat", min_agreement=0.9))  # agreement needs no labels
    assert agreement.options.accuracy_data == folders / "flat"


@pytest.mark.parametrize("changes, fragment", [
    (dict(data="flat", max_accuracy_drop=1.0), "has none (not a class-per-subfolder tree)"),
    (dict(max_accuracy_drop=1.0), "needs --accuracy-data"),
    (dict(accuracy_data="labelled"), "goes with --max-accuracy-drop"),
    (dict(precisions=("fp32", "fp16"), calib_data=None, accuracy_data="labelled", max_accuracy_drop=1.0),
     "applies to INT8"),
    (dict(accuracy_data="labelled", max_accuracy_drop=float("nan")), "--max-accuracy-drop must be a finite"),
    (dict(accuracy_data="labelled", min_agreement=1.0), "--min-agreement"),
    (dict(accuracy_data="nope", max_accuracy_drop=1.0), "not a folder of images"),
])
def test_budget_options_are_refused_before_any_step(folders, changes, fragment):
    changes = {k: folders / v if k in ("data", "accuracy_data") else v for k, v in changes.items()}
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        validate(_options(folders, **changes))
    assert not (folders / "run").exists()


def test_only_the_int8_steps_and_what_follows_them_depend_on_the_budget(folders):
    base = _plan(folders, accuracy_data=folders / "labelled", max_accuracy_drop=1.0)
    same = _plan(folders, accuracy_data=folders / "labelled", max_accuracy_drop=1.0)
    assert base == same
    looser = _plan(folders, accuracy_data=folders / "labelled", max_accuracy_drop=2.0)
    changed = {name for name in base if base[name] != looser[name]}
    assert changed == {"quantize int8"}  # later steps rerun because their input (the INT8 file) changes
    edited = folders / "labelled" / "cat" / "0.png"
    Image.new("RGB", (20, 20), (255, 0, 0)).save(edited)
    os.utime(edited, ns=(1, 1))
    touched = _plan(folders, accuracy_data=folders / "labelled", max_accuracy_drop=1.0)
    assert {name for name in base if base[name] != touched[name]} == {"quantize int8"}
    plain = _plan(folders)
    assert {name for name in base if base[name] != plain[name]} == {"quantize int8"}
    assert "budget" not in plain["quantize int8"]
