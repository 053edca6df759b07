"""The image entry point end to end on a real exported model, against a real Triton: files in, logits out, compared
with eager PyTorch by `parity --triton` and read as top-k by `classify`.

This Triton (nvidia-pytriton's) has no onnxruntime backend, so ``<arch>_onnx`` is served here by a python-backend
stand-in that runs the same ``model.onnx`` with ONNX Runtime 1.20 inside the stub (installed once into a test
cache folder with numpy 1.26 and the pinned Pillow). It stands in for Triton's onnxruntime backend only; the
ensemble, the preprocessing model, the client and the comparison are the real ones.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from resnest_deploy.deploy.triton import repository_entries, write_repository
from resnest_deploy.deploy.triton_image import write_image_models
from resnest_deploy.exporters.graph import load_onnx
from resnest_deploy.exporters.metadata import read_metadata
from resnest_deploy.serving import python_env
from resnest_deploy.serving import serve as serving
from resnest_deploy.serving.server import find_tritonserver
from tests import hostile
from tests.conftest import run_cli_here

pytestmark = [pytest.mark.xdist_group("triton"),
              pytest.mark.skipif(find_tritonserver() is None,
                                 reason="no tritonserver (make install puts nvidia-pytriton's in the venv)")]

ARCH = "resnet18"
ORT_IN_STUB = "onnxruntime==1.20.1"  # the newest ONNX Runtime built against numpy 1.x
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "tests"

ORT_STAND_IN = '''
import os, sys
sys.path.insert(0, os.environ["RESNEST_DEPLOY_TRITON_PACKAGES"])
import json
import re
import shutil
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Stand-in for Triton's onnxruntime backend: model.onnx on ONNX Runtime's CPU provider."""

    def initialize(self, args):
        here = os.path.dirname(os.path.abspath(__file__))
        self.session = ort.InferenceSession(os.path.join(here, "model.onnx"), providers=["CPUExecutionProvider"])
        config = json.loads(args["model_config"])
        self.input, self.output = config["input"][0]["name"], config["output"][0]["name"]

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, self.input).as_numpy()
            y = self.session.run([self.output], {self.input: x})[0]
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output, y.astype(np.float32))]))
        return out
'''


@pytest.fixture(scope="module")
def stub_packages():
    folder = CACHE / f"triton-python-ort-{python_env.packages_dir().name}"
    return python_env.install(folder, [*python_env.pins(), ORT_IN_STUB])


def _run_folder(root: Path, onnx_path: Path, labels: list[str]) -> Path:
    meta = read_metadata(load_onnx(onnx_path, load_external_data=False))
    repository = root / "model_repository"
    entries = repository_entries(ARCH, onnx_path, [], labels=labels)
    write_repository(repository, entries, onnx_path, labels=labels)
    write_image_models(repository, ARCH, meta.input, entries[0], labels)
    served = repository / f"{ARCH}_onnx"
    config = (served / "config.pbtxt").read_text()
    (served / "config.pbtxt").write_text(config.replace('platform: "onnxruntime_onnx"', 'backend: "python"'))
    (served / "1" / "model.py").write_text(ORT_STAND_IN)
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory, export_cache, stub_packages):
    exported = export_cache(ARCH, 64)
    root = tmp_path_factory.mktemp("served-model")
    labels = [f"class{i}" for i in range(1000)]
    run = _run_folder(root / "run", exported.path, labels)
    data = root / "data"
    files = hostile.write_readable(data)
    for i in range(24):  # 37 images in all: more than the served max_batch_size (32) in one parity batch
        shutil.copy(files[i % len(files)], data / f"copy{i}{files[i % len(files)].suffix}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(python_env.ENV_VAR, str(stub_packages))
        server = serving.start(serving.ServeOptions(run, 0, 0, 0, timeout=120))
    try:
        states = serving.settle(server)
        assert all(s.ready for s in states), states
        yield exported, data, f"127.0.0.1:{server.grpc_port}"
    finally:
        server.stop()


def test_parity_through_the_served_ensemble_matches_eager(served, tmp_path):
    exported, data, url = served
    report = tmp_path / "served.json"
    # --batch 40 is over the served max_batch_size (32): the runner splits what it sends.
    result = run_cli_here("parity", str(exported.path), "--data", str(data), "--triton", url, "--output", str(report),
                          "--batch", "40")
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(report.read_text())
    assert record["runner"] == f"triton[{ARCH}@{url}]" and record["passed"], record
    assert record["inputs"].startswith(f"{len(hostile.READABLE) + 24} images from"), record["inputs"]


def test_classify_through_the_ensemble_gives_eagers_top_classes(served):
    import torch

    from resnest_deploy.calibration.images import open_rgb, preprocess
    from resnest_deploy.models import create_model

    exported, data, url = served
    image = data / "rgb.png"
    result = run_cli_here("classify", "--url", url, "--top", "3", str(image), env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    assert f"via {ARCH}" in result.stdout
    meta = read_metadata(load_onnx(exported.path, load_external_data=False))
    model = create_model(ARCH, seed=meta.seed).eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocess(open_rgb(image), meta.input))[None])[0].numpy()
    expected = [f"class{i}" for i in np.argsort(-logits)[:3]]
    shown = [w for line in result.stdout.splitlines() for w in line.split() if re.fullmatch(r"class\d+", w)]
    assert shown == expected, result.stdout


def test_parity_through_triton_fails_when_the_served_preprocessing_differs(served, tmp_path, export_cache):
    """The check can fail: the same repository with the served mean shifted by 0.1 (a client-side mistake moved
    into the server) is caught by parity."""
    exported, data, _ = served
    run = _run_folder(tmp_path / "run", exported.path, [f"class{i}" for i in range(1000)])
    config = run / "model_repository" / f"{ARCH}_preprocess" / "config.pbtxt"
    text = config.read_text()
    assert 'string_value: "0.485,0.456,0.406"' in text
    config.write_text(text.replace('string_value: "0.485,0.456,0.406"', 'string_value: "0.585,0.556,0.506"'))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(python_env.ENV_VAR, str(python_env.install(CACHE / f"triton-python-ort-"
                                                                          f"{python_env.packages_dir().name}")))
        server = serving.start(serving.ServeOptions(run, 0, 0, 0, timeout=120))
    try:
        result = run_cli_here("parity", str(exported.path), "--data", str(data), "--triton",
                              f"127.0.0.1:{server.grpc_port}", "--output", str(tmp_path / "r.json"))
    finally:
        server.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout
