"""Build ``report.html`` and ``report.md`` from the parity and bench JSON files of a run folder.

The report is first assembled as sections (title, table, optional plot), then rendered twice: to a
self-contained HTML page (inline CSS, plots as embedded PNG, so it can be mailed or attached to a ticket) and to
Markdown. Plots are drawn by matplotlib with the non-interactive Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnest_deploy.calibration.budget import budget_record

from .. import __version__
from ..atomic import write_texts_atomic
from ..paths import report_pair
from ..errors import ConfigError
from ..metrics import MAX_ABS_REL_FORMULA


@dataclass
class Section:
    """One part of the report: a heading, an optional table and plot, and notes under them."""

    title: str
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    plot: str | None = None  # base64 PNG
    plot_alt: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A whole run: what it is, its verdict, and its sections."""

    title: str
    meta: list[str]
    verdict: bool | None
    sections: list[Section]


_PARITY_KEYS = {"artifact": str, "precision": str, "runner": str, "passed": bool, "metrics": dict, "tolerances": dict}
_PARITY_METRICS = ("max_abs_rel", "cosine_min", "top1_agreement", "kl_mean", "samples")
_BENCH_KEYS = {"rows": list, "environment": dict}
_ROW_KEYS = ("name", "batch", "p50_ms", "p90_ms", "p99_ms", "throughput_ips")


def _complete(data: dict[str, Any], kind: str) -> bool:
    """Whether a report has every field the page reads (hand-edited or cut files are skipped, with a note)."""
    if kind == "parity":
        return (all(isinstance(data.get(k), t) for k, t in _PARITY_KEYS.items())
                and all(isinstance(data["metrics"].get(m), (int, float)) for m in _PARITY_METRICS))
    return (all(isinstance(data.get(k), t) for k, t in _BENCH_KEYS.items())
            and all(isinstance(r, dict) and all(k in r for k in _ROW_KEYS) for r in data["rows"]))


