"""The accuracy-budget search: its wall time on resnest50 at 224 px with 256 labelled images, and its outcome on the
small trained test model with a hurtful calibration set (held-out check, both targets).

Run:  .venv/bin/python benchmarks/accuracy_budget.py [--images 256] [--targets cpu,tensorrt] [--skip-resnest50]

1. resnest50 (random init, BatchNorm re-estimated) is exported once. A random-init network has no task, so its
   256 images (varied colour fields and shapes, 256-400 px PNG) are labelled with the FP32 graph's own top-1
   (class folders ``c0123`` and a ``--class-index`` file): FP32 scores 100% and every INT8 flip is a lost point,
   which forces the search to run to the end, the slow case. Calibration: eight of those images at 45%
   brightness with ``--method max``. Times `resnest-deploy quantize ... --max-accuracy-drop 1.0` in a fresh
   interpreter per target and reads the trials from the manifest.
2. The trained resnest14d of the tests (32 px, 10 classes): calibration on eight training images at 45%
   brightness (``--method max``); search on the even half of val/, check on the odd half with ONNX Runtime.

Rewrites the ``accuracy_budget`` sections of docs/quantization.md (accuracy) and docs/benchmarks.md (time, speed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np
from doc_sections import write_section
from PIL import Image
from quantize_int8 import write_images

DOC = ROOT / "docs" / "quantization.md"
BENCH_DOC = ROOT / "docs" / "benchmarks.md"


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "resnest_deploy", *args], cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, done


def dimmed(files: list[Path], folder: Path, factor: float = 0.45) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        pixels = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) * factor
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def budget_of(path: Path) -> dict:
    return json.loads(Path(str(path) + ".json").read_text())["extra"]["quantization"]["accuracy_budget"]


def resnest50(work: Path, images: int, targets: list[str]) -> list[str]:
    from resnest_deploy.calibration.images import find_images, iter_batches
    from resnest_deploy.exporters.metadata import read_metadata
    from resnest_deploy.ort_session import run_graph
    import onnx

    fp32 = work / "resnest50.onnx"
    seconds, done = cli("export", "--arch", "resnest50", "--output", str(fp32))
    assert done.returncode == 0, done.stderr
    raw = work / "raw"
    write_images(raw, images)
    meta = read_metadata(onnx.load(str(fp32)))
    found = find_images(raw)
    x = np.concatenate([b.array for b in iter_batches(found, meta.input, 32)])
    labels = run_graph(str(fp32), x).argmax(1)
    labelled = work / "labelled"
    for path, label in zip(found.files, labels):
        (labelled / f"c{label:04d}").mkdir(parents=True, exist_ok=True)
        (labelled / f"c{label:04d}" / path.name).symlink_to(path)
    index = work / "classes.json"
    index.write_text(json.dumps({f"c{i:04d}": i for i in range(meta.num_classes)}))
    calib = dimmed(list(found.files[:8]), work / "dim")
    lines = [f"resnest50 at 224 px, random init (BatchNorm re-estimated), {images} images labelled with FP32's own "
             f"top-1 ({len(set(labels.tolist()))} classes), calibration: 8 of them at 45% brightness, `--method "
             "max`, `--max-accuracy-drop 1.0`, 2 threads:", "",
             "| target | wall time | trials | FP32 | INT8 plain | INT8 chosen | blocks kept float | met | CPU speed vs "
             "FP32 |", "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
    for target in targets:
        out = work / f"resnest50.{target}.onnx"
        seconds, done = cli("quantize", str(fp32), "--precision", "int8", "--runtime", target, "--calib-data",
                            str(calib), "--method", "max", "--no-cache", "--accuracy-data", str(labelled),
                            "--class-index", str(index), "--max-accuracy-drop", "1.0", "--output", str(out))
        written = out if done.returncode == 0 else out.with_name(out.name.removesuffix(".onnx") + ".over-budget.onnx")
        b = budget_of(written)
        speed = (b.get("latency") or {}).get("speedup_vs_fp32")
        lines.append(f"| {target} | {seconds / 60:.1f} min | {b['trials_run']} | {b['fp32']['score']:.2f}% | "
                     f"{b['plain_int8']['score']:.2f}% | {b['int8']['score']:.2f}% | "
                     f"{', '.join(b['int8']['kept_float']) or 'none'} | {'yes' if b['met'] else 'no'} | "
                     f"{'' if speed is None else f'{speed:.2f}x'} |")
        print(lines[-1], flush=True)
    return lines


def trained(work: Path, targets: list[str]) -> list[str]:
    import onnx

    from resnest_deploy.calibration.accuracy import standard_error
    from resnest_deploy.calibration.images import find_images, iter_batches
    from resnest_deploy.exporters.metadata import read_metadata
    from resnest_deploy.ort_session import run_graph
    from tests.trained_model import get_trained_model

    model = get_trained_model()
    halves = {"search": work / "search", "heldout": work / "heldout"}
    for label in sorted(p.name for p in model.val_dir.iterdir()):
        files = sorted((model.val_dir / label).iterdir())
        for name, chosen in (("search", files[0::2]), ("heldout", files[1::2])):
            (halves[name] / label).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                (halves[name] / label / f.name).symlink_to(f)
    calib = dimmed(sorted(model.train_dir.glob("*/*.png"))[::150][:8], work / "dim14")
    meta = read_metadata(onnx.load(str(model.onnx)))
    found = find_images(halves["heldout"])
    batches = list(iter_batches(found, meta.input, 300))
    x = np.concatenate([b.array for b in batches])
    y = np.asarray([found.classes.index(label) for b in batches for label in b.labels])
    fp32 = run_graph(str(model.onnx), x)
    fp32_top1 = float(np.mean(fp32.argmax(1) == y)) * 100
    lines = ["The trained resnest14d of the tests (32 px, 10 classes), calibration: 8 training images at 45% "
             "brightness with `--method max`; search on the even half of val/ (300 images), check on the odd half "
             "(300 images) it never saw; budget 1.0 point:", "",
             "| target | search: FP32 / plain / chosen | kept float (points each loses alone, on the sensitivity sample) | "
             "held-out: FP32 / plain / chosen | held-out drop ± 1 s.e. | trials |",
             "| --- | --- | --- | --- | --- | ---: |"]
    speed = ["The same runs of the trained resnest14d (32 px), CPU target: latency of the chosen graph against FP32 "
             "and plain INT8 (interleaved rounds, batch 8, ONNX Runtime), and what each kept block costs:", "",
             "| target | search time | chosen vs FP32 | plain INT8 vs FP32 | kept block costs (ms per batch of 8) |",
             "| --- | ---: | ---: | ---: | --- |"]
    for target in targets:
        out, plain = work / f"r14.{target}.onnx", work / f"r14.{target}.plain.onnx"
        common = ["--precision", "int8", "--runtime", target, "--calib-data", str(calib), "--method", "max",
                  "--no-cache"]
        _, done = cli("quantize", str(model.onnx), *common, "--output", str(plain))
        assert done.returncode == 0, done.stderr
        seconds, done = cli("quantize", str(model.onnx), *common, "--accuracy-data", str(halves["search"]),
                            "--max-accuracy-drop", "1.0", "--output", str(out))
        assert done.returncode == 0, done.stderr
        b = budget_of(out)
        chosen, plain_logits = run_graph(str(out), x), run_graph(str(plain), x)
        top1 = float(np.mean(chosen.argmax(1) == y)) * 100
        plain_top1 = float(np.mean(plain_logits.argmax(1) == y)) * 100
        se = standard_error("accuracy", fp32, chosen, y)
        kept = ", ".join(f"{k['block']} ({k['points_lost_alone']:.2f})" for k in b["kept_float"]) or "none"
        lines.append(f"| {target} | {b['fp32']['score']:.2f} / {b['plain_int8']['score']:.2f} / "
                     f"{b['int8']['score']:.2f}% | {kept} | {fp32_top1:.2f} / {plain_top1:.2f} / {top1:.2f}% | "
                     f"{fp32_top1 - top1:.2f} ± {se:.2f} pt | {b['trials_run']} |")
        latency = b.get("latency") or {}
        costs = ", ".join(f"{k['block']} {k['latency_cost_ms']:+.3f} ms" for k in b["kept_float"]
                          if k.get("latency_cost_ms") is not None) or "none"
        speed.append(f"| {target} | {seconds:.0f} s | "
                     + (f"{latency['speedup_vs_fp32']:.2f}x | {latency['plain_speedup_vs_fp32']:.2f}x | {costs} |"
                        if latency else "n/a | n/a | n/a (TensorRT target: scored on ONNX Runtime, not timed) |"))
        print(lines[-1], speed[-1], sep="\n", flush=True)
    return lines, speed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--targets", default="cpu,tensorrt")
    parser.add_argument("--skip-resnest50", action="store_true")
    options = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    targets = options.targets.split(",")
    with tempfile.TemporaryDirectory(prefix="resnest-deploy-budget-") as tmp:
        lines, speed = trained(Path(tmp), targets)
        if not options.skip_resnest50:
            speed += ["", *resnest50(Path(tmp), options.images, targets)]
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
    stamp = f"Measured by `benchmarks/accuracy_budget.py` on {os.cpu_count()} cores ({cpu}), {time.strftime('%Y-%m-%d')}."
    lines += ["", "Speed and search time of these runs: [benchmarks.md](benchmarks.md#accuracy-budget-search-benchmarksaccuracy_budgetpy).",
              "", stamp]
    write_section(DOC, "accuracy_budget", "\n".join(lines), "Accuracy budget: measured")
    write_section(BENCH_DOC, "accuracy_budget", "\n".join([*speed, "", stamp]),
                  "Accuracy-budget search (benchmarks/accuracy_budget.py)")
    print("\n".join(lines + speed))


if __name__ == "__main__":
    main()
