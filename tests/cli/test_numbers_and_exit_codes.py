"""Numbers users give and the exit-code contract, each as a generated class of cases: every float is finite and
in range, every integer within what the code takes, every checkpoint finite, and exit 3 means a bug whatever the
environment says. Commands run in-process (``main``) where they fail before any work, so hundreds of cases stay
cheap."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resnest_deploy.errors import CheckpointError, ConfigError
from resnest_deploy.metrics import RANGES, Tolerances
from resnest_deploy.models.weights import read_checkpoint
from tests.conftest import assert_one_line_error, run_cli, run_cli_here

HOSTILE_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 1e308, -1e-9, 1.0000001, 2.0]


def _main(*argv: str) -> tuple[int, str]:
    result = run_cli_here(*argv, cwd=Path.cwd())
    return result.returncode, result.stderr


@pytest.mark.parametrize("metric", sorted(RANGES))
@pytest.mark.parametrize("value", HOSTILE_FLOATS)
def test_a_limit_outside_its_metrics_range_is_refused(metric, value):
    low, high = RANGES[metric]
    if math.isfinite(value) and low <= value <= high:
        assert getattr(Tolerances().with_overrides({metric: value}), metric) == value
        return
    with pytest.raises(ConfigError, match=metric):
        Tolerances().with_overrides({metric: value})


@pytest.mark.parametrize("text", ["cosine_min=nan", "max_abs_rel=inf", "kl_mean=-1", "top1_agreement=1.5",
                                  "top5_overlap=-inf", "cosine_mean=NaN"])
def test_tol_values_that_judge_nothing_stop_parity_before_it_runs(text, tmp_path):
    code, err = _main("parity", str(tmp_path / "missing.onnx"), "--tol", text)
    assert code == 2 and err.count("error:") == 1 and text.split("=")[0] in err, err


# Every command that takes a seed, with the smallest line that reaches its check (no model is built first).
SEEDED = [("export", "--arch", "resnet18"), ("quantize", "{m}", "--precision", "fp16"), ("parity", "{m}"),
          ("bench", "{m}"), ("deploy", "--arch", "resnet18", "--precisions", "fp32", "--dry-run", "--output", "{o}")]


@pytest.mark.parametrize("line", SEEDED, ids=[c[0] for c in SEEDED])
@pytest.mark.parametrize("seed", [2**31, 2**63, 2**64, 10**40])
def test_integers_beyond_what_the_code_takes_are_bad_input(line, seed, tmp_path, export_cache):
    model = export_cache("resnet18", 64).path
    argv = [a.format(m=model, o=tmp_path / "run") for a in line]
    code, err = _main(*argv, "--seed", str(seed))
    assert code == 2 and err.count("error:") == 1 and "--seed" in err and "internal" not in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option,value", [("--workspace", v) for v in ("nan", "inf", "-inf", "0", "-1", "1e9")]
                         + [("--opt-level", "6"), ("--profile", "1:8:99999"), ("--device", "99999")])
def test_build_numbers_are_checked_before_anything(option, value, tmp_path, export_cache):
    code, err = _main("build", str(export_cache("resnet18", 64).path), option, value, "--emit-script",
                      str(tmp_path / "b"))
    assert code == 2 and err.count("error:") == 1, err
    assert not (tmp_path / "b").exists()


@settings(max_examples=20, deadline=None)
@given(index=st.integers(0, 50), bad=st.sampled_from([math.nan, math.inf, -math.inf]), spread=st.booleans())
def test_a_checkpoint_with_non_finite_values_is_refused_naming_its_first_bad_tensor(tmp_path_factory, index, bad,
                                                                                     spread):
    import torchvision

    state = torchvision.models.resnet18(num_classes=10).state_dict()
    names = [n for n, t in state.items() if t.is_floating_point()]
    name = names[index % len(names)]
    state[name].view(-1)[:: (7 if spread else state[name].numel())] = bad
    path = tmp_path_factory.mktemp("ckpt") / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    first = next(n for n in state if state[n].is_floating_point() and not torch.isfinite(state[n]).all())
    assert f"tensor {first} " in str(caught.value) and "non-finite" in str(caught.value)


def test_a_non_finite_checkpoint_is_one_line_and_nothing_is_exported(tmp_path):
    import torchvision

    state = torchvision.models.resnet18().state_dict()
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = math.nan
    torch.save(state, tmp_path / "nan.pth")
    result = run_cli("export", "--arch", "resnet18", "--weights", str(tmp_path / "nan.pth"), "--img-size", "32",
                     "--output", str(tmp_path / "m.onnx"))
    assert_one_line_error(result, "layer2.0.conv1.weight", "non-finite")
    assert not list(tmp_path.glob("m.onnx*"))


@pytest.mark.parametrize("value,traceback", [(None, False), ("", False), ("0", False), ("false", False),
                                             ("no", False), ("off", False), ("1", True), ("true", True),
                                             ("YES", True), ("on", True)])
def test_exit_3_means_a_bug_whatever_the_debug_variable_says(monkeypatch, value, traceback):
    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("resnest_deploy.models.list_models", broken, raising=True)
    monkeypatch.setattr("resnest_deploy.models.matching_models", broken, raising=True)
    if value is None:
        monkeypatch.delenv("RESNEST_DEPLOY_DEBUG", raising=False)
    else:
        monkeypatch.setenv("RESNEST_DEPLOY_DEBUG", value)
    code, err = _main("models")
    assert code == 3 and "internal error: RuntimeError: a bug" in err
    assert ("Traceback" in err) is traceback
