"""Parity reports: JSON for machines (schema in docs/parity.md) and Markdown for people."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_texts_atomic
from ..paths import report_pair
from .engine import ParityResult


def default_report_path(artifact: str | Path) -> Path:
    """``<artifact>.parity.json`` beside the artifact."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".parity.json")


def render_markdown(result: ParityResult) -> str:
    """A readable summary: verdicts, metrics, accuracy, flips, skipped files and localisation."""
    verdict = "PASS" if result.passed else "FAIL"
    lines = [
        f"# Parity: {Path(result.artifact).name} — {verdict}", "",
        f"- architecture: `{result.arch}`, precision: {result.precision}, runner: {result.runner}",
        f"- weights: {result.weights}",
        f"- inputs: {result.inputs}",
        f"- judged as: {result.judgement.preset} ({result.judgement.reason})" if result.judgement else "", "",
        "| metric | value | limit | verdict |", "| --- | ---: | ---: | --- |",
    ]
    judged = {v.name: v for v in result.verdicts}
    for name, value in result.metrics.to_dict().items():
        v = judged.get(name)
        limit = "" if v is None else f"{v.limit:.6g}"
        mark = "" if v is None else ("pass" if v.passed else "**FAIL**")
        lines.append(f"| {name} | {value:.6g} | {limit} | {mark} |")
    if result.accuracy:
        acc = result.accuracy
        lines += ["", f"## Accuracy ({acc['samples']} labelled images, {acc['mapping']})", "",
                  "| | top-1 | top-5 |", "| --- | ---: | ---: |",
                  f"| eager | {acc['eager_top1']:.2%} | {acc['eager_top5']:.2%} |",
                  f"| artifact | {acc['artifact_top1']:.2%} | {acc['artifact_top5']:.2%} |",
                  f"| change | {acc['top1_change'] * 100:+.2f} pt | {acc['top5_change'] * 100:+.2f} pt |"]
    if result.budget:
        lines += ["", *budget_lines(result.budget)]
    lines += ["", f"## Class flips ({len(result.flips)})", ""]
    lines += [f"- `{f.sample}`: eager {f.eager} -> artifact {f.artifact}" for f in result.flips[:50]] or ["none"]
    if len(result.flips) > 50:
        lines.append(f"- … {len(result.flips) - 50} more in the JSON report")
    if result.skipped:
        lines += ["", f"## Skipped files ({len(result.skipped)})", ""]
        lines += [f"- `{p}`: {r}" for p, r in result.skipped]
    if result.localization:
        loc = result.localization
        lines += ["", "## Localisation", "", f"First stage over tolerance: **{loc.first_bad or 'none'}**; largest "
                  f"jump in error at **{loc.largest_jump}**.", "", "| stage | relative error (max abs) | verdict |",
                  "| --- | ---: | --- |"]
        lines += [f"| {s.name} | {s.detail} | {'pass' if s.passed else 'FAIL'} |" for s in loc.stages]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def report_paths(path: Path | None, artifact: str | Path) -> tuple[Path, Path]:
    """The JSON and Markdown report paths for ``--output PATH`` (see :func:`resnest_deploy.paths.report_pair`),
    checked writable before parity runs.

    Raises:
        OutputError: The report folder cannot be written.
    """
    return report_pair(path, default_report_path(artifact), (".json", ".md"))


def write_reports(result: ParityResult, paths: Path | tuple[Path, Path]) -> tuple[Path, Path]:
    """Write the JSON and the Markdown reports atomically: to ``paths`` (from :func:`report_paths`), or beside
    one path as :func:`report_paths` names them."""
    json_path, md_path = paths if isinstance(paths, tuple) else report_paths(paths, result.artifact)
    write_texts_atomic({json_path: json.dumps(result.to_dict(), indent=2) + "\n", md_path: render_markdown(result)})
    return json_path, md_path


def budget_lines(budget: dict) -> list[str]:
    """The artifact's accuracy budget (measured by ``quantize`` on its accuracy data) as Markdown."""
    if "error" in budget:
        return ["## Accuracy budget", "", str(budget["error"])]
    unit = "top-1" if budget["kind"] == "accuracy" else "agreement with FP32"
    se = budget.get("drop_standard_error")
    lines = [f"## Accuracy budget ({'met' if budget['met'] else '**not met**'}: {budget['goal']})", "",
             f"Measured by quantize on {budget['images']} images (sha256 {str(budget['data_sha256'])[:16]}…), "
             f"{budget['scored_on']}.", "",
             f"| graph | {unit} |", "| --- | ---: |",
             *([f"| FP32 | {budget['fp32']:.2f}% |"] if budget["kind"] == "accuracy" else []),
             f"| INT8, nothing float | {budget['plain_int8']:.2f}% |",
             f"| INT8, {len(budget['kept_float'])} block(s) float | {budget['int8']:.2f}%"
             + (f" (± {se:.2f} pt standard error of the drop)" if isinstance(se, (int, float)) else "") + " |"]
    if budget["kept_float"]:
        lines += ["", "| kept float | points it loses alone (sensitivity sample) | CPU latency it costs (ms per batch) |",
                  "| --- | ---: | ---: |"]
        for k in budget["kept_float"]:
            drop, cost = k.get("points_lost_alone"), k.get("latency_cost_ms")
            lines.append(f"| {k['block']} | {'' if drop is None else f'{drop:.2f}'} | "
                         f"{'' if cost is None else f'{cost:+.3f}'} |")
    if budget.get("speedup_vs_fp32"):
        lines += ["", f"CPU speed of the chosen graph: {budget['speedup_vs_fp32']:.2f}x FP32 (interleaved, ONNX "
                  "Runtime)."]
    return lines
