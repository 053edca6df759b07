"""The repository's image entry point against a real Triton server (nvidia-pytriton's tritonserver 2.51 with the
python backend), started on free loopback ports, bounded in time and always stopped.

What a live server checks here: every model loads or is refused only for a backend this Triton lacks; a broken
model is refused (so the check can fail); the served preprocessing equals the package's on every image kind the
tool reads; undecodable bytes fail only their request; concurrent clients get no errors; the ensemble routes
images to the classifier and returns labelled top-k; `serve` stops on SIGINT and leaves no process behind.

This Triton has no onnxruntime backend, so the ensemble test replaces ``<arch>_onnx`` with a python-backend
stand-in (a fixed linear classifier on the input's channel means): it checks the ensemble's wiring and the
classification extension, not ONNX Runtime.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from resnest_deploy.calibration.images import settings_dict
from resnest_deploy.calibration.pixels import preprocess_bytes
from resnest_deploy.deploy.triton import repository_entries, write_repository
from resnest_deploy.deploy.triton_image import source_files, write_image_models
from resnest_deploy.models import InputConfig
from resnest_deploy.serving import serve as serving
from resnest_deploy.serving.server import find_tritonserver
from tests import hostile
from tests.conftest import run_cli, run_cli_here

pytestmark = [pytest.mark.xdist_group("triton"),
              pytest.mark.skipif(find_tritonserver() is None,
                                 reason="no tritonserver (make install puts nvidia-pytriton's in the venv)")]

# Two input settings other than any arch's defaults: the served model must use the repository's, not a default.
SETTINGS = {"wide": InputConfig(size=40, crop_pct=0.8, interpolation="bilinear", resize_mode="resize_then_crop",
                                mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)),
            "tiny": InputConfig(size=24, crop_pct=0.75, interpolation="bicubic", resize_mode="crop_then_resize")}
CLASSES = ["cat", "dog", "eel"]


def _graph(path: Path, size: int) -> Path:
    weight = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                         ["batch", 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def write_run(root: Path) -> Path:
    """A run folder whose repository holds, per setting, the CPU model, the preprocessing model and the ensemble."""
    repository = root / "model_repository"
    root.mkdir(parents=True, exist_ok=True)
    for arch, cfg in SETTINGS.items():
        model = _graph(root / f"{arch}.onnx", cfg.size)
        entries = repository_entries(arch, model, [], labels=CLASSES)
        write_repository(repository, entries, model, labels=CLASSES)
        write_image_models(repository, arch, cfg, entries[0], CLASSES)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = write_run(tmp_path_factory.mktemp("served"))
    options = serving.ServeOptions(run, 0, 0, 0, timeout=120)
    serving.check_options(options)
    started = serving.start(options)
    try:
        yield started, serving.settle(started)
    finally:
        started.stop()


def _client(server):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")


def _preprocess(client, arch: str, data: bytes) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=object))
    return client.infer(f"{arch}_preprocess", [tensor]).as_numpy("input")[0]


def test_every_model_loads_or_lacks_only_a_backend_this_triton_has_not(server):
    _, states = server
    by_name = {s.name: s for s in states}
    assert set(by_name) == {f"{a}{suffix}" for a in SETTINGS for suffix in ("", "_onnx", "_preprocess")}
    assert all(by_name[f"{a}_preprocess"].ready for a in SETTINGS), states
    assert all(by_name[f"{a}_onnx"].missing_backend and by_name[a].missing_backend for a in SETTINGS), states
    assert not serving.failures(states)
    assert serving.explain(by_name["wide"]) == "needs wide_onnx (no onnxruntime backend here)"


def _image_files(tmp: Path) -> list[Path]:
    return hostile.write_readable(tmp / "kinds")


def test_served_preprocessing_equals_the_package_on_every_image_kind(server, tmp_path):
    client = _client(server[0])
    files = _image_files(tmp_path)
    worst = 0.0
    for arch, cfg in SETTINGS.items():
        for path in files:
            served = _preprocess(client, arch, path.read_bytes())
            local = preprocess_bytes(path.read_bytes(), settings_dict(cfg))
            assert served.shape == (3, cfg.size, cfg.size) and served.dtype == np.float32
            worst = max(worst, float(np.abs(served - local).max()))
    assert worst <= 1e-6, worst


@settings(max_examples=15, deadline=None, derandomize=True)
@given(width=st.integers(1, 300), height=st.integers(1, 300), fmt=st.sampled_from(["JPEG", "PNG", "WEBP", "BMP"]),
       mode=st.sampled_from(["RGB", "L", "RGBA", "P", "CMYK", "I;16"]), seed=st.integers(0, 2**16))
def test_served_preprocessing_equals_the_package_on_generated_images(server, width, height, fmt, mode, seed):
    if mode == "CMYK" and fmt not in ("JPEG",) or mode == "I;16" and fmt != "PNG" or mode == "RGBA" and fmt in (
            "JPEG", "BMP") or mode == "P" and fmt == "WEBP":
        mode = "RGB"
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    image = Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257) if mode == "I;16" else image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    data = buffer.getvalue()
    client = _client(server[0])
    for arch, cfg in SETTINGS.items():
        served = _preprocess(client, arch, data)
        assert float(np.abs(served - preprocess_bytes(data, settings_dict(cfg))).max()) <= 1e-6


def test_undecodable_bytes_fail_only_their_request(server, tmp_path):
    from tritonclient.utils import InferenceServerException

    client = _client(server[0])
    good = hostile.write_readable(tmp_path, ("rgb.png",))[0].read_bytes()
    bad_files = hostile.write_unreadable(tmp_path / "bad", tuple(n for n in hostile.UNREADABLE if n != "empty.png"))
    for path in [*bad_files, None]:
        data = path.read_bytes() if path else os.urandom(64)
        with pytest.raises(InferenceServerException, match="not a usable image"):
            _preprocess(client, "wide", data)
        assert _preprocess(client, "wide", good).shape == (3, 40, 40)  # the model keeps serving


def test_concurrent_clients_get_no_errors(server, tmp_path):
    path = hostile.write_readable(tmp_path, ("rgb.png",))[0]
    expected = preprocess_bytes(path.read_bytes(), settings_dict(SETTINGS["wide"]))
    errors: list[str] = []

    def client_loop():
        client = _client(server[0])
        for _ in range(20):
            try:
                served = _preprocess(client, "wide", path.read_bytes())
                if float(np.abs(served - expected).max()) > 1e-6:
                    errors.append("different tensor")
            except Exception as exc:  # noqa: BLE001 (any failure is what this test counts)
                errors.append(str(exc))

    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads), errors[:3]


def test_classify_compares_the_served_tensor_with_the_package(server, tmp_path):
    files = hostile.write_readable(tmp_path, ("rgb.png", "cmyk.jpg", "sixteen.png"))
    url = f"127.0.0.1:{server[0].grpc_port}"
    result = run_cli_here("classify", "--url", url, "--model", "tiny_preprocess", *map(str, files),
                          env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    table = re.sub(r"[\s│]+", " ", result.stdout)  # the table may wrap a cell over lines
    assert table.count("max |served - resnest-deploy| = 0") == 3, result.stdout
    # Without --model: no classifier is ready on this host (the CPU model needs the onnxruntime backend).
    refused = run_cli_here("classify", "--url", url, str(files[0]))
    assert refused.returncode == 2 and refused.stderr.count("error:") == 1, refused.stderr
    assert "no model on this server classifies an image" in refused.stderr
    nobody = run_cli_here("classify", "--url", "127.0.0.1:9", "--timeout", "2", str(files[0]))
    assert nobody.returncode == 2 and "no Triton server at 127.0.0.1:9" in nobody.stderr


STAND_IN = '''
import os, sys
sys.path.insert(0, os.environ["RESNEST_DEPLOY_TRITON_PACKAGES"])
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    """A stand-in for the CPU model (this Triton has no onnxruntime backend): logits = channel means x [1, 2, 3]."""

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "input").as_numpy()
            logits = x.mean(axis=(2, 3)) * np.array([1.0, 2.0, 3.0], np.float32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("logits", logits.astype(np.float32))]))
        return out
'''


def test_the_ensemble_routes_images_to_the_classifier_with_labels(tmp_path):
    run = write_run(tmp_path / "run")
    onnx_model = run / "model_repository" / "wide_onnx"
    config = (onnx_model / "config.pbtxt").read_text().replace('platform: "onnxruntime_onnx"', 'backend: "python"')
    (onnx_model / "config.pbtxt").write_text(config)
    (onnx_model / "1" / "model.onnx").unlink()
    (onnx_model / "1" / "model.py").write_text(STAND_IN)
    image = hostile.write_readable(tmp_path, ("rgb.png",))[0]
    options = serving.ServeOptions(run, 0, 0, 0, models=("wide", "wide_onnx", "wide_preprocess"), timeout=120)
    server = serving.start(options)
    try:
        states = serving.settle(server)
        assert all(s.ready for s in states if s.name in options.models), states
        result = run_cli_here("classify", "--url", f"127.0.0.1:{server.grpc_port}", "--top", "3", str(image),
                              env={"COLUMNS": "300"})
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert "via wide" in result.stdout
    x = preprocess_bytes(image.read_bytes(), settings_dict(SETTINGS["wide"])).mean(axis=(1, 2)) * [1, 2, 3]
    order = [CLASSES[i] for i in np.argsort(-x)]
    shown = [line for line in result.stdout.splitlines() if any(f" {c}" in line for c in CLASSES)]
    assert [next(c for c in CLASSES if f" {c}" in line) for line in shown] == order, result.stdout


def test_a_model_that_fails_for_another_reason_is_exit_1_with_the_servers_message(tmp_path):
    run = write_run(tmp_path / "run")
    copy = run / "model_repository" / "tiny_preprocess" / "1" / "pixels.py"
    copy.write_text(copy.read_text() + "\n# edited by hand\n")
    result = run_cli("serve", str(run), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--check",
                     timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tiny_preprocess" in errors[0] and "is not the preprocessing" in errors[0], errors
    assert "Traceback" not in result.stderr


def test_the_shipped_files_are_the_packages_own_and_need_only_numpy_and_pillow(tmp_path):
    import ast
    import hashlib

    run = write_run(tmp_path / "run")
    folder = run / "model_repository" / "wide_preprocess"
    for name, source in source_files().items():
        assert (folder / "1" / name).read_bytes() == source.read_bytes(), name
        tree = ast.parse(source.read_text())
        tops = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        tops |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert tops - set(sys.stdlib_module_names) <= {"numpy", "PIL", "triton_python_backend_utils", "pixels"}, tops
    recorded = hashlib.sha256(source_files()["pixels.py"].read_bytes()).hexdigest()
    assert f'key: "pixels_sha256" value: {{ string_value: "{recorded}" }}' in (folder / "config.pbtxt").read_text()


def _triton_processes(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if "tritonserver" in line or "triton_python_backend_stub" in line]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_serve_stops_on_a_signal_and_leaves_no_process(tmp_path, signum, code):
    run = write_run(tmp_path / "run")
    process = subprocess.Popen([sys.executable, "-m", "resnest_deploy", "serve", str(run), "--http-port", "0",
                                "--grpc-port", "0", "--metrics-port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if "serving; Ctrl-C stops" in line or not line:
                break
        assert "serving; Ctrl-C stops" in lines[-1], "".join(lines)
        assert _triton_processes(str(run))
        process.send_signal(signum)
        assert process.wait(timeout=60) == code
    finally:
        if process.poll() is None:
            process.kill()
    assert not _triton_processes(str(run))
