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

LIVE_SERVER_NOTE = ("Every config.pbtxt parses as Triton's ModelConfig and matches the ONNX graph and the targets; a "
                    "stock Triton server (2.51) started on repositories like this one loads every model whose "
                    "backend it has (docs/deploy.md says what was checked with a live server). The repository holds "
                    "only models with their files, so a server with default flags starts on it. "
                    "`resnest-deploy serve <run folder>` starts one and says which models are ready; "
                    "`resnest-deploy classify IMAGE...` sends it images.")


@dataclass(frozen=True)
class RunView:
    """What the report shows of a run beyond its parity and latency files.

    Attributes:
        arch: The architecture.
        targets: The run's target GPUs.
        local: Names of the targets this host is (their engines were built here).
        repository: The Triton model repository folder.
        entries: Its models, as the repository step wrote them.
        cpu_precision: What the repository serves on CPUs.
    """

    arch: str
    targets: list[Target]
    local: frozenset[str]
    repository: Path
    entries: list[ModelEntry]
    cpu_precision: Precision


def verdict_section(verdicts: dict) -> Section:
    """The report's opening block: can this ship? One row for the CPU model, one per target GPU."""
    rows = []
    cpu = verdicts["cpu"]
    parity = cpu.get("parity")
    speed = ", ".join(f"{b}: {r:.2f}x" for b, r in cpu.get("speed_vs_fp32_onnx", {}).items()) or "not timed"
    rows.append(["CPU (Triton, ONNX Runtime)", cpu["model"], _parity_cell(parity), speed,
                 "ready" if parity and parity["passed"] else "fix parity first"])
    pending = 0
    for t in verdicts["targets"]:
        gpu = f"GPU {t['name']} (sm {t['compute_capability'] or 'any'})"
        if t.get("built_here"):
            cells = [v for v in (t.get("parity") or {}).values() if v]
            ok = t["built"] and cells and all(v["passed"] for v in cells)
            rows.append([gpu, ", ".join(t["plans"].values()), "; ".join(_parity_cell(v) for v in cells) or "-",
                         "see latency", "ready" if ok else "fix the failed step first"])
        else:
            pending += 0 if t["built"] else 1
            rows.append([gpu, ", ".join(t["plans"].values()), "checked on the GPU host by build.sh", "-",
                         "built" if t["built"] else f"to build: {t['command']}"])
    notes = ["speed: p50 latency of the model over the FP32 ONNX on ONNX Runtime, interleaved on this machine "
             "(below 1.00x is faster)"]
    if pending:
        notes.append(f"{pending} target(s) still to build: run the command on a GPU host of that target; until "
                     "then the repository serves the CPU model only")
    return Section("Verdict", ["where", "model", "parity vs eager", "speed vs FP32 ONNX", "status"], rows,
                   notes=notes)


def _parity_cell(parity: dict | None) -> str:
    if not parity:
        return "not checked"
    margins = parity.get("margins") or {}
    # The metric closest to its limit, relative to the limit (metrics have different scales).
    tightest = min(margins.items(), key=lambda item: item[1]["margin"] / max(abs(item[1]["limit"]), 1e-12),
                   default=None)
    word = "PASS" if parity["passed"] else "FAIL"
    detail = f"; tightest {tightest[0]} {tightest[1]['value']:.4g} vs limit {tightest[1]['limit']:.4g}" \
        if tightest else ""
    return f"{word} ({parity.get('preset')}{detail})"


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
    """One row per model: who it serves, platform, batch limits and its files. A plan model is in the repository
    only once a plan of it is built (here, or by a bundle's build.sh): until then its row says so."""
    rows = []
    for entry in sorted(view.entries, key=lambda e: e.name):
        files = [("cpu", "model.onnx")] if not entry.gpu else sorted(entry.files.items())
        if entry.gpu and entry.default_file:
            files.append(("any GPU", entry.default_file))
        version = view.repository / entry.name / "1"
        shown = ", ".join(f"{cc}: {name}{'' if (version / name).exists() else ' (to build)'}" for cc, name in files)
        if not entry.gpu:
            serves = (f"CPU hosts: ONNX Runtime, "
                      f"{'INT8 made for its CPU kernels' if view.cpu_precision == Precision.int8 else 'FP32'}")
        elif entry.files:
            serves = "GPUs of " + ", ".join(f"sm {cc}" for cc in sorted(entry.files)) + ": TensorRT"
        else:
            serves = "any GPU host: TensorRT"
        if entry.gpu and not (view.repository / entry.name / "config.pbtxt").exists():
            serves += " (added by its bundle's build.sh with its first plan)"
        rows.append([entry.name, serves, entry.platform, str(entry.max_batch_size), str(entry.preferred_batch), shown])
    rows += _image_rows(view)
    return Section("Triton model repository", ["model", "serves", "platform", "max batch", "preferred batch", "files"],
                   rows, notes=[f"{view.repository}", LIVE_SERVER_NOTE])


def _image_rows(view: RunView) -> list[list[str]]:
    """The image entry point: the ensemble and its preprocessing model, when the repository has them."""
    from .triton_image import MODEL_FILES, ensemble_name, preprocess_model_name

    if not view.entries or not (view.repository / preprocess_model_name(view.arch) / "config.pbtxt").exists():
        return []
    cpu = view.entries[0]
    return [[ensemble_name(view.arch), f"encoded images -> {preprocess_model_name(view.arch)} -> {cpu.name} -> "
             "logits (top-k labels with Triton's classification extension)", "ensemble", str(cpu.max_batch_size),
             "", "(none: routes requests)"],
            [preprocess_model_name(view.arch), "decode + the input settings parity checked (Pillow, numpy)",
             "python", str(cpu.max_batch_size), "", ", ".join(MODEL_FILES)]]
