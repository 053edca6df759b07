"""INT8 calibration for any number of images: every count 1-70 (real image files with corrupt ones mixed in) and
each of the three methods, on ONNX Runtime's real calibrators; ``max`` gives the same ranges whatever the split.

The graph is a small hand-built Conv/Relu/residual network, so that 210 calibrations take seconds; the path it
exercises (our batching into ONNX Runtime's calibrators) is the same for every model.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from resnest_deploy.calibration.dataset import load_calibration
from resnest_deploy.calibration.int8 import METHODS, calibrate, collect_ranges, uniform_calls
from resnest_deploy.models import get_config
from resnest_deploy.ort_session import ort_session

SIZE = 32
CFG = get_config("resnet18").input.at_size(SIZE)
TENSORS = ["input", "relu1", "add"]


def _graph(batch: int | str = "batch") -> onnx.ModelProto:
    """input -> Conv -> Relu (relu1) -> Conv -> Add(relu1) (add) -> Relu -> GlobalAveragePool -> Flatten."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("Conv", ["relu1", "w2"], ["conv2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["conv2", "relu1"], ["add"], name="add"),
        helper.make_node("Relu", ["add"], ["relu2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["logits"], name="flatten"),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [batch, 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4])], [w1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.fixture(scope="module")
def image_pool(tmp_path_factory):
    """70 real PNG/JPEG files of varied sizes and 10 corrupt ones (truncated, not images, empty)."""
    root = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(1)
    good = []
    for i in range(70):
        h, w = (int(v) for v in rng.integers(24, 80, 2))
        path = root / f"img_{i:02d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        good.append(path)
    bad = []
    for i in range(10):
        path = root / f"bad_{i}.{'png' if i % 2 else 'jpg'}"
        path.write_bytes(good[i].read_bytes()[: 40 + 7 * i] if i % 3 else b"not an image" * i)
        bad.append(path)
    return good, bad


def _run_outputs(model: onnx.ModelProto, data: np.ndarray) -> dict[str, np.ndarray]:
    """Every calibrated tensor's values over all images, computed directly with ONNX Runtime."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    for name in TENSORS[1:]:
        exposed.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    out = ort_session(exposed).run(TENSORS[1:], {"input": data})
    return {"input": data, **dict(zip(TENSORS[1:], out))}


@pytest.mark.parametrize("method", METHODS)
def test_image_counts_from_1_to_70_with_corrupt_files(image_pool, tmp_path, method):
    good, bad = image_pool
    model = _graph()
    # Entropy's range search costs ~0.3 s per tensor whatever the image count; one tensor keeps this test short
    # while every count still goes through the same collection path as the other methods.
    tensors = ["add"] if method == "entropy" else TENSORS
    # Entropy also skips most counts far from a batch or call boundary (8 images per batch, 32 per call), where
    # the collection path does not change: the boundaries and their neighbours are where split bugs live.
    counts = range(1, 71) if method != "entropy" else (*range(1, 10), 15, 16, 17, 31, 32, 33, 40, 63, 64, 65, 70)
    for count in counts:
        # A list file naming `count` good images and a few corrupt ones, which are skipped.
        corrupt = bad[: count % 4]
        listing = tmp_path / f"list_{count}.txt"
        listing.write_text("\n".join(str(p) for p in [*good[:count], *corrupt]) + "\n")
        data = load_calibration(listing, CFG, count=1000, use_cache=False)
        assert data.array.shape == (count, 3, SIZE, SIZE) and len(data.skipped) == len(corrupt)
        amax = calibrate(model, tensors, data.array, method=method)
        assert set(amax) == set(tensors), count
        truth = _run_outputs(model, data.array)
        for name in tensors:
            assert np.isfinite(amax[name]) and amax[name] > 0, (count, name)
            # No method may clip above the largest value it saw; max is exactly it.
            assert amax[name] <= np.abs(truth[name]).max() * (1 + 1e-5), (count, name, method)
            if method == "max":
                assert amax[name] == pytest.approx(float(np.abs(truth[name]).max()), rel=1e-6), (count, name)


def _amax(model, data, batch: int, per_call: int) -> dict[str, float]:
    ranges = collect_ranges(model, TENSORS, data, method="max", symmetric=True, batch=batch, per_call=per_call)
    return {n: float(np.abs(np.asarray(ranges[n].range_value)).max()) for n in TENSORS if n in ranges}


@settings(max_examples=25, deadline=None)
@given(count=st.integers(1, 40), batch_a=st.integers(1, 9), batch_b=st.integers(1, 9),
       per_call_a=st.integers(1, 40), per_call_b=st.integers(1, 40))
def test_max_gives_the_same_ranges_whatever_the_batch_split(count, batch_a, batch_b, per_call_a, per_call_b):
    """Any batch and any number of images per calibrator call (production uses 32; the property holds for all)."""
    data = np.random.default_rng(count).normal(0, 1, (count, 3, SIZE, SIZE)).astype(np.float32)
    model = _graph()
    a = _amax(model, data, batch_a, per_call_a)
    b = _amax(model, data, batch_b, per_call_b)
    assert a == pytest.approx(b, rel=1e-6)
    assert a["input"] == pytest.approx(float(np.abs(data).max()), rel=1e-6)
    assert calibrate(model, TENSORS, data, method="max", batch=batch_a) == pytest.approx(a, rel=1e-6)


def test_fixed_batch_graphs_pad_the_last_batch():
    data = np.random.default_rng(3).normal(0, 1, (7, 3, SIZE, SIZE)).astype(np.float32)
    fixed = calibrate(_graph(batch=4), TENSORS, data, method="percentile")
    dynamic = calibrate(_graph(), TENSORS, data, method="max")
    assert set(fixed) == set(TENSORS) and fixed["input"] <= dynamic["input"] * (1 + 1e-6)


@given(total=st.integers(1, 200), step=st.integers(1, 16))
def test_each_calibrator_call_holds_batches_of_one_shape(total, step):
    calls = uniform_calls(total, step)
    assert calls[0][0] == 0 and calls[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(calls, calls[1:]))
    for start, stop in calls:
        size = stop - start
        assert size % step == 0 or (size < step and stop == total)
