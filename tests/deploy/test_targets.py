"""targets.toml: good files read, and every kind of mistake one line naming the file, the target and the key."""

from __future__ import annotations

import pytest

from resnest_deploy.deploy.targets import load_targets
from resnest_deploy.errors import ConfigError

GOOD = """
[targets.l4]
compute_capability = "8.9"
tensorrt_major = 10
precisions = ["fp16", "int8"]
batch = "1:16:64"

[targets.orin]
compute_capability = 8.7
hardware_compat = "none"
workspace_gib = 2

[targets.h100]
compute_capability = "9.0"
tensorrt_major = 11
hardware_compat = "ampere+"
"""


def _load(tmp_path, text):
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return load_targets(path, precisions=("fp32", "fp16"), batch="1:8:32")


def test_a_good_file(tmp_path):
    l4, orin, h100 = _load(tmp_path, GOOD)
    assert (l4.compute_capability, l4.tensorrt_major, l4.precisions, l4.profile) == ("8.9", 10, ("fp16", "int8"),
                                                                                    (1, 16, 64))
    assert orin.compute_capability == "8.7" and orin.precisions == ("fp32", "fp16") and orin.batch == "1:8:32"
    assert orin.workspace_gib == 2.0 and h100.hardware_compat == "ampere+"
    assert l4.plan_name() == "model.sm89.plan" and orin.plan_name() == "model.sm87.plan"


@pytest.mark.parametrize("text, key, fragment", [
    ('[targets.a]\ncompute_capability = "7.9"', "compute_capability", "7.9 is not a compute capability"),
    ('[targets.a]\ncompute_capability = "8.6"\ncolour = "red"', "colour", "unknown key"),
    ('[targets.a]\ncompute_capability = "7.0"\nprecisions = ["int8"]', "precisions", "no INT8 Tensor Cores"),
    ('[targets.a]\ncompute_capability = "7.5"\nhardware_compat = "ampere+"', "hardware_compat", "8.0 or newer"),
    ('[targets.a]\ncompute_capability = "8.6"\ntensorrt_major = 12', "tensorrt_major", "use 10 or 11"),
    ('[targets.a]\ncompute_capability = "8.7"\ntensorrt_major = 11', "tensorrt_major", "Jetson"),
    *[(f'[targets.a]\ncompute_capability = "{cc}"\ntensorrt_major = 11', "tensorrt_major", "no longer supports")
      for cc in ("7.0", "7.2")],
    ('[targets.a]\ncompute_capability = "8.6"\nprecisions = ["fp64"]', "precisions", "non-empty list"),
    ('[targets.a]\ncompute_capability = "8.6"\nbatch = "8:1:4"', "batch", "MIN:OPT:MAX"),
    *[(f'[targets.a]\ncompute_capability = "8.6"\nworkspace_gib = {bad}', "workspace_gib", "finite number")
      for bad in ("-1", "0", "nan", "inf", "-inf", "1e9", "true", '"4"')],
    ('[targets.a]\ntensorrt_major = 10', "compute_capability", "missing"),
    ('[targets."a b"]\ncompute_capability = "8.6"', "name", "names a folder"),
])
def test_each_mistake_names_file_target_and_key(tmp_path, text, key, fragment):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert "targets.toml" in message and f"key '{key}'" in message and fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("text, fragment", [
    ("[targets.a\ncompute_capability = 1", "not valid TOML"),
    ("", "no targets"),
    ('[gpus.a]\ncompute_capability = "8.6"', "unknown table or key 'gpus'"),
    ('[targets.a]\ncompute_capability = "8.6"\n[targets.b]\ncompute_capability = "8.6"', "share compute capability"),
])
def test_file_level_mistakes(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        _load(tmp_path, text)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_targets(tmp_path / "nope.toml", precisions=("fp32",), batch="1:1:1")
