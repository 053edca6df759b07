"""Requests per second of the served preprocessing model (``<arch>_preprocess``, Triton's python backend) at 1, 4
and 8 concurrent gRPC clients on loopback, for each instance count and dynamic-batching setting tried; the
repository's setting is the one these numbers chose (resnest_deploy/deploy/triton_image.py).

Run:  .venv/bin/python benchmarks/serve_preprocess.py [--seconds 3] [--rounds 2]

Each client sends one 500x375 JPEG per request (an ImageNet-sized photo) to a model with resnest50's input
settings (224 px). Settings are interleaved round by round (each round restarts the server for each setting) and
reported as the median over rounds, with the ratio to the repository's setting. Rewrites its section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from doc_sections import write_section  # noqa: E402

from resnest_deploy.deploy import triton_image  # noqa: E402
from resnest_deploy.deploy.triton import io_configs, ModelEntry  # noqa: E402
from resnest_deploy.models import get_config  # noqa: E402
from resnest_deploy.serving import serve as serving  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
CLIENTS = (1, 4, 8)
# (instances, max queue delay in microseconds; None: no dynamic batching)
SETTINGS = [(1, None), (2, None), (1, 500), (2, 500), (2, 2000)]


def _photo() -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _repository(root: Path, instances: int, delay: int | None) -> Path:
    from onnx import TensorProto, helper

    cfg = get_config("resnest50").input
    graph = helper.make_graph([], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                      ["batch", 3, cfg.size, cfg.size])],
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])])
    inputs, outputs = io_configs(helper.make_model(graph))
    entry = ModelEntry("bench_onnx", "onnxruntime_onnx", 32, 8, inputs, outputs, False)
    repository = root / "model_repository"
    triton_image.write_image_models(repository, "bench", cfg, entry, None)
    config = repository / "bench_preprocess" / "config.pbtxt"
    text = config.read_text().replace(f"count: {triton_image.PREPROCESS_INSTANCES}", f"count: {instances}")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("dynamic_batching")) + "\n"
    if delay is not None:
        text += f"dynamic_batching {{ max_queue_delay_microseconds: {delay} }}\n"
    config.write_text(text)
    (repository / "bench").joinpath("config.pbtxt").unlink()  # the ensemble needs the CPU model: not measured here
    return root


def _rate(port: int, clients: int, seconds: float, photo: bytes) -> float:
    import tritonclient.grpc as grpcclient

    counts = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = grpcclient.InferInput("image", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[photo]], dtype=object))
        while time.monotonic() < stop:
            client.infer("bench_preprocess", [tensor])
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def measure(seconds: float, rounds: int) -> dict[tuple, dict[int, list[float]]]:
    photo = _photo()
    found: dict[tuple, dict[int, list[float]]] = {s: {c: [] for c in CLIENTS} for s in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            for setting in SETTINGS:
                run = _repository(Path(tmp) / f"r{round_}-{setting[0]}-{setting[1]}", *setting)
                server = serving.start(serving.ServeOptions(run, 0, 0, 0, models=("bench_preprocess",)))
                try:
                    _rate(server.grpc_port, 2, 0.5, photo)  # warm-up: the stubs' first imports
                    for clients in CLIENTS:
                        found[setting][clients].append(_rate(server.grpc_port, clients, seconds, photo))
                finally:
                    server.stop()
                print(setting, {c: round(v[-1], 1) for c, v in found[setting].items()}, flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    found = measure(args.seconds, args.rounds)
    chosen = (triton_image.PREPROCESS_INSTANCES, triton_image.PREPROCESS_QUEUE_DELAY_US)
    median = {s: {c: statistics.median(v) for c, v in per.items()} for s, per in found.items()}
    rows = ["| instances | dynamic batching | " + " | ".join(f"{c} client{'s' * (c > 1)} (req/s)" for c in CLIENTS)
            + " | vs repository's setting at 8 clients |", "|---|---|" + "---|" * len(CLIENTS) + "---|"]
    for setting in SETTINGS:
        instances, delay = setting
        cells = " | ".join(f"{median[setting][c]:.1f}" for c in CLIENTS)
        ratio = median[setting][8] / median[chosen][8]
        mark = " (repository)" if setting == chosen else ""
        rows.append(f"| {instances}{mark} | {'off' if delay is None else f'{delay} us queue delay'} | {cells} | "
                    f"{ratio:.2f}x |")
    cores = os.cpu_count()
    body = (f"One 500x375 JPEG per request to `<arch>_preprocess` with resnest50's settings (224 px), gRPC on "
            f"loopback, {args.seconds:g} s per point, median of {args.rounds} interleaved rounds, {cores} cores "
            f"(Triton 2.51's python backend, numpy 1.26 and Pillow in the stub).\n\n" + "\n".join(rows))
    write_section(DOC, "serve_preprocess", body,
                  "Served preprocessing: requests/s by instances and batching (benchmarks/serve_preprocess.py)")
    print(body)


if __name__ == "__main__":
    main()
