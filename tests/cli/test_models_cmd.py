"""`resnest-deploy models`, `show`, `download` and `--help` as a user runs them."""

from __future__ import annotations

import hashlib
import json

import torch

from resnest_deploy.models import list_models
from tests.conftest import assert_one_line_error


def test_help_and_models_never_import_tensorrt(cli):
    # tests/tripwire's tensorrt exits 97 if imported.
    result = cli("--help")
    assert result.returncode == 0 and "models" in result.stdout
    result = cli("models")
    assert result.returncode == 0, result.stderr
    for name in list_models():
        assert name in result.stdout


def test_models_json_has_sizes(cli):
    result = cli("models", "resnest*", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(list_models("resnest*"))
    assert rows["resnest50"]["params"] == 27_483_240
    assert rows["resnest101"]["input_size"] == 256
    assert abs(rows["resnest50"]["gmacs"] - 5.37) < 0.01


def test_unknown_arch_is_one_line(cli):
    assert_one_line_error(cli("show", "resnest5"), "unknown architecture", "resnest50")


def test_show_reports_random_init(cli):
    result = cli("show", "resnet18", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["weights"]["description"] == "random-init+bn-reestimated(seed=0)"
    assert info["input"]["size"] == 224


def test_download_from_file_url(cli, tmp_path):
    source = tmp_path / "resnet18-0000.pth"
    torch.save({"w": torch.ones(3)}, source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    # The published hash prefix will not match this file: the download is refused and nothing is kept.
    result = cli("download", "resnet18", "--output", str(tmp_path / "w"), "--url", source.as_uri())
    if digest.startswith("f37072fd"):  # astronomically unlikely; keep the test honest
        return
    assert_one_line_error(result, "does not start with f37072fd")
    assert not (tmp_path / "w" / source.name).exists()
