"""GPU verification (``pytest -m gpu`` on a host with an NVIDIA GPU and TensorRT 10.9+ or 11.x).

Builds FP32, FP16 and INT8 resnest50 engines from this tool's ONNX files with a 1:4:16 profile, runs each at the
profile's min, opt and max batch through the TensorRT runner, plainly and as CUDA graphs in the shape sequence
A, B, A with new inputs each time (the last output must equal a plain run on those inputs), checks the manifest's
per-layer precision summary, checks parity with the preset the engine's manifest implies (nothing set by hand),
and times GPU eager, torch.compile and TensorRT rows with ``bench``. Skipped, without touching TensorRT, where no
CUDA device exists.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():  # TensorRT segfaults without a GPU: never import it then
    pytest.skip("no CUDA device: the GPU suite runs on a GPU host (pytest -m gpu)", allow_module_level=True)
pytest.importorskip("tensorrt")

from resnest_deploy.bench.harness import run_bench  # noqa: E402
from resnest_deploy.bench.options import BenchOptions  # noqa: E402
from resnest_deploy.calibration.quantize import QuantizeOptions, quantize_onnx  # noqa: E402
from resnest_deploy.exporters.onnx_export import ExportOptions, export_onnx  # noqa: E402
from resnest_deploy.exporters.tensorrt_builder import build_engine  # noqa: E402
from resnest_deploy.exporters.tensorrt_options import BuildOptions  # noqa: E402
from resnest_deploy.models import create_model  # noqa: E402
from resnest_deploy.models.synthetic import synthetic_images  # noqa: E402
from resnest_deploy.parity import ParityOptions, run_parity  # noqa: E402
from resnest_deploy.runners.trt_runner import TrtRunner  # noqa: E402

PROFILE = (1, 4, 16)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    fp32 = export_onnx(ExportOptions(arch="resnest50", output=root / "resnest50.onnx")).path
    fp16 = quantize_onnx(QuantizeOptions(model=fp32, precision="fp16")).path
    int8 = quantize_onnx(QuantizeOptions(model=fp32, precision="int8", calib_data="synthetic",
                                         calib_size=64)).path
    return {"fp32": fp32, "fp16": fp16, "int8": int8}


@pytest.fixture(scope="module")
def engines(artifacts, tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    return {p: build_engine(BuildOptions(model=path, batch=":".join(map(str, PROFILE)),
                                         timing_cache=root / "timing.cache", output=root / f"{p}.engine"))
            for p, path in artifacts.items()}


def _inputs(batch: int, seed: int) -> np.ndarray:
    return synthetic_images(batch, 224, torch.Generator().manual_seed(seed)).numpy()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_builds_with_a_layer_summary(engines, precision):
    record = engines[precision].record
    assert record.precision == precision and record.extra["engine_bytes"] > 0 and record.tf32 is False
    layers = record.extra["layers"]
    assert layers["count"] > 0 and sum(layers["by_output_precision"].values()) == layers["count"], layers
    assert layers["by_output_precision"].get("unknown", 0) < layers["count"], layers
    if precision != "fp32":
        assert layers["by_output_precision"].get("INT8" if precision == "int8" else "FP16", 0) > 0, layers


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_profile_batch_plain_and_as_cuda_graphs_in_an_a_b_a_sequence(engines, precision):
    path = engines[precision].path
    sequence = [(PROFILE[1], 1), (PROFILE[2], 2), (PROFILE[1], 3), (PROFILE[0], 4), (PROFILE[1], 5)]
    with TrtRunner(path) as plain, TrtRunner(path, cuda_graph=True) as graphs:
        for batch, seed in sequence:  # A, B, A (new inputs), min, A again
            x = _inputs(batch, seed)
            expected = plain.infer({"input": x})["logits"]
            assert expected.shape == (batch, 1000) and np.isfinite(expected).all()
            np.testing.assert_allclose(graphs.infer({"input": x})["logits"], expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_parity_uses_the_preset_the_manifest_implies(engines, precision):
    parity = run_parity(ParityOptions(artifact=engines[precision].path, samples=64, batch=PROFILE[1],
                                      model=create_model("resnest50")))
    expected = {"fp32": "fp32", "fp16": "fp16-random-init", "int8": "int8-random-init"}[precision]
    assert parity.judgement.preset == expected
    assert parity.passed, [v for v in parity.verdicts if not v.passed]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_plan_loads_into_the_runtime_version_its_manifest_records(engines, precision):
    """What Triton's TensorRT backend does with the plan: deserialize it in the version the manifest names (the
    bundle pins that version to the target's Triton release)."""
    import tensorrt as trt

    record = engines[precision].record
    assert record.tensorrt == trt.__version__
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(engines[precision].path.read_bytes())
    assert engine is not None and engine.num_io_tensors == 2


def test_int8_engine_runs_its_float_parts_in_fp16(engines):
    """The INT8 ONNX types everything outside its Q/DQ FP16 by default; FP32 is left only at the input/output
    casts, so the engine's FP16 layers far outnumber its FP32 ones."""
    layers = engines["int8"].record.extra["layers"]["by_output_precision"]
    assert layers.get("FP16", 0) > 2 * layers.get("FP32", 0), layers


def test_bench_times_gpu_eager_compile_and_tensorrt(engines):
    result = run_bench(BenchOptions(artifacts=(engines["fp16"].path,), backends=("eager", "compile", "trt"),
                                    batches=(1, 4), warmup=5, iters=10))
    names = {r.name for r in result.rows}
    assert {"eager[cuda,fp32]", "eager[cuda,fp16]", "eager[cuda,fp16,channels-last]",
            "compile[cuda,fp16,channels-last,reduce-overhead]"} <= names
    timings = {r.timing for r in result.rows if r.backend == "trt"}
    assert timings == {"engine only (device-resident)", "end to end"}
    assert all(r.reference == "eager[cuda,fp32]" and r.stats.p50 > 0 for r in result.rows)
    assert result.environment["gpu"]
