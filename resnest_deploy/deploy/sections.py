"""The deploy run's own report sections: its targets and its Triton model repository."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..reports.page import Section
from .targets import Target
from .triton import plan_model_name

LIVE_SERVER_NOTE = ("Checked here: every config.pbtxt parses as Triton's ModelConfig and matches the ONNX graph "
                    "and the targets (names, types, dims, batch limits, plan files). Only a live Triton server "
                    "checks that its backends load these files (its ONNX Runtime and TensorRT versions), that "
                    "shapes agree at run time, and latency under concurrent load (perf_analyzer).")


def target_sections(targets: list[Target], plan: Any) -> list[Section]:
    """One section per target: what it is, and whether this host built its engines or a bundle waits for its host."""
    sections = []
    for t in targets:
        gpu = f"compute capability {t.compute_capability}" if t.compute_capability else "any GPU"
        trt = f"TensorRT {t.tensorrt_major}.x" if t.tensorrt_major else "any TensorRT"
        if plan.is_local(t):
            how = "built on this host; its parity and latency rows are in the tables above"
        else:
            how = (f"bundle targets/{t.name}/: copy it to a GPU host of this target and run `bash build.sh` "
                   "(it checks the host first, builds into the Triton repository, then checks parity)")
        rows = [[p, t.batch, t.hardware_compat, f"{t.workspace_gib:g} GiB",
                 f"{plan_model_name(plan.o.arch, p)}/1/{t.plan_name()}",
                 "present" if (plan.repository / plan_model_name(plan.o.arch, p) / "1" / t.plan_name()).exists()
                 else "to build"] for p in t.precisions]
        sections.append(Section(f"Target {t.name} ({gpu}, {trt})",
                                ["precision", "profile", "hardware compat", "workspace", "plan file", "engine"], rows,
                                notes=[how]))
    return sections


def repository_section(root: Path, cpu_model: str = "fp32") -> Section:
    """One row per model folder: who it serves, platform, batch limits and its files (present or still to build)."""
    rows = []
    for config in sorted(root.glob("*/config.pbtxt")):
        text = config.read_text(encoding="utf-8")
        platform = _field(text, "platform")
        files = re.findall(r'key: "([\d.]+)" value: "([^"]+)"', text)
        default = _field(text, "default_model_filename")
        if platform == "onnxruntime_onnx":
            files = [("cpu", "model.onnx")]
        elif default:
            files.append(("any GPU", default))
        shown = ", ".join(f"{cc}: {name}{'' if (config.parent / '1' / name).exists() else ' (to build)'}"
                          for cc, name in files)
        serves = (f"CPU hosts: ONNX Runtime, {'INT8 made for its CPU kernels' if cpu_model == 'int8' else 'FP32'}"
                  if platform == "onnxruntime_onnx" else
                  "GPUs of " + ", ".join(f"sm {cc}" for cc, _ in files if cc[0].isdigit()) + ": TensorRT"
                  if any(cc[0].isdigit() for cc, _ in files) else "any GPU host: TensorRT")
        rows.append([config.parent.name, serves, platform, _field(text, "max_batch_size"),
                     _field(text, "preferred_batch_size"), shown])
    return Section("Triton model repository", ["model", "serves", "platform", "max batch", "preferred batch", "files"],
                   rows, notes=[f"{root}", LIVE_SERVER_NOTE])


def _field(text: str, name: str) -> str:
    match = re.search(rf"{name}: \[? ?\"?([^\"\]\n]+?)\"? ?\]?$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""
