"""Where an ONNX graph's time goes on ONNX Runtime's CPU provider: kernel time per op type, and the slowest
convolutions with their arithmetic rate (the numbers behind docs/quantization.md's radix cut).

Run:  .venv/bin/python benchmarks/ort_profile.py MODEL.onnx [--batch 8] [--threads 2] [--runs 8] [--top 20]

ONNX Runtime's own profiler (``enable_profiling``), spinning off as in every timing of this project; the first
run is dropped as warm-up. A convolution's MACs come from the float graph's shapes (ONNX shape inference at the
given batch); ONNX Runtime names its fused integer convolution after the Conv it replaced, which is how the two
are matched. Prints a report and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict

import numpy as np
import onnx
from onnx import shape_inference


def kernel_times(path: str, batch: int, threads: int, runs: int) -> dict[tuple[str, str], float]:
    """(node name, op type) -> mean kernel microseconds per run, warm-up run dropped."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="ort-profile-"), "run")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal((batch, *meta.shape[1:])).astype(np.float32)
    for _ in range(runs + 1):
        session.run(None, {meta.name: x})
    with open(session.end_profiling()) as handle:
        events = json.load(handle)
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    times: dict[tuple[str, str], float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] > starts[1]:
            times[(event["name"].removesuffix("_kernel_time"), event["args"]["op_name"])] += event["dur"] / runs
    return times


def conv_macs(path: str, batch: int) -> dict[str, tuple[int, list[int], int, str]]:
    """Conv node name, and the names ONNX Runtime gives it once fused (its output's, or its Relu's output's, as
    float NCHWc kernels are named) -> (MACs, weight shape, groups, node name) at ``batch``."""
    model = onnx.load(path)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.output)}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    relu_after = {node.input[0]: node.output[0] for node in model.graph.node if node.op_type == "Relu"}
    out = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.output[0] not in shapes:
            continue
        name = node.input[1]
        while name not in weights and name in producers:  # through a DequantizeLinear
            name = producers[name].input[0]
        if name in weights:
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            entry = (int(np.prod(shapes[node.output[0]]) * np.prod(weights[name][1:])), weights[name], groups,
                     node.name)
            for alias in (node.name, node.output[0], relu_after.get(node.output[0])):
                if alias:
                    out[alias] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--top", type=int, default=20)
    options = parser.parse_args()
    times = kernel_times(options.model, options.batch, options.threads, options.runs)
    by_op: dict[str, list[float]] = defaultdict(list)
    for (_, op), us in times.items():
        by_op[op].append(us)
    print(f"{options.model}, batch {options.batch}, {options.threads} threads: "
          f"{sum(times.values()) / 1000:.1f} ms of kernels per run")
    for op, values in sorted(by_op.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {op:28s} {sum(values) / 1000:8.2f} ms  x{len(values)}")
    macs = conv_macs(options.model, options.batch)
    rows = []
    for (name, op), us in times.items():
        matches = [c for c in macs if name == c or name.startswith(f"{c}_")] if "Conv" in op else []
        conv = max(matches, key=len, default=None)  # node_conv2d_21_token_7 is node_conv2d_21's, not node_conv2d's
        if conv is not None:
            rows.append((us, *macs[conv]))
    print(f"slowest {options.top} convolutions ({len(rows)} matched to the graph's Conv nodes):")
    for us, count, shape, groups, conv in sorted(rows, reverse=True)[:options.top]:
        print(f"  {us:8.0f} us  {count / us / 1e3:6.0f} GMAC/s  groups={groups:<4d} weight={shape}  {conv}")


if __name__ == "__main__":
    main()
