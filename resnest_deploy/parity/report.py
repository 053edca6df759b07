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
