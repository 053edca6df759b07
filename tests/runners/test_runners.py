"""The runner interface: input checks, provider reporting, artifact dispatch."""

from __future__ import annotations

import numpy as np
import pytest

from resnest_deploy.errors import ArtifactError, ConfigError
from resnest_deploy.models import create_model
from resnest_deploy.models.synthetic import synthetic_images
from resnest_deploy.runners import OrtRunner, TorchRunner, open_artifact_runner
from resnest_deploy.runners.base import InputMismatchError
from resnest_deploy.runners.ort_runner import resolve_providers


@pytest.mark.xdist_group("resnet18")
def test_torch_and_ort_runners_agree_and_check_inputs(export_cache):
    exported = export_cache("resnet18", 64)
    import torch

    x = synthetic_images(2, 64, torch.Generator().manual_seed(0)).numpy()
    with TorchRunner(create_model("resnet18"), size=64) as eager, OrtRunner(exported.path) as ort_runner:
        assert ort_runner.used_provider == "CPUExecutionProvider"
        assert ort_runner.name == "onnxruntime[CPUExecutionProvider]"
        a = eager.infer({"input": x})["logits"]
        b = ort_runner.infer({"input": x})["logits"]
        assert np.abs(a - b).max() <= 1e-4 * max(1, np.abs(a).max())
        for runner in (eager, ort_runner):
            with pytest.raises(InputMismatchError, match="expected"):
                runner.infer({"image": x})
            with pytest.raises(InputMismatchError, match="float64"):
                runner.infer({"input": x.astype(np.float64)})
            with pytest.raises(InputMismatchError, match="shape"):
                runner.infer({"input": x[:, :, :32, :32]})


def test_provider_resolution():
    available = ["CPUExecutionProvider"]
    assert resolve_providers("auto", available) == ["CPUExecutionProvider"]
    assert resolve_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="not in this onnxruntime build"):
        resolve_providers("cuda", available)
    with pytest.raises(ConfigError, match="unknown provider"):
        resolve_providers("gpu", available)


def test_artifact_dispatch(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 16)
    runner = open_artifact_runner(engine)
    assert type(runner).__name__ == "TrtRunner"
    with pytest.raises(ArtifactError, match="no manifest"), runner:  # checked before tensorrt is imported
        pass
    other = tmp_path / "model.bin"
    other.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="not an ONNX model or TensorRT engine"):
        open_artifact_runner(other)
    with pytest.raises(ArtifactError, match="no such"):
        open_artifact_runner(tmp_path / "missing.onnx")


@pytest.mark.parametrize("suffix", [".engine", ".plan", ".trt"])
def test_every_engine_suffix_opens_the_tensorrt_runner(tmp_path, suffix):
    from resnest_deploy.errors import ArtifactError
    from resnest_deploy.runners.factory import open_artifact_runner
    from resnest_deploy.runners.trt_runner import TrtRunner

    engine = tmp_path / f"m{suffix}"
    engine.write_bytes(b"engine bytes")
    assert isinstance(open_artifact_runner(engine), TrtRunner)
    other = tmp_path / "m.pt"
    other.write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"\.engine, \.plan, \.trt"):
        open_artifact_runner(other)


@pytest.mark.xdist_group("resnet18")
def test_timed_onnx_runtime_sessions_do_not_spin(export_cache):
    """bench opens its ONNX Runtime contenders with idle-thread spinning off (an idle spinning pool takes a core
    from the contender timed next); ordinary runs keep ONNX Runtime's default."""
    from resnest_deploy.runners.factory import open_artifact_runner

    artifact = export_cache("resnet18", 64).path
    key = "session.intra_op.allow_spinning"
    with open_artifact_runner(artifact, provider="cpu", spinning=False) as timed, \
            open_artifact_runner(artifact, provider="cpu") as plain:
        assert timed.session.get_session_options().get_session_config_entry(key) == "0"
        with pytest.raises(RuntimeError, match="does not have configuration"):  # ONNX Runtime's default kept
            plain.session.get_session_options().get_session_config_entry(key)
