"""INT8 for ONNX Runtime's CPU provider: latency against FP32, interleaved, for the CPU graph and the alternatives it
was chosen from, on resnest50, resnet50 and one of each other family (ResNeXt, SE, SK, ResNeSt with cardinality
instead of radix); and the whole-process time of `quantize --runtime cpu`. About 10 minutes on 2 cores.

Run:  .venv/bin/python benchmarks/cpu_int8.py [--archs resnest50,resnet50,...] [--threads 2]

For each architecture (random init, BatchNorm re-estimated; latency does not depend on the weights' values once
BatchNorm keeps activations out of denormals):
1. export, then `resnest-deploy quantize --precision int8 --runtime cpu` with 64 PNG images (fresh interpreter,
   calibration cache off): whole-process time (limit 3 minutes);
2. the alternatives, made with ONNX Runtime's `quantize_static` on the same images: U8S8 QDQ as it comes (the
   issue's anchor), S8S8, U8S8 without this tool's float rewrites, U8S8 with the rewrites except the radix cut
   (split-attention's grouped convolutions kept), U8S8 per-tensor weights, and the TensorRT INT8 graph;
3. every graph timed against FP32 in one interleaved run at batch 1 and 8 (same thread count), medians, ratios;
   agreement with FP32 on the calibration images.

Rewrites its section of docs/benchmarks.md (docs/quantization.md links to it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from doc_sections import write_section  # noqa: E402
from quantize_int8 import write_images  # noqa: E402

DOCS = (ROOT / "docs" / "benchmarks.md",)
ARCHS = ("resnest50", "resnet50", "resnext50_32x4d", "seresnet50", "skresnet34", "resnest50_fast_1s4x24d")


def cli(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "resnest_deploy", *args], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def alternatives(fp32: Path, images: np.ndarray, folder: Path) -> dict[str, Path]:
    """ONNX Runtime's quantize_static variants the CPU graph was chosen from."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from resnest_deploy.calibration.cpu_int8 import _quiet, cpu_rewrite

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": images[i:i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.items, None)

    rewritten, pre, plain_pre = folder / "rw.onnx", folder / "rw_pre.onnx", folder / "pre.onnx"
    grouped, grouped_pre = folder / "rw_grouped.onnx", folder / "rw_grouped_pre.onnx"
    onnx.save(cpu_rewrite(onnx.load(str(fp32))), str(rewritten))
    onnx.save(cpu_rewrite(onnx.load(str(fp32)), radix_parts=False), str(grouped))
    with _quiet():
        quant_pre_process(str(rewritten), str(pre))
        quant_pre_process(str(grouped), str(grouped_pre))
        quant_pre_process(str(fp32), str(plain_pre))
    base = dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                per_channel=True, calibrate_method=CalibrationMethod.MinMax)
    variants = {"U8S8 QDQ, as it comes (anchor)": (fp32, {}),
                "U8S8, pre-processed, no float rewrites": (plain_pre, {}),
                "U8S8, rewrites but radix parts left in grouped convs": (grouped_pre, {}),
                "S8S8, with rewrites": (pre, {"activation_type": QuantType.QInt8}),
                "U8S8 per-tensor weights, with rewrites": (pre, {"per_channel": False})}
    out = {}
    for i, (name, (source, changes)) in enumerate(variants.items()):
        path = folder / f"variant{i}.onnx"
        with _quiet():
            quantize_static(str(source), str(path), Reader(), **{**base, **changes})
        out[name] = path
    return out


def timed(paths: dict[str, Path], images: np.ndarray, threads: int) -> list[tuple[str, float, float, float]]:
    """(name, ratio at batch 1, ratio at batch 8, min cosine vs FP32), interleaved against the first (FP32)."""
    from resnest_deploy.metrics import compare_logits
    from resnest_deploy.ort_session import ort_session

    # Spinning off: an idle session's spinning pool takes a core from the one timed next (ort_session's docstring).
    sessions = {name: ort_session(path, threads=threads, spinning=False) for name, path in paths.items()}
    reference = sessions["FP32"].run(None, {"input": images[:16]})[0]
    rows = {name: [] for name in paths}
    for name, session in sessions.items():
        rows[name].append(compare_logits(reference, session.run(None, {"input": images[:16]})[0]).cosine_min)
    ratios = {}
    for batch, rounds in ((1, 60), (8, 16)):
        x = images[:batch]
        samples = {name: [] for name in paths}
        for session in sessions.values():
            session.run(None, {"input": x})
        for _ in range(rounds):
            for name, session in sessions.items():
                start = time.perf_counter()
                session.run(None, {"input": x})
                samples[name].append(time.perf_counter() - start)
        base = statistics.median(samples["FP32"])
        ratios[batch] = {name: statistics.median(s) / base for name, s in samples.items()}
        ratios[f"ms{batch}"] = base * 1000
    return [(name, ratios[1][name], ratios[8][name], rows[name][0]) for name in paths], ratios["ms1"], ratios["ms8"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    import torch

    torch.set_num_threads(options.threads)
    lines = [f"Measured {time.strftime('%Y-%m-%d')} with `.venv/bin/python benchmarks/cpu_int8.py`, "
             f"{options.threads} threads, ONNX Runtime CPU provider; random init with BatchNorm re-estimated; 64 PNG "
             "calibration images (256-400 px). Latency ratios are medians of one interleaved run against FP32 "
             "(batch 1: 60 rounds, batch 8: 16); cosine: the smallest per-image cosine with FP32's logits on 16 "
             "calibration images.", ""]
    for arch in options.archs.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_images(folder / "images", 64)
            fp32 = folder / f"{arch}.onnx"
            cli("export", "--arch", arch, "--output", str(fp32))
            seconds = cli("quantize", str(fp32), "--precision", "int8", "--runtime", "cpu", "--calib-data",
                          str(folder / "images"), "--calib-size", "64", "--no-cache")
            cli("quantize", str(fp32), "--precision", "int8", "--calib-data", str(folder / "images"),
                "--calib-size", "64", "--no-cache")
            from resnest_deploy.calibration.dataset import load_calibration
            from resnest_deploy.exporters.metadata import read_metadata

            meta = read_metadata(onnx.load(str(fp32), load_external_data=False))
            images = load_calibration(folder / "images", meta.input, count=64, use_cache=False).array
            ours = "**this tool: --runtime cpu** (rewrites with radix parts apart, pre-processed, U8S8 QDQ, per-channel)"
            paths = {"FP32": fp32, ours: folder / f"{arch}.int8-cpu.onnx"}
            paths.update(alternatives(fp32, images, folder))
            paths["TensorRT INT8 graph (--runtime tensorrt)"] = folder / f"{arch}.int8.onnx"
            rows, ms1, ms8 = timed(paths, images, options.threads)
        lines += [f"**{arch}**: `quantize --precision int8 --runtime cpu`, whole process with 64 images: "
                  f"**{seconds:.1f} s** (limit 180 s). FP32: {ms1:.1f} ms at batch 1, {ms8:.1f} ms at batch 8.", "",
                  "| graph | latency vs FP32, batch 1 | batch 8 | min cosine vs FP32 |",
                  "| --- | ---: | ---: | ---: |"]
        lines += [f"| {name} | {r1:.2f}x | {r8:.2f}x | {cos:.5f} |" for name, r1, r8, cos in rows]
        lines.append("")
    section = "\n".join(lines).rstrip()
    for doc in DOCS:
        write_section(doc, "cpu_int8", section, "INT8 for ONNX Runtime's CPU provider (benchmarks/cpu_int8.py)")
    print(section)


if __name__ == "__main__":
    main()
