"""``summary.json``: what a deploy run did and whether its results can ship, for CI to gate on without reading
tables (schema: docs/deploy.md). The report page's verdict block is drawn from the same verdicts.

Verdicts: one for the CPU model the Triton repository serves (its parity with the margin of every judged metric,
and its latency against the FP32 ONNX a user would otherwise deploy), and one per target GPU (built or not, and
the exact command that builds and checks it when not).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import write_text_atomic
from ..metrics import UPPER
from .steps import StepResult
from .targets import Target
from .triton import plan_path

SCHEMA = "resnest-deploy/summary/1"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def parity_verdict(report: Path) -> dict[str, Any] | None:
    """A parity report as a verdict: passed, the preset, and each judged metric's value, limit and margin (how far
    inside its limit it is; negative when over)."""
    data = _read(report)
    if data is None:
        return None
    margins = {}
    for check in data.get("verdicts") or []:
        if not isinstance(check, dict) or not isinstance(check.get("value"), (int, float)):
            continue
        name, value, limit = check.get("name"), float(check["value"]), float(check.get("limit") or 0.0)
        margins[name] = {"value": value, "limit": limit, "margin": limit - value if name in UPPER else value - limit}
    return {"report": report.name, "passed": bool(data.get("passed")), "preset": data.get("preset"),
            "samples": (data.get("metrics") or {}).get("samples"), "margins": margins}


def speed_vs_fp32_onnx(bench: Path, artifact: str) -> dict[str, float]:
    """``{"batch 1": ratio, ...}``: the artifact's p50 over the FP32 ONNX's on ONNX Runtime, per batch size."""
    data = _read(bench) or {}
    return {f"batch {r['batch']}": r["ratio_vs_fp32_onnx"] for r in data.get("rows") or []
            if isinstance(r, dict) and r.get("artifact") == artifact and r.get("ratio_vs_fp32_onnx")}


def verdicts(run: Path, arch: str, cpu_kind: str, cpu_onnx: Path, targets: list[Target], local: set[str],
             report: callable) -> dict[str, Any]:
    """The CPU model's verdict and one per target (``report(*parts)`` names a report file of the run)."""
    cpu = {"model": str(cpu_onnx.relative_to(run)), "kind": cpu_kind,
           "parity": parity_verdict(report(cpu_kind, "parity")),
           "speed_vs_fp32_onnx": speed_vs_fp32_onnx(report("cpu", "bench"), cpu_onnx.name)}
    gpus = []
    for t in targets:
        plans = {p: plan_path(run / "model_repository", arch, p, t) for p in t.precisions}
        built = all(path.exists() for path in plans.values())
        entry: dict[str, Any] = {
            "name": t.name, "compute_capability": t.compute_capability, "tensorrt_major": t.tensorrt_major,
            "built": built, "plans": {p: str(path.relative_to(run)) for p, path in plans.items()},
            "built_here": t.name in local}
        if t.name in local:
            entry["parity"] = {p: parity_verdict(report(t.name, p, "parity")) for p in t.precisions}
        else:
            entry["command"] = f"bash {run / 'targets' / t.name / 'build.sh'}"
        gpus.append(entry)
    return {"cpu": cpu, "targets": gpus}


def write_summary(run: Path, *, command: tuple[str, ...], arch: str, steps: list[StepResult], exit_code: int,
                  reason: str, verdict: dict[str, Any] | None) -> Path:
    """Write ``<run>/summary.json`` atomically; returns its path."""
    body = {
        "schema": SCHEMA, "tool": {"name": "resnest-deploy", "version": __version__}, "command": list(command),
        "arch": arch, "run_dir": str(run), "exit_code": exit_code, "exit_reason": reason,
        "steps": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 2), "output": s.output,
                   "reason": s.reason, "warnings": list(s.warnings)} for s in steps],
        "verdicts": verdict,
        "paths": {"report_html": str(run / "report.html"), "report_md": str(run / "report.md"),
                  "repository": str(run / "model_repository"), "state": str(run / "deploy-state.json")},
    }
    return write_text_atomic(run / "summary.json", json.dumps(body, indent=2) + "\n")
