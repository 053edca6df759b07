"""Build ``report.html`` and ``report.md`` from the parity and bench JSON files of a run folder.

The page is self-contained (inline CSS, plots as embedded PNG) so it can be mailed or attached to a ticket.
Plots are drawn by matplotlib with the non-interactive Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..errors import ConfigError


def _load(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    parity, bench, exports = [], [], []
    for path in sorted(run_dir.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        schema = data.get("schema", "")
        if schema.startswith("resnest-deploy/parity/"):
            parity.append({**data, "_file": path.name})
        elif schema.startswith("resnest-deploy/bench/"):
            bench.append({**data, "_file": path.name})
        elif "artifact" in data and "timings_s" in data:
            exports.append({**data, "_file": path.name})
    return parity, bench, exports


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _latency_plot(bench: list[dict[str, Any]]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for run in bench:
        for row in run["rows"]:
            series.setdefault(row["name"], []).append((row["batch"], row["p50_ms"] / row["batch"]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4))
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
    ax.legend(fontsize=8)
    encoded = _png(fig)
    plt.close(fig)
    return encoded


def _parity_plot(parity: list[dict[str, Any]]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not parity:
        return None
    labels = [f"{Path(p['artifact']).name}\n({p['precision']})" for p in parity]
    panels = [("max_abs_rel", "max |Δ| / max(1, max|logit|)", True), ("cosine_min", "min cosine", False),
              ("top1_agreement", "top-1 agreement", False)]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for ax, (key, title, log) in zip(axes, panels):
        values = [p["metrics"][key] for p in parity]
        colors = ["#2e7d32" if p["passed"] else "#c62828" for p in parity]
        ax.bar(range(len(values)), [max(v, 1e-12) for v in values] if log else values, color=colors)
        limits = {p["tolerances"].get(key) for p in parity} - {None}
        for limit in limits:
            ax.axhline(limit, color="#555", linestyle="--", linewidth=1)
        if log:
            ax.set_yscale("log")
        ax.set_xticks(range(len(values)), labels, fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.suptitle("Parity vs eager PyTorch (green pass, red fail; dashed: limit)", fontsize=10)
    encoded = _png(fig)
    plt.close(fig)
    return encoded


def _align(cell: str) -> str:
    """Numbers right, text left."""
    return "n" if re.fullmatch(r"[-+\d.,e%x ]+(s|ms)?", cell.strip()) else "t"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class='{_align(c)}'>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.3rem .6rem;font-size:.85rem;text-align:left}td.n{text-align:right}.pass{color:#2e7d32;font-weight:600}
.fail{color:#c62828;font-weight:600}img{max-width:100%;border:1px solid #eee}.meta{color:#555;font-size:.85rem}"""


def build_report(run_dir: str | Path, output: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` for a run folder.

    Args:
        run_dir: Folder with ``*.parity.json`` / ``*.bench.json`` (and export manifests), searched recursively.
        output: HTML path; the Markdown goes beside it.

    Returns:
        The HTML and Markdown paths.

    Raises:
        ConfigError: The folder is missing or holds no reports.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a folder")
    parity, bench, exports = _load(run_dir)
    if not parity and not bench:
        raise ConfigError(f"{run_dir}: no parity or bench reports (*.parity.json, *.bench.json) found")
    html_path = Path(output) if output else run_dir / "report.html"
    md_path = html_path.with_suffix(".md")
    arch = (parity or bench)[0]["arch"]
    weights = (parity or bench)[0]["weights"]
    verdict = all(p["passed"] for p in parity) if parity else None
    parts = [f"<h1>resnest-deploy run: {html.escape(arch)}</h1>",
             f"<p class='meta'>weights: {html.escape(weights)} &middot; folder: {html.escape(str(run_dir))}</p>"]
    md = [f"# resnest-deploy run: {arch}", "", f"- weights: {weights}"]
    if verdict is not None:
        cls, word = ("pass", "all artifacts pass parity") if verdict else ("fail", "some artifacts FAIL parity")
        parts.append(f"<p class='{cls}'>{word}</p>")
        md.append(f"- parity: {word}")
    if exports:
        rows = [[html.escape(e["artifact"]), e.get("precision", "fp32"), str(e.get("opset", "")),
                 str(e.get("graph", {}).get("nodes", "")), f"{sum(e['timings_s'].values()):.1f} s"] for e in exports]
        parts += ["<h2>Artifacts</h2>", _table(["artifact", "precision", "opset", "nodes", "export time"], rows)]
    if parity:
        rows, md_rows = [], []
        for p in parity:
            m = p["metrics"]
            mark = "<span class='pass'>pass</span>" if p["passed"] else "<span class='fail'>FAIL</span>"
            cells = [Path(p["artifact"]).name, p["precision"], p["runner"], f"{m['max_abs_rel']:.2e}",
                     f"{m['cosine_min']:.6f}", f"{m['top1_agreement']:.2%}", f"{m['kl_mean']:.2e}", str(m["samples"])]
            rows.append([html.escape(c) for c in cells] + [mark])
            md_rows.append("| " + " | ".join(cells + ["pass" if p["passed"] else "FAIL"]) + " |")
        parts += ["<h2>Parity vs eager PyTorch</h2>",
                  _table(["artifact", "precision", "runner", "max_abs_rel", "cosine min", "top-1 agree", "KL mean",
                          "samples", "verdict"], rows)]
        md += ["", "## Parity", "", "| artifact | precision | runner | max_abs_rel | cosine min | top-1 agree | "
               "KL mean | samples | verdict |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |", *md_rows]
        plot = _parity_plot(parity)
        if plot:
            parts.append(f"<img alt='parity metrics per artifact' src='data:image/png;base64,{plot}'>")
    if bench:
        rows, md_rows = [], []
        for run in bench:
            for r in run["rows"]:
                ratio = f"{r['ratio_vs_eager']:.2f}x" if r.get("ratio_vs_eager") else ""
                cells = [str(r["batch"]), r["name"], f"{r['p50_ms']:.1f}", f"{r['p90_ms']:.1f}", f"{r['p99_ms']:.1f}",
                         f"{r['throughput_ips']:.1f}", ratio]
                rows.append([html.escape(c) for c in cells])
                md_rows.append("| " + " | ".join(cells) + " |")
        env = bench[0]["environment"]
        parts += ["<h2>Latency (interleaved rounds)</h2>",
                  _table(["batch", "contender", "p50 ms", "p90 ms", "p99 ms", "images/s", "vs eager"], rows)]
        plot = _latency_plot(bench)
        if plot:
            parts.append(f"<img alt='latency per image vs batch' src='data:image/png;base64,{plot}'>")
        env_line = ", ".join(f"{k}: {v}" for k, v in env.items())
        parts.append(f"<p class='meta'>{html.escape(env_line)}</p>")
        md += ["", "## Latency", "", "| batch | contender | p50 ms | p90 ms | p99 ms | images/s | vs eager |",
               "| ---: | --- | ---: | ---: | ---: | ---: | ---: |", *md_rows, "", f"Environment: {env_line}"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>resnest-deploy {html.escape(arch)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    write_text_atomic(html_path, page)
    write_text_atomic(md_path, "\n".join(md) + "\n")
    return html_path, md_path
