"""Rewriting one marked section of a doc (docs/benchmarks.md, docs/quantization.md) from a benchmark script."""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, name: str, body: str, heading: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``doc`` with ``body``; the
    first time, append it under ``heading``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else ""
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n{block}\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