def _load(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Parity reports, bench reports and artifact manifests under ``run_dir``, and notes on skipped files."""
    parity, bench, exports, skipped = [], [], [], []
    for path in sorted(run_dir.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        schema = str(data.get("schema", ""))
        kind = "parity" if schema.startswith("resnest-deploy/parity/") else \
            "bench" if schema.startswith("resnest-deploy/bench/") else None
        if kind is not None and not _complete(data, kind):
            skipped.append(f"skipped {path.name}: not a complete {kind} report")
        elif kind == "parity":
            parity.append({**data, "_file": path.name})
        elif kind == "bench":
            bench.append({**data, "_file": path.name})
        elif "artifact" in data and isinstance(data.get("timings_s"), dict):
            exports.append({**data, "_file": path.name})
    return parity, bench, exports, skipped


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def latency_plot(bench: list[dict[str, Any]]) -> str | None:
    """p50 latency per image against batch size, one line per contender (legend below the axes)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for run in bench:
        for row in run["rows"]:
            series.setdefault(row["name"], []).append((row["batch"], row["p50_ms"] / row["batch"]))
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for name, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xscale("log", base=2)
    batches = sorted({p[0] for points in series.values() for p in points})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel("p50 latency per image (ms)")
    ax.set_title("Latency per image vs batch (lower is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    return _png(fig)


def parity_plot(parity: list[dict[str, Any]]) -> str | None:
    """Three panels of horizontal bars (one bar per artifact, names on the shared y axis, so long names never
    overlap): max_abs_rel, min cosine, top-1 agreement, each with its limit dashed."""
    if not parity:
        return None
    plt = _pyplot()
    labels = [f"{Path(p['artifact']).name} ({p['precision']})" for p in parity]
    panels = [("max_abs_rel", MAX_ABS_REL_FORMULA, True), ("cosine_min", "min cosine", False),
              ("top1_agreement", "top-1 agreement", False)]
    height = max(2.8, 1.2 + 0.38 * len(parity))
    fig, axes = plt.subplots(1, 3, figsize=(12, height), sharey=True)
    positions = list(range(len(parity)))
    for ax, (key, title, log) in zip(axes, panels):
        values = [p["metrics"][key] for p in parity]
        colors = ["#2e7d32" if p["passed"] else "#c62828" for p in parity]
        ax.barh(positions, [max(v, 1e-12) for v in values] if log else values, color=colors)
        for limit in {p["tolerances"].get(key) for p in parity} - {None}:
            ax.axvline(limit, color="#555", linestyle="--", linewidth=1)
        if log:
            ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    axes[0].set_yticks(positions, labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("Parity vs eager PyTorch (green pass, red fail; dashed: limit)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _parity_section(parity: list[dict[str, Any]]) -> Section:
    rows = []
    for p in parity:
        m = p["metrics"]
        rows.append([Path(p["artifact"]).name, p["precision"], str(p.get("preset") or p["precision"]), p["runner"],
                     f"{m['max_abs_rel']:.2e}", f"{m['cosine_min']:.6f}", f"{m['top1_agreement']:.2%}",
                     f"{m['kl_mean']:.2e}", str(m["samples"]), "pass" if p["passed"] else "FAIL"])
    notes = sorted({f"{p.get('preset')}: {p['judgement']}" for p in parity if p.get("judgement")})
    return Section("Parity vs eager PyTorch",
                   ["artifact", "precision", "judged as", "runner", "max_abs_rel", "cosine min", "top-1 agree",
                    "KL mean", "samples", "verdict"], rows, parity_plot(parity), "parity metrics per artifact", notes)


def _bench_section(bench: list[dict[str, Any]]) -> Section:
    rows = []
    references = set()
    for run in bench:
        for r in run["rows"]:
            ratio = f"{r['ratio_vs_eager']:.2f}x" if r.get("ratio_vs_eager") else ""
            onnx = f"{r['ratio_vs_fp32_onnx']:.2f}x" if r.get("ratio_vs_fp32_onnx") else ""
            references.add(str(r.get("reference") or "eager").split(" (")[0])
            rows.append([str(r["batch"]), r["name"], str(r.get("timing", "")), f"{r['p50_ms']:.2f}",
                         f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f} (of {r.get('iters', '?')})",
                         f"{r['throughput_ips']:.1f}", onnx, ratio])
    env = ", ".join(f"{k}: {v}" for k, v in bench[0]["environment"].items())
    notes = [n for run in bench for n in run.get("notes", [])] + [
        "p99 is the 99th percentile of the timed rounds counted beside it: with few rounds it is close to the "
        "slowest one", f"Environment: {env}"]
    return Section("Latency (interleaved rounds)",
                   ["batch", "contender", "timing", "p50 ms", "p90 ms", "p99 ms (rounds)", "images/s",
                    "vs FP32 ONNX", f"vs {' / '.join(sorted(references))}"], rows, latency_plot(bench),
                   "latency per image vs batch", notes)


def _budget_of(export: dict[str, Any]) -> dict[str, Any] | None:
    record = budget_record(export.get("extra"))
    ok = record is not None and all(isinstance(record.get(k), dict) for k in ("goal", "fp32", "int8")) \
        and isinstance(record.get("trials"), list)
    return record if ok else None


def budget_plot(name: str, budget: dict[str, Any]) -> str:
    """The accuracy-budget trade-off of one artifact: score against the number of float blocks over every trial
    (budget dashed, chosen mix starred); for the CPU target also latency per image against score."""
    plt = _pyplot()
    latency = budget.get("latency") or {}
    fig, axes = plt.subplots(1, 2 if latency.get("rows") else 1, figsize=(11 if latency.get("rows") else 6, 3.6),
                             squeeze=False)
    goal, chosen = budget["goal"], budget["int8"]
    floor = budget["fp32"]["score"] - goal["limit"] if goal["kind"] == "accuracy" else goal["limit"] * 100
    unit = "top-1 (%)" if goal["kind"] == "accuracy" else "top-1 agreement with FP32 (%)"
    ax = axes[0][0]
    for phase, color in (("plain", "#c62828"), ("sensitivity", "#9e9e9e"), ("keep", "#1565c0"),
                         ("give-back", "#6a1b9a")):
        points = [(len(t["kept_float"]), t["score"]) for t in budget["trials"]
                  if t.get("phase") == phase and not t.get("sample")]
        if points:
            ax.scatter(*zip(*points), s=18, color=color, label=phase, alpha=0.8)
    ax.scatter([len(chosen["kept_float"])], [chosen["score"]], marker="*", s=160, color="#2e7d32", label="chosen",
               zorder=3)
    ax.axhline(floor, color="#555", linestyle="--", linewidth=1, label="budget")
    ax.set_xlabel("blocks kept float")
    ax.set_xticks(range(0, max(len(t["kept_float"]) for t in budget["trials"]) + 1) if budget["trials"] else [0])
    ax.set_ylabel(unit)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("accuracy vs float blocks (every trial)", fontsize=9)
    if latency.get("rows"):
        ax = axes[0][1]
        batch = latency["batch"]
        for row in latency["rows"]:
            score = budget["fp32"]["score"] if row["score"] is None and goal["kind"] == "accuracy" else \
                100.0 if row["score"] is None else row["score"]
            star = row["name"] == "int8 chosen"
            ax.scatter([row["p50_ms"] / batch], [score], marker="*" if star else "o", s=160 if star else 24,
                       color="#2e7d32" if star else "#1565c0" if row["name"].startswith("int8") else "#c62828")
            ax.annotate(row["name"].replace("int8 chosen, ", "").replace(" quantized", " int8"),
                        (row["p50_ms"] / batch, score), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.axhline(floor, color="#555", linestyle="--", linewidth=1)
        ax.set_xlabel("ms per image (ONNX Runtime CPU, interleaved)")
        ax.set_ylabel(unit)
        ax.set_title("latency vs accuracy (chosen starred)", fontsize=9)
    fig.suptitle(f"{name}: {goal['description']}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _budget_sections(exports: list[dict[str, Any]]) -> list[Section]:
    sections = []
    for export in exports:
        budget = _budget_of(export)
        if budget is None:
            continue
        rows = [[k["block"], f"{k.get('points_lost_alone', float('nan')):.2f}",
                 "" if k.get("latency_cost_ms") is None else f"{k['latency_cost_ms']:+.3f}"]
                for k in budget.get("kept_float", [])]
        notes = [f"{'met' if budget.get('met') else 'NOT met'}: FP32 {budget['fp32']['score']:.2f}%, INT8 plain "
                 f"{budget['plain_int8']['score']:.2f}%, chosen {budget['int8']['score']:.2f}% on "
                 f"{budget['data']['images']} images; {budget.get('trials_run')} trials; {budget.get('scored_on')}"]
        speed = (budget.get("latency") or {}).get("speedup_vs_fp32")
        if speed:
            notes.append(f"chosen CPU graph: {speed:.2f}x FP32 (interleaved)")
        sections.append(Section(f"Accuracy budget: {export['artifact']}",
                                ["kept float", "points it loses alone", "latency cost (ms/batch)"], rows,
                                budget_plot(str(export["artifact"]), budget), "accuracy budget trade-off", notes))
    return sections


def _export_section(exports: list[dict[str, Any]]) -> Section:
    rows = [[str(e["artifact"]), str(e.get("precision", "fp32")), str(e.get("opset", "")),
             str((e.get("graph") or {}).get("nodes", "")),
             f"{sum(v for v in e['timings_s'].values() if isinstance(v, (int, float))):.1f} s"] for e in exports]
    return Section("Artifacts", ["artifact", "precision", "opset", "nodes", "time to make"], rows)


def assemble(run_dir: Path, extra: list[Section] | None = None, lead: list[Section] | None = None,
             command: tuple[str, ...] = ()) -> Report:
    """The report of a run folder (its parity, bench and artifact JSON), plus ``extra`` sections after them and
    ``lead`` sections (a verdict block) before them.

    Raises:
        ConfigError: The folder holds no reports.
    """
    parity, bench, exports, skipped = _load(run_dir)
    if not parity and not bench and not extra:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise ConfigError(f"{run_dir}: no parity or bench reports (*.parity.json, *.bench.json) found{why}")
    first = (parity or bench or [{}])[0]
    arch, weights = first.get("arch", run_dir.name), first.get("weights", "")
    sections = list(lead or [])
    if exports:
        sections.append(_export_section(exports))
        sections += _budget_sections(exports)
    if parity:
        sections.append(_parity_section(parity))
    if bench:
        sections.append(_bench_section(bench))
    sections += extra or []
    if skipped:
        sections.append(Section("Files left out", notes=skipped))
    meta = [f"weights: {weights}", f"folder: {run_dir}"] if weights else [f"folder: {run_dir}"]
    meta.append(f"resnest-deploy {__version__}" + (f"; command: {shlex.join(command)}" if command else ""))
    verdict = all(p["passed"] for p in parity) if parity and not lead else None  # a lead block says more
    return Report(f"resnest-deploy run: {arch}", meta, verdict, sections)


_CSS = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.3rem .6rem;font-size:.85rem;text-align:left}td.n{text-align:right}
.pass{color:#2e7d32;font-weight:600}.fail{color:#c62828;font-weight:600}img{max-width:100%;border:1px solid #eee}
.meta,.note{color:#555;font-size:.85rem}"""


def _cell(text: str) -> str:
    """One HTML cell: numbers right-aligned, verdicts coloured, everything escaped."""
    if text in ("pass", "FAIL") or text.startswith(("PASS (", "FAIL (", "ready", "fix ")):
        cls = "pass" if text.startswith(("pass", "PASS", "ready")) else "fail"
        return f"<td><span class='{cls}'>{html.escape(text)}</span></td>"
    numeric = re.fullmatch(r"[-+\d.,e%x ]+(s|ms)?", text.strip())
    return f"<td class='{'n' if numeric else 't'}'>{html.escape(text)}</td>"


def render_html(report: Report) -> str:
    parts = [f"<h1>{html.escape(report.title)}</h1>",
             f"<p class='meta'>{' &middot; '.join(html.escape(m) for m in report.meta)}</p>"]
    if report.verdict is not None:
        cls, word = ("pass", "all artifacts pass parity") if report.verdict else ("fail", "some artifacts FAIL parity")
        parts.append(f"<p class='{cls}'>{word}</p>")
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.headers:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in section.headers)
            body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in section.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if section.plot:
            parts.append(f"<img alt='{html.escape(section.plot_alt)}' src='data:image/png;base64,{section.plot}'>")
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in section.notes]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""] + [f"- {m}" for m in report.meta]
    if report.verdict is not None:
        lines.append(f"- parity: {'all artifacts pass parity' if report.verdict else 'some artifacts FAIL parity'}")
    for section in report.sections:
        lines += ["", f"## {section.title}", ""]
        if section.headers:
            lines.append("| " + " | ".join(section.headers) + " |")
            lines.append("| " + " | ".join("---" for _ in section.headers) + " |")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in section.rows]
        if section.notes:
            lines.append("")
            lines += [f"- {n}" for n in section.notes]
    return "\n".join(lines) + "\n"


def build_report(run_dir: str | Path, output: str | Path | None = None, extra: list[Section] | None = None,
                 lead: list[Section] | None = None, command: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` for a run folder.

    Args:
        run_dir: Folder with ``*.parity.json`` / ``*.bench.json`` (and export manifests), searched recursively.
        output: HTML or Markdown path (the other goes beside it); an existing folder gets ``report.html`` inside.
        extra: Further sections (targets, a model repository) appended after parity and latency.
        lead: Sections that open the page (a deploy run's verdict block).
        command: The command line that made the run, recorded under the title.

    Returns:
        The HTML and Markdown paths.

    Raises:
        ConfigError: The folder is missing or holds no reports.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a folder")
    html_path, md_path = report_pair(output, run_dir / "report.html", (".html", ".md"))
    report = assemble(run_dir, extra, lead, command)
    write_texts_atomic({html_path: render_html(report), md_path: render_markdown(report)})
    return html_path, md_path
