"""The deploy run's own report sections, built from the records that wrote its files: its targets and its Triton
model repository (:class:`~resnest_deploy.deploy.triton.ModelEntry`, the same entries the configs were
rendered from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..kinds import Precision
from ..reports.page import Section
from .targets import Target
from .triton import ModelEntry, plan_model_name

LIVE_SERVER_NOTE = ("Checked here: every config.pbtxt parses as Triton's ModelConfig and matches the ONNX graph "
                    "and the targets (names, types, dims, batch limits, plan files). Only a live Triton server "
                    "checks that its backends load these files (its ONNX Runtime and TensorRT versions), that "
                    "shapes agree at run time, and latency under concurrent load (perf_analyzer).")


@dataclass(frozen=True)
class RunView:
    """What the report shows of a run beyond its parity and latency files.

    Attributes:
        arch: The architecture.
        targets: The run's target GPUs.
        local: Names of the targets this host is (their engines were built here).
        repository: The Triton model repository folder.
        entries: Its models, as the repository step wrote them.
        cpu_model: What the repository serves on CPUs.
    """

    arch: str
    targets: list[Target]
    local: frozenset[str]
    repository: Path
    entries: list[ModelEntry]
    cpu_model: Precision


def target_sections(view: RunView) -> list[Section]:
    """One section per target: what it is, and whether this host built its engines or a bundle waits for its host."""
    sections = []
    for t in view.targets:
        gpu = f"compute capability {t.compute_capability}" if t.compute_capability else "any GPU"
        trt = f"TensorRT {t.tensorrt_major}.x" if t.tensorrt_major else "any TensorRT"
        if t.name in view.local:
            how = "built on this host; its parity and latency rows are in the tables above"
        else:
            how = (f"bundle targets/{t.name}/: copy it to a GPU host of this target and run `bash build.sh` "
                   "(it checks the host first, builds into the Triton repository, then checks parity)")
        rows = []
        for p in t.precisions:
            plan = f"{plan_model_name(view.arch, p)}/1/{t.plan_name()}"
            rows.append([p, t.batch, t.hardware_compat, f"{t.workspace_gib:g} GiB", plan,
                         "present" if (view.repository / plan).exists() else "to build"])
        sections.append(Section(f"Target {t.name} ({gpu}, {trt})",
                                ["precision", "profile", "hardware compat", "workspace", "plan file", "engine"], rows,
                                notes=[how]))
    return sections


def repository_section(view: RunView) -> Section:
    """One row per model: who it serves, platform, batch limits and its files (present or still to build)."""
    rows = []
    for entry in sorted(view.entries, key=lambda e: e.name):
        files = [("cpu", "model.onnx")] if not entry.gpu else sorted(entry.files.items())
        if entry.gpu and entry.default_file:
            files.append(("any GPU", entry.default_file))
        version = view.repository / entry.name / "1"
        shown = ", ".join(f"{cc}: {name}{'' if (version / name).exists() else ' (to build)'}" for cc, name in files)
        if not entry.gpu:
            serves = (f"CPU hosts: ONNX Runtime, "
                      f"{'INT8 made for its CPU kernels' if view.cpu_model == Precision.int8 else 'FP32'}")
        elif entry.files:
            serves = "GPUs of " + ", ".join(f"sm {cc}" for cc in sorted(entry.files)) + ": TensorRT"
        else:
            serves = "any GPU host: TensorRT"
        rows.append([entry.name, serves, entry.platform, str(entry.max_batch_size), str(entry.preferred_batch), shown])
    return Section("Triton model repository", ["model", "serves", "platform", "max batch", "preferred batch", "files"],
                   rows, notes=[f"{view.repository}", LIVE_SERVER_NOTE])
