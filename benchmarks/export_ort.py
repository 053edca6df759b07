"""Export time and ONNX Runtime CPU vs eager latency for resnest50, with timm's export as the baseline.

Run:  .venv/bin/python benchmarks/export_ort.py [--rounds-b1 30] [--rounds-b8 10] [--threads 2]

1. Whole-process export time of `resnest-deploy export --arch resnest50` (a fresh interpreter, as a user runs
   it), split by stage from the manifest.
2. Latency at batch 1 and 8 of: eager PyTorch (our resnest50), ONNX Runtime on our export, and ONNX Runtime on
   timm's resnest50d exported by plain `torch.onnx.export`. Every model has BatchNorm re-estimated (random
   init otherwise gives denormals and meaningless times); all use the same thread count; the three run
   interleaved round by round and are compared as ratios of medians.

Prints a table and rewrites its section of docs/benchmarks.md. Needs timm (a test dependency).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np
import onnxruntime as ort
import torch
from doc_sections import write_section

from resnest_deploy.bench import Contender, environment, measure_interleaved
from resnest_deploy.models import create_model, reestimate_batchnorm
from resnest_deploy.models.synthetic import synthetic_images

DOC = ROOT / "docs" / "benchmarks.md"


def export_whole_process(out_dir: Path) -> tuple[float, dict[str, float], int]:
    target = out_dir / "resnest50.onnx"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "resnest_deploy", "export", "--arch", "resnest50", "--output",
                    str(target)], cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    manifest = json.loads(target.with_name(target.name + ".json").read_text())
    return wall, manifest["timings_s"], manifest["graph"]["nodes"]


def timm_export(out_dir: Path) -> tuple[Path, float]:
    import timm

    model = timm.create_model("resnest50d", pretrained=False)
    reestimate_batchnorm(model, input_size=160, seed=0)
    path = out_dir / "timm_resnest50d.onnx"
    x = torch.randn(2, 3, 224, 224)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}})
    return path, time.perf_counter() - start


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds-b1", type=int, default=30)
    parser.add_argument("--rounds-b8", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        wall, stages, nodes = export_whole_process(out)
        timm_path, timm_export_s = timm_export(out)
        eager = create_model("resnest50")
        ours = session(out / "resnest50.onnx", args.threads)
        theirs = session(timm_path, args.threads)
        rows = []
        for batch, rounds in ((1, args.rounds_b1), (8, args.rounds_b8)):
            x = synthetic_images(batch, 224, torch.Generator().manual_seed(batch))
            feed = {"input": x.numpy()}

            def run_eager(x=x):
                with torch.inference_mode():
                    eager(x)

            stats = measure_interleaved(
                [Contender("eager PyTorch", run_eager, batch),
                 Contender("ORT, resnest-deploy export", lambda feed=feed: ours.run(None, feed), batch),
                 Contender("ORT, timm + torch.onnx.export", lambda feed=feed: theirs.run(None, feed), batch)],
                warmup=3, iters=rounds,
            )
            base = stats[0].p50
            for s in stats:
                rows.append((batch, s.name, s.p50, s.p90, s.p50 / base, len(s.samples_ms)))
            with torch.no_grad():
                reference = eager(x).numpy()
            err = float(np.abs(ours.run(None, feed)[0] - reference).max())
            rows.append((batch, "(max-abs ORT vs eager)", err, float("nan"), float("nan"), 0))
    env = environment(args.threads)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {env['cpu']}, {env['cores']} cores, {args.threads} threads; "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}. Weights: random-init+bn-reestimated(seed=0) "
        "for ours, BatchNorm re-estimated for timm's. Command: `.venv/bin/python benchmarks/export_ort.py`.",
        "",
        f"**Export, whole process** (`resnest-deploy export --arch resnest50`, fresh interpreter, model build, "
        f"BatchNorm re-estimation and verification included): **{wall:.1f} s**; graph {nodes} nodes.",
        "",
        "| stage | seconds |", "| --- | ---: |",
        *[f"| {k} | {v:.1f} |" for k, v in stages.items()],
        f"| (imports, CLI, manifest: the rest) | {wall - sum(stages.values()):.1f} |",
        "",
        f"timm resnest50d through plain `torch.onnx.export(dynamo=True)` alone: {timm_export_s:.1f} s.",
        "",
        "**Latency** (interleaved rounds, medians; ratio = p50 / eager p50 at the same batch):",
        "",
        "| batch | contender | p50 ms | p90 ms | ratio vs eager | rounds |", "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for batch, name, p50, p90, ratio, n in rows:
        if n == 0:
            lines.append(f"| {batch} | {name} | {p50:.2e} | | | |")
        else:
            lines.append(f"| {batch} | {name} | {p50:.1f} | {p90:.1f} | {ratio:.2f} | {n} |")
    section = "\n".join(lines)
    print(section)
    write_section(DOC, "export_ort", section, "ONNX export and ONNX Runtime CPU latency (resnest50)")


if __name__ == "__main__":
    main()
